"""The user guide stays true: links resolve, every weakseg-* command in the docs parses with its CLI, and
every Python block compiles."""

from __future__ import annotations

import ast
import configparser
import importlib
import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GUIDE = sorted((REPO / "docs").glob("*.md"))
PAGES = [*GUIDE, REPO / "README.md", REPO / "docker" / "README.md", REPO / "export" / "README.md"]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\[[^\]]+\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _ids(paths):
    return [p.relative_to(REPO).as_posix() for p in paths]


def _blocks(page: Path, language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(page.read_text()) if lang == language]


def _entry_points() -> dict[str, str]:
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    entries = {}
    for line in config["options.entry_points"]["console_scripts"].strip().splitlines():
        name, _, target = line.partition("=")
        entries[name.strip()] = target.strip().split(":")[0]
    return entries


def _commands(page: Path) -> list[list[str]]:
    """Every ``weakseg-*`` invocation in the page's bash blocks, as argv lists."""
    commands = []
    for block in _blocks(page, "bash"):
        text = re.sub(r"\\\n\s*", " ", block)
        for line in text.splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            words: list[str] = []
            for token in [*lexer, ";"]:
                if token in ("&&", "||", ";", "|", "&", ">", ">>", "2>"):
                    if words and words[0].startswith("weakseg-"):
                        commands.append(words)
                    words = []
                else:
                    words.append(token)
    return commands


def test_the_guide_has_its_pages_and_the_index_links_them_all():
    names = {p.name for p in GUIDE}
    expected = {"index.md", "install.md", "data-formats.md", "supervision.md", "training.md", "export.md",
                "inference.md", "deployment.md", "troubleshooting.md"}
    assert expected <= names
    linked = set(LINK.findall((REPO / "docs" / "index.md").read_text()))
    assert expected - {"index.md"} <= linked
    assert "docs/index.md" in (REPO / "README.md").read_text()


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_relative_links_resolve(page):
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_every_weakseg_command_parses(page):
    entry_points = _entry_points()
    for argv in _commands(page):
        assert argv[0] in entry_points, f"{page.name}: {argv[0]} is not a console script"
        parser = importlib.import_module(entry_points[argv[0]]).build_parser()
        try:
            parser.parse_args(argv[1:])
        except SystemExit as exit:
            if exit.code == 0 and "--help" in argv:
                continue
            pytest.fail(f"{page.name}: `{shlex.join(argv)}` does not parse (exit {exit.code})")


def test_the_docs_show_every_console_script():
    shown = {argv[0] for page in PAGES for argv in _commands(page)}
    assert set(_entry_points()) - {"weakseg-experiment"} <= shown


@pytest.mark.parametrize("page", GUIDE, ids=_ids(GUIDE))
def test_python_blocks_compile(page):
    for block in _blocks(page, "python"):
        ast.parse(block)
