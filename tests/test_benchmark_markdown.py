"""benchmarks/_markdown.py: a benchmark rewrites its own section of docs/benchmarks.md and nothing else."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from _markdown import replace_section  # noqa: E402


def test_replace_section_keeps_the_other_sections(tmp_path):
    path = tmp_path / "bench.md"
    path.write_text("# Benchmarks\n\nintro\n\n## A\n\nold a\n\n## AB\n\nkeep ab\n\n## C\n\nkeep c\n")
    replace_section(path, "## A", "## A\n\nnew a\n")
    assert path.read_text() == "# Benchmarks\n\nintro\n\n## A\n\nnew a\n\n## AB\n\nkeep ab\n\n## C\n\nkeep c\n"


def test_replace_section_last_section_and_append(tmp_path):
    path = tmp_path / "bench.md"
    path.write_text("# Benchmarks\n\n## C\n\nold c\n")
    replace_section(path, "## C", "## C\n\nnew c\n")
    replace_section(path, "## D", "## D\n\nd\n")
    assert path.read_text() == "# Benchmarks\n\n## C\n\nnew c\n\n## D\n\nd\n"


def test_replace_section_creates_the_file_with_its_header(tmp_path):
    path = tmp_path / "sub" / "results.md"
    replace_section(path, "## R", "## R\n\nr\n", header="# Results\n")
    assert path.read_text() == "# Results\n\n## R\n\nr\n"
