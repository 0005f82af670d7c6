"""The toy Kontext-style transformer (i2am.adapters.toy_kontext): Kontext packing, a differentiable control loss that
the training lowers, exact resumption, and the localisation check of the joint-attention capture."""
from __future__ import annotations

import json

import pytest
import torch

from i2am.adapters.toy_kontext import (
    LOSS_BLOCK,
    PATCH_DIM,
    TOKEN_GRID,
    AttentionProbe,
    build_toy_kontext,
    token_ids,
    training_losses,
    velocity,
)
from i2am.engine.packing import read_layout
from i2am.training.toy_kontext_check import capture_srams, localization_check
from i2am.training.toy_kontext_train import TrainConfig, load_toy_pairs, train

LG = TOKEN_GRID[0] * TOKEN_GRID[1]
SMALL_WORLD = {"n_train": 4, "n_test": 4, "seed": 0}   # the first pairs of the full toy world, quicker to write


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return load_toy_pairs(tmp_path_factory.mktemp("toy"), "train", world=SMALL_WORLD)


def _draws(pairs, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(len(pairs), generator=g), torch.randn(pairs.x0.shape, generator=g)


def test_model_is_packed_as_flux_kontext(pairs):
    model = build_toy_kontext()
    ids = token_ids()
    assert ids.shape == (2 * LG, 3) and set(ids[:LG, 0].tolist()) == {0} and set(ids[LG:, 0].tolist()) == {1}
    assert torch.equal(ids[:LG, 1:], ids[LG:, 1:])                 # the reference on the same row/col ids
    seen = {}
    handle = model.register_forward_pre_hook(lambda m, a, kw: seen.update(kw), with_kwargs=True)
    with torch.no_grad():
        out = velocity(model, pairs.x0[:2], pairs.select(slice(0, 2)), torch.full((2,), 0.5))
    handle.remove()
    layout = read_layout(model, seen)
    assert [(s.kind, s.length, s.grid) for s in layout.segments] == [
        ("text", 1, (1, 1)), ("generated", LG, TOKEN_GRID), ("reference", LG, TOKEN_GRID)]
    assert out.shape == (2, LG, PATCH_DIM)
    assert pairs.valid.any(dim=1).all() and pairs.targets.max() < LG


def test_probe_matches_the_capture_and_keeps_gradients(pairs):
    model = build_toy_kontext(seed=3)
    one = pairs.select(slice(0, 1))
    s = torch.tensor([0.7])
    with AttentionProbe(model) as probe:
        velocity(model, one.x0, one, s)
    attention = probe.g2r()
    assert attention.requires_grad and attention.shape == (1, LG, *TOKEN_GRID)
    torch.testing.assert_close(attention.flatten(2).sum(-1), torch.ones(1, LG))
    # the engine's i2am SRAM of the same call (its one step starting from noise x_1 = one.x0 here)
    from i2am.engine.config import CaptureConfig
    from i2am.engine.joint import JointAttentionCapture
    from i2am.measures.localization import grid_cells
    cfg = CaptureConfig(num_steps=1, time_groups=1, directions=("g2r",), layers=[LOSS_BLOCK], sram_layers=[LOSS_BLOCK])
    with JointAttentionCapture(model, cfg, normalisations=("i2am",)) as capture, torch.no_grad():
        velocity(model, one.x0, one, s)
    sram = capture.maps().sram(f"image:reference/{LOSS_BLOCK}", points=grid_cells(*TOKEN_GRID))
    torch.testing.assert_close(sram, attention.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.numeric
def test_control_loss_is_differentiable_and_falls(pairs):
    torch.manual_seed(0)
    model = build_toy_kontext()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    s, noise = _draws(pairs)
    history = []
    for _ in range(8):
        losses = training_losses(model, pairs, s, noise)
        optimizer.zero_grad()
        losses["correspondence_ce"].backward()
        grads = [p.grad for p in model.transformer_blocks[1].attn.to_k.parameters()]
        assert all(g is not None and g.abs().sum() > 0 for g in grads)
        optimizer.step()
        history.append(float(losses["correspondence_ce"].detach()))
    assert history[-1] < history[0] - 0.3, history


@pytest.mark.numeric
def test_training_resumes_exactly(pairs, tmp_path):
    cfg = {"batch_size": 2, "checkpoint_every": 2, "log_every": 1}
    straight, _ = train(tmp_path / "a", pairs, TrainConfig(steps=4, **cfg), progress=False)
    train(tmp_path / "b", pairs, TrainConfig(steps=2, **cfg), progress=False)      # "killed" after step 2
    resumed, last = train(tmp_path / "b", pairs, TrainConfig(steps=4, **cfg), progress=False)
    assert last["step"] == 4
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="only steps may change"):
        train(tmp_path / "b", pairs, TrainConfig(steps=4, lr=1e-2, **cfg), progress=False)


def test_check_returns_figures_for_both_normalisations(pairs):
    model = build_toy_kontext()
    srams = capture_srams(model, pairs.select(slice(0, 2)), num_steps=2)
    assert set(srams) == {"i2am", "share"}
    for sram in srams.values():
        assert sram.shape == (2, LG, *TOKEN_GRID)
    # per step, the i2am rows are distributions; the share rows are the part of the joint softmax on the reference
    torch.testing.assert_close(srams["i2am"].flatten(2).sum(-1), torch.full((2, LG), 2.0))
    assert ((srams["share"].flatten(2).sum(-1) > 0) & (srams["share"].flatten(2).sum(-1) < 2)).all()
    figures = localization_check(model, pairs.select(slice(0, 2)), num_steps=2)
    for name in ("i2am", "share"):
        f = figures[name]
        assert 0 < f["loc_n_queries"] <= float(pairs.valid[:2].sum())   # garment-covered cells of the try-on region
        assert 0 <= f["loc_err"] <= 1 and 0 < f["attn_entropy"] <= torch.log(torch.tensor(float(LG))) + 1e-4
        assert "loc_err_bbox_baseline" in f and f["loc_localizes"] in (0.0, 1.0)


@pytest.mark.numeric
def test_shipped_model_localises_better_than_the_bbox_baseline(tmp_path):
    """i2am/pretrained/toy_kontext/kontext.safetensors on the first 4 held-out toy pairs: its G2R SRAMs (both
    normalisations) beat the bounding-box mapping and pass the verdict; the untrained model's do not."""
    from i2am.pretrained import TOY_KONTEXT
    from i2am.pretrained.export import sha256
    from i2am.training.toy_kontext_check import load_toy_kontext

    card = json.loads(TOY_KONTEXT.with_suffix(".json").read_text())
    assert card["sha256"] == sha256(TOY_KONTEXT) and card["bytes"] == TOY_KONTEXT.stat().st_size < 2**20
    heldout = load_toy_pairs(tmp_path, "test", world={"n_train": 1, "n_test": 4, "seed": 0})
    trained = localization_check(load_toy_kontext(TOY_KONTEXT), heldout)
    untrained = localization_check(build_toy_kontext(), heldout)
    for name in ("i2am", "share"):
        got, base = trained[name], untrained[name]
        assert got["loc_err"] < got["loc_err_bbox_baseline"] and got["loc_localizes"] == 1.0, (name, got)
        assert base["loc_err"] > got["loc_err_bbox_baseline"] and base["loc_localizes"] == 0.0, (name, base)
        assert got["attn_entropy"] < base["attn_entropy"]
