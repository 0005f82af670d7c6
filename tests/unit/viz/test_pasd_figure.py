"""PSNR/SSIM of SR outputs and the paper-like SR attribution figure."""
import math
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image

from i2am.engine.render import overlay
from i2am.evaluation.sr_quality import psnr_ssim, rgb_to_y
from i2am.viz.pasd import render_sr_figure


def test_psnr_ssim_hand_computed():
    hr = torch.full((2, 3, 16, 16), -1.0)
    out = hr.clone()
    out[1] += 0.2                                  # +0.1 in [0, 1]: MSE 0.01 -> 20 dB on RGB
    scores = psnr_ssim(out, hr, y_channel=False)
    assert math.isinf(scores["psnr"][0]) and abs(scores["psnr"][1].item() - 20.0) < 1e-3
    assert abs(scores["ssim"][0].item() - 1.0) < 1e-6 and scores["ssim"][1] < 1
    y = psnr_ssim(out, hr)["psnr"][1].item()       # Y = (16 + 0.1 * 219) / 255 offset: 20 dB - 20 log10(219/255)
    assert abs(y - (20.0 - 20 * math.log10(219 / 255))) < 1e-3


def test_rgb_to_y_range():
    assert torch.allclose(rgb_to_y(torch.zeros(1, 3, 1, 1)), torch.tensor(16 / 255))
    assert torch.allclose(rgb_to_y(torch.ones(1, 3, 1, 1)), torch.tensor(235 / 255))


def test_render_sr_figure_writes_a_png(tmp_path):
    g = torch.Generator().manual_seed(0)
    families = lambda: SimpleNamespace(ulam=torch.rand(1, 8, 8, generator=g), tlam=torch.rand(1, 4, 8, 8, generator=g),
                                       hlam=torch.rand(1, 8, 8, 8, generator=g))
    maps = SimpleNamespace(g2r=families(), r2g=families())
    lr, out, hr = torch.rand(3, 64, 64), torch.rand(3, 64, 64) * 2 - 1, torch.rand(3, 64, 64) * 2 - 1
    path = render_sr_figure(maps, lr, out, tmp_path / "fig" / "sr.png", hr=hr, metrics={"PSNR": 21.5})
    with Image.open(path) as image:
        width, height = image.size
    assert width > 2 * height                     # 3 rows x (1 + 1 + 4 + 8) panels


def test_overlay_weights():
    blended = overlay(np.zeros((2, 2, 3), np.float32), torch.zeros(2, 2))   # jet(0) = dark blue (0, 0, 0.5)
    assert abs(blended[0, 0, 2] - 0.25) < 1e-6 and blended[..., :2].max() == 0
    as_uint8 = overlay(np.full((2, 2, 3), 100, np.uint8), torch.ones(2, 2))   # jet(1) = dark red (0.5, 0, 0)
    assert as_uint8.dtype == np.uint8 and tuple(as_uint8[0, 0]) == (134, 70, 70)
