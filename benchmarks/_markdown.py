"""The one markdown helper every benchmark script shares: replace a ``## `` section, keep the rest.

Benchmarks run as scripts (``python benchmarks/x.py``), so the script's folder
is on ``sys.path`` and ``from _markdown import replace_section`` works.
"""

from __future__ import annotations

from pathlib import Path

BENCHMARKS_HEADER = "# Benchmarks\n\nEvery number here comes from a script in `benchmarks/`.\n"


def replace_section(path: Path, heading: str, section: str, header: str = BENCHMARKS_HEADER) -> None:
    """Replace the section that starts at the line ``heading`` (up to the next ``## ``), or append it.

    ``section`` is the whole new text, heading included. Every other section of
    the file is kept byte for byte; a missing file starts with ``header``.
    """
    path = Path(path)
    text = path.read_text() if path.exists() else header
    section = section.rstrip("\n") + "\n"
    start = text.find(heading + "\n")
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(heading))
        text = text[:start] + section + ("" if end == -1 else "\n" + text[end + 1:])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
