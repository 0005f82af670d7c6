"""Every Python block of README.md and docs/*.md runs as written (sybil), top to bottom, one namespace per page, in a
fresh working directory. A block that needs real weights, a GPU or a finished run is marked
``<!-- skip: next "why" -->`` and is paired with a runnable tiny equivalent; shell, config and output blocks are
fenced as bash / yaml / text, which the runner does not run."""
from __future__ import annotations

import re
from unittest import SkipTest

import pytest
from helpers.paths import REPO
from sybil import Sybil
from sybil.evaluators.skip import Skipper
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
RUNNER = Sybil(parsers=[PythonCodeBlockParser(), SkipParser()])
FENCE = re.compile(r"^(\s*)(`{3,})(.*)$")


def fences(page) -> list[str]:
    """The info string of every fenced block of a page (the opening fences only)."""
    infos, closing = [], None
    for line in page.read_text().splitlines():
        match = FENCE.match(line)
        if not match:
            continue
        if closing is None:
            closing = match.group(2)
            infos.append(match.group(3).strip())
        elif match.group(2) == closing and not match.group(3).strip():
            closing = None
    return infos


def _page_id(page) -> str:
    return page.relative_to(REPO).as_posix()


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_every_python_block_runs_as_written(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ran, skipped = 0, 0
    for example in RUNNER.parse(page).examples():
        is_directive = isinstance(example.region.evaluator, Skipper)
        try:
            example.evaluate()
        except SkipTest:
            skipped += 1
            continue
        ran += not is_directive
    # every ```python fence reached the runner: none is hidden from it by an indentation or a typo
    assert ran + skipped == fences(page).count("python"), f"{_page_id(page)}: {ran} ran, {skipped} skipped"


def test_every_block_names_its_language():
    """A bare fence would be skipped by accident: output, trees and config excerpts say `text`, `yaml`, ..."""
    bare = {_page_id(page): fences(page).count("") for page in PAGES}
    assert {page: n for page, n in bare.items() if n} == {}
