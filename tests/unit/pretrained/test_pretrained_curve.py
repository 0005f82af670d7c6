"""``python -m i2am.pretrained.curve``: held-out SSIM of a toy training run's kept checkpoints, kept point by point."""
from __future__ import annotations

import subprocess
import sys

import torch
from omegaconf import OmegaConf

from i2am.adapters import create_model
from i2am.pretrained import curve, toy_checkpoint


def _run_with_checkpoints(run_dir, steps):
    """A train run folder as ``i2am train`` leaves it: config.yaml and Lightning checkpoints of the shipped model."""
    (run_dir / "checkpoints").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create({"model": {"name": "custom-toy"}}), run_dir / "config.yaml")
    model = create_model("custom-toy", checkpoint=toy_checkpoint("custom-step200"))
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    for step in steps:
        torch.save({"state_dict": state, "global_step": step}, run_dir / "checkpoints" / f"step={step}.ckpt")


def test_the_curve_scores_each_kept_step_once_and_plots_it(tmp_path, toy_data_dir, monkeypatch):
    run_dir = tmp_path / "run"
    _run_with_checkpoints(run_dir, [100, 200, 300])
    calls = []
    real = curve.heldout_scores
    monkeypatch.setattr(curve, "heldout_scores", lambda model, batch: calls.append(1) or real(model, batch))
    points = curve.heldout_curve(run_dir, pairs=1, data_dir=toy_data_dir, every=200)
    assert sorted(points) == [200] and len(calls) == 1   # only multiples of 200
    again = curve.heldout_curve(run_dir, pairs=1, data_dir=toy_data_dir)
    assert sorted(again) == [100, 200, 300] and len(calls) == 3   # step 200 was read back, not re-scored
    assert again[200] == points[200] and again[100] == again[300]   # the same weights score the same
    assert 0.0 < again[100]["ssim"] < 1.0 and again[100]["ssim_mean_colour"] > 0.0
    assert (run_dir / "heldout_curve_p1.png").stat().st_size > 0
    assert (run_dir / "heldout_curve_p1.csv").read_text().splitlines()[0] == "step,ssim,ssim_region,ssim_mean_colour"


def test_plotting_the_curve_keeps_the_users_backend(tmp_path):
    code = ("import matplotlib; matplotlib.use('svg'); from pathlib import Path; from i2am.pretrained import curve; "
            f"curve.plot_curve(Path({str(tmp_path / 'c.png')!r}), "
            "{100: {'ssim': 0.5, 'ssim_region': 0.6, 'ssim_mean_colour': 0.55}}, 't'); print(matplotlib.get_backend())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "svg" and (tmp_path / "c.png").stat().st_size > 0
