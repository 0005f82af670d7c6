"""Official post-processing and IMACS conventions (docs/method.md Appendix A steps 5-6) on hand-made maps.

The grid map M = [[0, 1], [2, 3]] is rendered at its own size, where the bicubic resize is the identity, so every
expected value below is worked out by hand (eps = 1e-8 moves nothing at the 1e-6 tolerance).
"""
import pytest
import torch
import torch.nn.functional as F

from i2am.engine.render import minmax, to_image
from i2am.evaluation import imacs

M = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
TOP = torch.tensor([[1.0, 1.0], [0.0, 0.0]])       # region = top row
BOTTOM = 1 - TOP                                    # region = bottom row (where the raw attention is high)


def close(a, b):
    torch.testing.assert_close(a, torch.as_tensor(b, dtype=torch.float32), rtol=0, atol=1e-6)


def test_official_r2g_keeps_high_values_and_saturates_at_0_6():
    # minmax twice: [[0, 1/3], [2/3, 1]]; no inversion; >= 0.6 -> 1
    close(to_image(M, (2, 2), "r2g", "official"), [[0, 1 / 3], [1, 1]])


def test_official_g2r_inverts_then_saturates():
    # 1 - [[0, 1/3], [2/3, 1]] = [[1, 2/3], [1/3, 0]]; >= 0.6 -> 1
    close(to_image(M, (2, 2), "g2r", "official"), [[1, 1], [1 / 3, 0]])


def test_official_g2r_cloth_forcing_multiplies_before_normalising():
    # M * C = [[0, 0], [2, 3]] -> minmax [[0, 0], [2/3, 1]] -> 1 - x = [[1, 1], [1/3, 0]] -> saturate
    close(to_image(M, (2, 2), "g2r", "official", cloth_mask=BOTTOM), [[1, 1], [1 / 3, 0]])
    # forcing is G2R-only
    close(to_image(M, (2, 2), "r2g", "official", cloth_mask=BOTTOM), [[0, 1 / 3], [1, 1]])


def test_official_imacs_r2g_scores_the_inverted_map_without_eps():
    p = to_image(M, (2, 2), "r2g", "official")
    # A = 1 - P = [[1, 2/3], [0, 0]]: top region inside = 5/6, outside = 0
    close(imacs(p, TOP, "r2g", "official"), 5 / 6)
    # the quirk: the region with the highest raw attention scores inside 0, outside 5/6 -> -3 * 5/6
    close(imacs(p, BOTTOM, "r2g", "official"), -2.5)
    # no eps in R2G: an empty region gives NaN as the official numpy code does
    assert torch.isnan(imacs(p, torch.zeros(2, 2), "r2g", "official"))


def test_official_imacs_g2r_scores_the_attention_with_eps():
    p = to_image(M, (2, 2), "g2r", "official")
    # A = 1 - P = [[0, 0], [2/3, 1]] against the garment (bottom row): inside (2/3 + 1) / 2, outside 0
    close(imacs(p, BOTTOM, "g2r", "official"), 5 / 6)
    close(imacs(p, TOP, "g2r", "official"), 0 - 3 * 5 / 6)
    assert torch.isfinite(imacs(p, torch.zeros(2, 2), "g2r", "official"))   # eps keeps an empty garment finite


def test_clean_preset_is_high_equals_attributed_with_the_display_threshold():
    # one minmax: [[0, 1/3], [2/3, 1]]; values <= 0.4 -> 0
    a = to_image(M, (2, 2), "r2g", "clean")
    close(a, [[0, 0], [2 / 3, 1]])
    close(imacs(a, BOTTOM, "r2g", "clean"), 5 / 6)
    close(to_image(M, (2, 2), "r2g", "clean", invert=True), [[1, 2 / 3], [0, 0]])


def test_official_resizes_with_bicubic_between_two_minmax():
    grid = torch.rand(3, 4, 3, generator=torch.Generator().manual_seed(0))
    expected = minmax(F.interpolate(minmax(grid)[:, None], size=(16, 12), mode="bicubic", align_corners=False)[:, 0])
    expected = torch.where(expected >= 0.6, torch.ones_like(expected), expected)
    close(to_image(grid, (16, 12), "r2g", "official"), expected)
    cloth = (torch.rand(16, 12) > 0.5).float()
    forced = grid * F.interpolate(cloth[None, None], size=(4, 3), mode="bicubic", align_corners=False)[0, 0]
    p = 1 - minmax(F.interpolate(minmax(forced)[:, None], size=(16, 12), mode="bicubic", align_corners=False)[:, 0])
    close(to_image(grid, (16, 12), "g2r", "official", cloth_mask=cloth), torch.where(p >= 0.6, torch.ones_like(p), p))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="preset"):
        to_image(M, (2, 2), preset="paper")
    with pytest.raises(ValueError, match="direction"):
        to_image(M, (2, 2), direction="both")
