"""benchmarks/capture_targets.py --dry-run: the four target cells run on tiny models, each timed against its plain
run and profiled, and the table names each with its target. Speed is not asserted."""
import re
import subprocess
import sys

from helpers.paths import REPO

SCRIPT = str(REPO / "benchmarks" / "capture_targets.py")


def test_dry_run_prints_every_target_cell_with_its_ratio_and_share():
    done = subprocess.run([sys.executable, SCRIPT, "--dry-run"], cwd=REPO, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "x (IQR" in line]
    targets = {re.split(r" \| ", row)[1]: row for row in rows}
    assert sorted(targets) == ["<= 1.05x", "<= 1.10x", "<= 1.12x", "<= 1.20x"]   # one row per target cell
    assert "UNet SD-1.5 size" in targets["<= 1.12x"] and "every relation" in targets["<= 1.20x"]
    for row in rows:
        assert "n=2)" in row                                                 # the dry run's 2 pairs
        share = float(re.search(r"\| ([\d.]+) % \(", row).group(1))
        implied = float(re.search(r"\| ([\d.]+)x \|$", row).group(1))
        assert 0 < share < 100 and abs(implied - 1 / (1 - share / 100)) < 2e-3


def test_dry_run_figures_never_reach_the_docs():
    done = subprocess.run([sys.executable, SCRIPT, "--dry-run", "--docs"], cwd=REPO, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2 and "--docs with --dry-run" in done.stderr


def test_dry_run_at_flux1_width_prints_the_three_flux_cells_without_the_unet():
    done = subprocess.run([sys.executable, SCRIPT, "--dry-run", "--flux", "flux1"], cwd=REPO, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "x (IQR" in line]
    assert [re.split(r" \| ", row)[1] for row in rows] == ["<= 1.05x", "<= 1.10x", "<= 1.20x"]
    assert all("FLUX.1 width" in row for row in rows)
