"""``python -m i2am.pretrained.generations``: the shipped checkpoints' held-out generations, one row per pair."""
from __future__ import annotations

import pytest
from PIL import Image

from i2am.adapters import create_model
from i2am.pretrained import generations, toy_checkpoint
from i2am.pretrained.heldout import heldout_batch, heldout_scores


def test_the_figure_has_a_row_per_pair_and_a_column_per_checkpoint_titled_with_its_ssim(tmp_path, toy_data_dir):
    out = tmp_path / "generations.png"
    names = ("custom-step200", "control")
    ssim = generations.plot_generations(out, names, pairs=1, data_dir=toy_data_dir)
    with Image.open(out) as image:
        width, height = image.size
    assert (width, height) == (2 * (2 + len(names)) * 96, int(2.6 * 96))   # figsize x dpi (truncated by matplotlib)
    batch = heldout_batch(toy_data_dir, 1)
    for name in names:   # the same sampler and seed: the titles' SSIMs are the held-out scores
        model = create_model("custom-toy", checkpoint=toy_checkpoint(name)).eval()
        assert ssim[name] == pytest.approx(float(heldout_scores(model, batch)["ssim"].mean()), rel=1e-6)
    assert ssim["control"] > ssim["custom-step200"]   # a trained model against an early checkpoint of another run
