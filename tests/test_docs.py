"""Every reference in the repository points into it: docs paths named in code, and links in the Markdown."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".toml", ".sh", ".cfg", ".txt", ""}


def tracked_text_files() -> list[Path]:
    try:
        names = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked files are unknown")
    paths = [REPO / name for name in names.splitlines()]
    return [p for p in paths if p.is_file() and p.suffix in TEXT_SUFFIXES]


def test_the_docs_folder_has_what_the_readme_promises():
    for name in ("README.md", "algorithm.md", "architecture.md", "init-format.md", "run-folder.md", "extending.md"):
        assert (REPO / "docs" / name).is_file(), name


def test_no_file_points_outside_the_repository():
    outside = re.compile(r"\.\./shared|DESIGN\.md")
    bad = [f"{p.relative_to(REPO)}:{i}" for p in tracked_text_files()
           for i, line in enumerate(p.read_text(errors="replace").splitlines(), 1) if outside.search(line)]
    assert not bad


def test_every_docs_path_named_anywhere_exists():
    named = re.compile(r"\bdocs/[\w.-]+\.md\b")
    missing = {f"{p.relative_to(REPO)}: {m}" for p in tracked_text_files()
               for m in named.findall(p.read_text(errors="replace")) if not (REPO / m).is_file()}
    assert not missing


@pytest.mark.parametrize("doc", ["README.md", *sorted(f"docs/{p.name}" for p in (REPO / "docs").glob("*.md"))])
def test_relative_links_in_markdown_resolve(doc):
    text = (REPO / doc).read_text()
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if not re.match(r"[a-z]+:", link)]
    missing = [link for link in local if not ((REPO / doc).parent / link).exists()]
    assert not missing
