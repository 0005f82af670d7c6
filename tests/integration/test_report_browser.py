"""report.html in a real headless browser: it loads from disk with no console errors, and every <img> decodes to a
non-zero natural size. Skipped where no chromium is installed (.ci/run installs Debian's)."""
from __future__ import annotations

import pytest
from helpers.headless_browser import chromium, load_page
from helpers.tasks_util import run_task

pytestmark = pytest.mark.skipif(chromium() is None, reason="no chromium on PATH (apt-get install chromium)")


@pytest.fixture(scope="module")
def page(tmp_path_factory, toy_data_dir):
    from i2am.report import write_report

    root = tmp_path_factory.mktemp("browser")
    run_task("attribute", [f"paths.data_dir={toy_data_dir}", f"run_dir={root / 'run'}", "data.limit=2",
                           "sampler.num_steps=2", "num_figures=0", "trainer.enable_progress_bar=false"])
    return write_report(root / "run", num_samples=2)


def test_report_loads_without_console_errors_and_every_image_decodes(page, tmp_path):
    errors, images = load_page(page, tmp_path / "profile")
    assert errors == []
    assert len(images) >= 6, images
    broken = [i["src"] for i in images if not (i["width"] > 0 and i["height"] > 0)]
    assert broken == []


def test_the_check_sees_a_missing_image_and_a_script_error(page, tmp_path):
    bad = page.with_name("broken.html")
    bad.write_text(page.read_text().replace("</body>", "<img src='report_files/missing.png'>"
                                                       "<script>undefined_function()</script></body>"))
    errors, images = load_page(bad, tmp_path / "profile")
    assert any("missing.png" in e or "ERR_FILE_NOT_FOUND" in e for e in errors), errors
    assert any("undefined_function" in e or "Uncaught" in e for e in errors), errors
    assert {"src": "report_files/missing.png", "width": 0, "height": 0} in images
