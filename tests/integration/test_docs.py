"""The documentation site builds with --strict: broken links, anchors and stale API references fail."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest
from helpers.paths import REPO

ROOT = REPO


def test_mkdocs_builds_strict(tmp_path):
    pytest.importorskip("mkdocs")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "AttributionCapture" in api and "ConfigValueError" in api     # mkdocstrings rendered the public names


def test_readme_stays_a_front_page_and_its_links_resolve():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), target
    assert "make demo" in readme and "make test" in readme
