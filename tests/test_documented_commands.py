"""Every `genreclf` command the README and docs/ show is one the CLI takes as written: a renamed option or command
fails here, not for a reader."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from genreclf.app.cli import build_parser

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _commands(page: Path) -> list[str]:
    """The `genreclf ...` lines of a page's code blocks, without their comments and redirections."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", page.read_text(), flags=re.S)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    return [re.split(r"\s+#|\s+>\s", line)[0].strip() for line in lines if line.startswith("genreclf ")]


def test_the_readme_shows_the_commands() -> None:
    assert len(_commands(PAGES[0])) >= 10  # demo, run, status, predict, ...


@pytest.mark.parametrize(
    "command", [c for page in PAGES for c in _commands(page)], ids=lambda c: c[:60]
)  # fmt: skip
def test_the_documented_command_parses(command: str) -> None:
    args = build_parser().parse_args(shlex.split(command)[1:])
    assert callable(args.func)
