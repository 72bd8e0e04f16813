"""Rewrite the generated part of a Markdown file and keep every other byte.

The one section writer of the package: ``weakseg-experiment report`` rewrites
its block of ``docs/results.md`` between two marker comments, and every
script in ``benchmarks/`` rewrites its own ``## `` section of
``docs/benchmarks.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from weaksegtf.errors import ConfigError
from weaksegtf.io import write_text_atomic


def replace_markdown_section(
    path: Path | str,
    heading: str,
    body: str,
    markers: Sequence[str] | None = None,
    header: str = "",
) -> Path:
    """Replace one generated part of ``path``, or append it, keeping everything else byte for byte.

    Without ``markers`` the part is the section that starts at the line
    ``heading`` and runs up to the next ``## `` heading; it becomes
    ``heading``, a blank line and ``body``. With ``markers`` the part is the
    text between the two marker lines (which stay), so hand-written text
    around them, in the same section, survives. A part that is missing is
    appended with its heading; a missing file (and its folder) is created,
    starting with ``header``. The file is replaced atomically.

    Args:
        path: str or path. The Markdown file.
        heading: str. The section's heading line, such as ``"## Reading tiles"``.
        body: str. The new text, without the heading.
        markers: (str, str), optional. Begin and end marker lines. Defaults to
            ``None``: the whole section is the part.
        header: str. Text of a new file. Defaults to ``""``.

    Returns:
        The path written.

    Raises:
        ConfigError: the file holds only one of the two markers.

    Example:
    >>> replace_markdown_section("docs/benchmarks.md", "## Reading tiles", table)  # doctest: +SKIP
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.is_file() else header
    if markers is None:
        section = heading + "\n\n" + body.strip("\n") + "\n"
        start = text.find(heading + "\n")
        if start == -1:
            text = text.rstrip("\n") + "\n\n" + section
        else:
            end = text.find("\n## ", start + len(heading))
            text = text[:start] + section + ("" if end == -1 else "\n" + text[end + 1 :])
    else:
        begin, end = markers
        block = f"{begin}\n{body.rstrip()}\n{end}"
        if begin in text and end in text:
            head, rest = text.split(begin, 1)
            _, tail = rest.split(end, 1)
            text = head + block + tail
        elif begin in text or end in text:
            raise ConfigError(f"{path} has only one of the markers {begin!r} and {end!r}; fix it by hand")
        else:
            text = text.rstrip() + f"\n\n{heading}\n\n{block}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(path, text)
