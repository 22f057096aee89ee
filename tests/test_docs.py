"""The repository's documentation is self-contained: no tracked file points outside the repository
for the methods' specification, and every "docs/methods.md section N" citation names a section that
exists in docs/methods.md."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Spelled in pieces so that this file does not match its own patterns.
OUTSIDE = "../" + "shared"
BARE_SPEC = re.compile(r"(?<![A-Za-z0-9_/])" + "METHODS" + r"\.md")
CITATION = re.compile(r"docs/methods\.md sections? (\d+)(\.\d+)?(\([a-z0-9]+\))?")


def _tracked_files() -> list[str]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"not a git checkout ({e}); nothing to check")
    return [p for p in out.decode().split("\0") if p]


def _text_lines(path: str):
    try:
        with open(os.path.join(ROOT, path), "rb") as f:
            data = f.read()
    except (FileNotFoundError, IsADirectoryError):  # deleted in the worktree, or a submodule
        return
    if b"\0" in data[:8192]:
        return  # binary
    text = data.decode("utf-8", errors="replace")
    yield from enumerate(text.splitlines(), start=1)


def _methods_sections() -> set[str]:
    """Section labels of docs/methods.md: '1', '1(c)', '1(c2)', '5.1', ..."""
    labels = set()
    with open(os.path.join(ROOT, "docs", "methods.md"), encoding="utf-8") as f:
        for line in f:
            m = re.match(r"#{2,3} (\d+(?:\.\d+)?(?:\([a-z0-9]+\))?)[. ]", line)
            if m:
                labels.add(m.group(1))
    return labels


def test_no_file_points_outside_the_repository():
    hits = []
    for path in _tracked_files():
        for n, line in _text_lines(path):
            if OUTSIDE in line:
                hits.append(f"{path}:{n}: {line.strip()[:120]}")
            elif BARE_SPEC.search(line):
                hits.append(f"{path}:{n}: {line.strip()[:120]}")
    assert not hits, (
        "these lines point to the team's notes outside the repository; cite docs/methods.md "
        "(section N) instead:\n" + "\n".join(hits)
    )


def test_methods_citations_name_existing_sections():
    sections = _methods_sections()
    assert {"1", "2", "3", "4", "5", "5.1"} <= sections, sorted(sections)
    bad = []
    for path in _tracked_files():
        for n, line in _text_lines(path):
            for m in CITATION.finditer(line):
                label = m.group(1) + (m.group(2) or "") + (m.group(3) or "")
                if label not in sections:
                    bad.append(f"{path}:{n}: section {label!r} is not in docs/methods.md")
    assert not bad, "\n".join(bad)


def test_readme_links_the_docs():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    assert "(docs/methods.md)" in readme
    assert "(docs/architecture.md)" in readme
