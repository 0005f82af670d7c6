"""The one answer to "which rows of a batched denoiser call are the conditional ones"."""
import pytest
import torch

from i2am.engine.cfg_rows import chunk_rows, conditional_rows, layout_for, split_cfg, uses_cfg


def test_two_chunk_layouts_pick_their_conditional_half():
    rows = torch.arange(6)
    assert rows[conditional_rows(6, "none")].tolist() == [0, 1, 2, 3, 4, 5]
    assert rows[conditional_rows(6, "uncond_cond")].tolist() == [3, 4, 5]
    assert rows[conditional_rows(6, "cond_uncond")].tolist() == [0, 1, 2]


def test_split_cfg_returns_conditional_then_unconditional():
    x = torch.arange(4.0)
    for layout, (cond, uncond) in {"uncond_cond": ([2, 3], [0, 1]), "cond_uncond": ([0, 1], [2, 3])}.items():
        got = split_cfg(x, layout)
        assert got[0].tolist() == cond and got[1].tolist() == uncond


def test_chunk_rows_names_any_chunk_of_a_stacked_batch():
    rows = torch.arange(9)   # InstructPix2Pix: [text + image, image only, unconditional] of a latent batch of 3
    assert [rows[chunk_rows(9, 3, i)].tolist() for i in range(3)] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]


def test_layout_follows_the_guidance():
    assert [uses_cfg(g) for g in (None, 1, 1.0, 3.0, 0.5)] == [False, False, False, True, True]
    assert layout_for("cond_uncond", 5.0) == "cond_uncond" and layout_for("cond_uncond", 1.0) == "none"


def test_uneven_batches_and_unknown_layouts_are_refused():
    with pytest.raises(RuntimeError, match="needs an even batch, got 3"):
        conditional_rows(3, "uncond_cond")
    with pytest.raises(RuntimeError, match="does not split into 3"):
        chunk_rows(8, 3, 0)
    with pytest.raises(ValueError, match="choose from"):
        conditional_rows(4, "auto")
