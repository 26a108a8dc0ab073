"""Every ``sb3-tar`` command in the README and docs parses, with settings a run accepts, and every Python
snippet compiles: a renamed flag or setting breaks this test, not a reader's first try."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from sb3_tar.cli import parse_arguments, train_config
from sb3_tar.experiments.grid import load_sweep

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```(\w*)\n(.*?)```", re.DOTALL)


def blocks(language: str) -> list[tuple[str, str]]:
    return [(page.name, body) for page in PAGES for kind, body in BLOCK.findall(page.read_text()) if kind == language]


def commands() -> list[tuple[str, list[str]]]:
    found = []
    for page, body in blocks("bash"):
        for line in body.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line.startswith("nice -n 19 "):
                line = line.removeprefix("nice -n 19 ")
            if not line.startswith("sb3-tar ") or "$" in line or "..." in line:
                continue
            found.append((page, shlex.split(line, comments=True)[1:]))
    return found


def test_the_pages_hold_commands_and_snippets():
    assert len(commands()) >= 10 and len(blocks("python")) >= 5


@pytest.mark.parametrize(("page", "argv"), commands(), ids=lambda value: value if isinstance(value, str) else
                         " ".join(value)[:60])
def test_each_documented_command_parses_and_its_settings_are_accepted(page, argv, monkeypatch):
    monkeypatch.chdir(ROOT)  # the docs say to run from the clone's root
    args = parse_arguments(argv)
    if args.command == "train":
        train_config(args)
    elif args.command == "sweep":
        assert load_sweep(args.sweep)


@pytest.mark.parametrize(("page", "source"), blocks("python"), ids=lambda value: value if isinstance(value, str)
                         else value.strip().splitlines()[0][:50])
def test_each_python_snippet_compiles(page, source):
    compile(source, f"{page} snippet", "exec")
