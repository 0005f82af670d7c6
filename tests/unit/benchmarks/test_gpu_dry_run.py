"""benchmarks/gpu.py --dry-run on the CPU: the GPU script's every section (UNet, FLUX, Wan video, precision) runs at
tiny size and writes its JSON and Markdown, the video capture's state does not grow with the steps, and the
low-precision maps pass the fp32 agreement check. Speed is not asserted."""
import json
import subprocess
import sys

from helpers.paths import REPO


def test_gpu_script_dry_run_writes_every_section(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu.py"), "--device", "cpu", "--dry-run",
                           "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu.json").read_text())
    assert report["dry_run"] and report["device"].startswith("cpu")
    variants = {(row["case"].split()[0], row["variant"]) for row in report["rows"]}
    assert {("UNet", "plain"), ("UNet", "i2am, text, R2G + G2R, every layer"), ("FLUX", "plain"),
            ("FLUX", "i2am, image:reference (I2AM)"), ("Wan-2.1-like", "plain"),
            ("Wan-2.1-like", "i2am.trace, image:reference"), ("Wan-2.1-like", "routes (two-hop, rollout)")} <= variants
    video = [row for row in report["rows"] if "state_mib_by_steps" in row]
    assert len(video) == 2
    for row in video:     # the video capture's state after 1 and 2 steps: the same size
        sizes = list(row["state_mib_by_steps"].values())
        assert len(sizes) == 2 and sizes[0] == sizes[1] > 0
    for row in report["rows"]:
        if "ratio" in row:
            assert row["ratio"]["n"] == 1 and row["map_mib"] > 0 and 0 <= row.get("profiler_share", 0) <= 1
    checks = {c["model"]: c for c in report["precision"]}
    assert set(checks) == {"UNet", "FLUX"} and all(c["agree"] and c["maps"] > 0 for c in checks.values())
    assert "| UNet | bf16 |" in (tmp_path / "gpu.md").read_text()
