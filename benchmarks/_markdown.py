"""How benchmark scripts rewrite their ``## `` section of docs/benchmarks.md: with the package's one section writer.

Benchmarks run as scripts (``python benchmarks/x.py``), so the script's folder
is on ``sys.path`` and ``from _markdown import replace_section`` works.
"""

from __future__ import annotations

from pathlib import Path

from weaksegtf.markdown_section import replace_markdown_section

BENCHMARKS_HEADER = "# Benchmarks\n\nEvery number here comes from a script in `benchmarks/`.\n"


def replace_section(path: Path, heading: str, section: str, header: str = BENCHMARKS_HEADER) -> None:
    """Replace the section that starts at the line ``heading`` (up to the next ``## ``), or append it.

    ``section`` is the whole new text, heading included
    (:func:`weaksegtf.markdown_section.replace_markdown_section` takes it without).
    """
    body = section[len(heading):] if section.startswith(heading) else section
    replace_markdown_section(path, heading, body, header=header)
