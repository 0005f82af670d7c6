"""Adapters at any architecture: create_model(name, size=..., <component>={...}) and the same through Hydra."""

import pytest
import torch
from helpers.paths import REPO
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from i2am.adapters import create_model
from i2am.adapters._checkpoint import CheckpointError

CONF = str(REPO / "conf")
UNET = {"block_out_channels": [32, 64, 96, 96], "norm_num_groups": 32, "attention_head_dim": 4}
CLIP = {"hidden_size": 48, "num_attention_heads": 4, "intermediate_size": 96, "proj_size": 24}
# a width no preset has, per family (DCI-VTON shares PBE's architecture)
VARIANTS = {
    "pbe": dict(unet=UNET, clip_vision=CLIP),
    "stableviton": dict(unet=UNET, clip_vision=CLIP, warp={"heads": 4}),
    "custom": dict(unet=UNET, dinov2={"hidden_size": 48, "num_attention_heads": 4, "context_dim": 24,
                                      "projector_blocks": 1}),
}


def build(name, seed, **overrides):
    torch.manual_seed(seed)
    return create_model(name, size="tiny", **overrides)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_non_preset_architecture_round_trips_through_the_original_layout(name):
    source = build(name, 0, **VARIANTS[name])
    assert list(source.unet.config.block_out_channels) == [32, 64, 96, 96]
    assert all(m.num_groups == 32 for m in source.unet.modules() if isinstance(m, torch.nn.GroupNorm))
    target = build(name, 1, **VARIANTS[name])
    assert not torch.equal(next(iter(target.unet.parameters())), next(iter(source.unet.parameters())))
    report = target.load_checkpoint(source.export_checkpoint(), strict=True)
    assert report.ok
    own, loaded = source.state_dict(), target.state_dict()
    assert own.keys() == loaded.keys() and all(torch.equal(own[k], loaded[k]) for k in own)
    with pytest.raises(CheckpointError):
        build(name, 2).load_checkpoint(source.export_checkpoint(), strict=True)   # the preset does not fit


def test_stableviton_warp_block_count_and_heads():
    model = create_model("stableviton-tiny", warp={"first_block": 6, "heads": 2})
    assert len(model.denoiser.warp_blocks) == 6 and model.denoiser.warp_blocks[0].transformer_blocks[0].attn2.heads == 2
    names = [s.name for s in model.attribution_layers()]
    warp = names.index("warp_blocks.0.transformer_blocks.0.attn2")   # runs right before output block 6
    assert names[warp + 1] == "unet.up_blocks.2.attentions.0.transformer_blocks.0.attn2"
    with pytest.raises(ValueError, match="warp component"):
        create_model("stableviton-tiny", warp={"blocks": 9})


def test_size_selects_the_preset_and_presets_stay_unchanged():
    assert type(create_model("pbe", size="tiny")).__name__ == "PaintByExample"
    assert create_model("pbe", size="tiny").unet.config.block_out_channels == \
        create_model("pbe-tiny").unet.config.block_out_channels
    full = create_model("pbe", size="full", device="meta")
    assert list(full.unet.config.block_out_channels) == [320, 640, 1280, 1280]
    assert full.unet.config.norm_num_groups == 32
    with pytest.raises(ValueError, match="the presets are"):
        create_model("pbe", size="medium")
    with pytest.raises(ValueError, match="already selects"):
        create_model("pbe-tiny", size="full")


@pytest.mark.parametrize("name", ["pbe", "dcivton", "stableviton", "custom"])
def test_small_preset_has_ldm_group_norms(name):
    model = create_model(name, size="small")
    assert model.name == f"{name}-small" and list(model.unet.config.block_out_channels) == [32, 64, 128, 128]
    norms = [m for m in [*model.unet.modules(), *model.vae.modules()] if isinstance(m, torch.nn.GroupNorm)]
    assert norms and all(m.num_groups == 32 for m in norms)


def test_component_overrides_through_hydra():
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("attribute", overrides=["model=pbe-tiny", "+model.unet.block_out_channels=[32,64,96,96]",
                                              "+model.unet.norm_num_groups=32", "+model.clip_vision.proj_size=24"])
    model = instantiate(cfg.model)
    assert list(model.unet.config.block_out_channels) == [32, 64, 96, 96]
    assert model.unet.config.cross_attention_dim == 24 and model.image_encoder.proj_out.out_features == 24
