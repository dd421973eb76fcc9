"""The README stays short and for users, its links resolve, and the documentation's commands
and plug-in example agree with the code (``mkdocs build --strict`` in ``.ci/run`` checks the
site's own links, navigation and API references)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from solo_rgbd.config import compose
from tests.test_readme import readme_commands, readme_package_files

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DOCS = sorted((ROOT / "docs").glob("*.md"))


def test_the_readme_is_short_and_holds_no_development_history():
    assert len(README.splitlines()) <= 260
    for banned in (r"\bissue \d+", r"O_DIRECT", r"page cache", r"renameat2", r"^#+ Status\b"):
        assert not re.search(banned, README, flags=re.I | re.M), banned


def test_every_relative_link_of_the_readme_resolves():
    page = ROOT / "README.md"
    text = page.read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    relative = [link.split("#")[0] for link in links if not re.match(r"[a-z]+:", link)]
    assert relative, "the page links to the docs"
    missing = [link for link in relative if link and not (page.parent / link).exists()]
    assert not missing, missing


def test_the_docs_plugin_example_is_the_readmes():
    extending = (ROOT / "docs" / "extending.md").read_text()
    assert readme_package_files(extending) == readme_package_files(README)


def _pretrain_commands() -> list[tuple[str, list[str]]]:
    out = []
    for page in DOCS:
        for argv in readme_commands(page.read_text()):
            argv = argv[1:] if argv[:1] == ["srun"] else argv
            if argv[:2] == ["solo-rgbd", "pretrain"] and "--help" not in argv:
                out.append((page.name, [a for a in argv[2:] if a != "--cfg"]))
    return out


@pytest.mark.parametrize("page, overrides", _pretrain_commands())
def test_every_pretrain_command_of_the_docs_composes(page, overrides):
    """A key renamed in the code and not in the docs fails here, naming the page."""
    cfg = compose("pretrain", overrides)
    assert cfg.method


def test_only_commands_start_with_the_command_name():
    """A prose line that begins ``solo-rgbd ...`` reads as a command to whoever copies lines
    (or a tool that looks for the first one); commands live in fenced blocks."""
    prose, fenced = [], False
    for line in README.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and line.lstrip().startswith("solo-rgbd"):
            prose.append(line)
    assert not prose, prose
