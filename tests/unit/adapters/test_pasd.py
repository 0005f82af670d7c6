"""PASD: the full-size architecture against the release manifest (meta device), the tiny model end to end on CPU."""
import json
import os
from pathlib import Path

import pytest
import torch
from diffusers import DDIMScheduler, UNet2DConditionModel
from diffusers.models.attention_processor import Attention
from diffusers.models.controlnets.controlnet import ControlNetConditioningEmbedding
from helpers.paths import REPO

from i2am.adapters import create_model
from i2am.adapters._checkpoint import CheckpointError
from i2am.adapters.pasd import configs
from i2am.adapters.pasd.checkpoint import detect_variant, require_supported
from i2am.adapters.pasd.color_fix import wavelet_color_fix, wavelet_split
from i2am.adapters.pasd.controlnet import DegradationRemovalEmbedding
from i2am.adapters.pasd.sampling import start_latents
from i2am.adapters.pasd.text import ByteTokenizer, full_prompt
from i2am.engine import AttributionCapture, CaptureConfig
from i2am.sampling.sampler import Sampler

MANIFESTS = Path(os.environ.get("I2AM_MANIFESTS", REPO.parent / "shared" / "manifests"))
needs_manifest = pytest.mark.skipif(not (MANIFESTS / "pasd.json").is_file(), reason=f"no pasd.json in {MANIFESTS}")
PACA_KEY_WIDTHS = [1280] * 3 + [1280, 1280, 640] + [640, 640, 320] + [320] * 3


@pytest.fixture(scope="module")
def manifest():
    return json.loads((MANIFESTS / "pasd.json").read_text())


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_model("pasd-tiny").eval()


def release_state(manifest, extra: dict | None = None) -> dict:
    """The release as meta tensors: pasd.json's keys plus the stock SD-1.5 UNet keys the unet file also holds."""
    with torch.device("meta"):
        stock = UNet2DConditionModel.from_config(configs.SD15_UNET)
    state = {f"unet/{k}": v for k, v in stock.state_dict().items()}
    assert len(state) == manifest["unet_file_base_part"]["tensors"]
    assert sum(v.numel() for v in state.values()) == manifest["unet_file_base_part"]["params"]
    shapes = {**manifest["keys"], **(extra or {})}
    state.update({k: torch.empty(shape, device="meta") for k, shape in shapes.items()})
    return state


@needs_manifest
def test_full_size_meta_accepts_the_release_keys(manifest):
    adapter = create_model("pasd", device="meta")
    report = adapter.load_checkpoint(release_state(manifest))
    assert report.ok and not report.missing and not report.unexpected and not report.mismatched
    assert sum(p.numel() for n, p in adapter.unet.named_parameters() if "pixel_attentions" in n) == 248_234_560
    assert sum(p.numel() for p in adapter.controlnet.parameters()) == 361_289_497


@needs_manifest
def test_full_size_rrdb_variant_loads_and_light_is_rejected(manifest):
    rrdb_keys = manifest["variants"]["pasd_rrdb"]["adds_keys"]
    state = release_state(manifest, rrdb_keys)
    assert detect_variant(state) == "pasd_rrdb"
    with pytest.raises(CheckpointError, match="'pasd_rrdb' checkpoint.*variant='pasd_rrdb'"):
        create_model("pasd", device="meta").load_checkpoint(state)
    assert create_model("pasd", device="meta", variant="pasd_rrdb").load_checkpoint(state).ok

    light = {k: v for k, v in release_state(manifest).items() if "pixel_attentions" not in k}
    light.update({k: torch.empty(s, device="meta") for k, s in manifest["variants"]["pasd_light"]["adds_keys"].items()})
    assert detect_variant(light) == "pasd_light"
    assert detect_variant({**light, **rrdb_keys}) == "pasd_light_rrdb"
    with pytest.raises(CheckpointError, match="'pasd_light' is not supported.*attn2_plus"):
        create_model("pasd", device="meta").load_checkpoint(light)
    with pytest.raises(CheckpointError, match="'pasd_light_rrdb'"):
        require_supported("pasd_light_rrdb")


def test_full_size_paca_layers_are_the_12_pixel_aware_attentions():
    adapter = create_model("pasd", device="meta")
    specs = adapter.attribution_layers()
    assert [s.name for s in specs] == [f"up_blocks.{i}.pixel_attentions.{j}.transformer_blocks.0.attn2"
                                       for i in range(4) for j in range(3)]
    assert all(isinstance(s.module, Attention) and s.ref_grid == "query" and s.group == "paca" for s in specs)
    assert [s.module.to_k.in_features for s in specs] == PACA_KEY_WIDTHS
    assert {s.module.heads for s in specs} == {8}
    assert adapter.cfg_layout == "uncond_cond" and adapter.step_module is adapter.unet


@pytest.mark.numeric
def test_tiny_samples_end_to_end_and_capture_finds_the_paca_grid_layout(tiny):
    lr = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    batch = {"lr": lr, "sample_id": ["a", "b"]}
    plain = tiny.sample(batch, Sampler(num_steps=3))["images"]
    with AttributionCapture(tiny, CaptureConfig(num_steps=3, time_groups=3, cfg_layout="auto")) as cap:
        captured = tiny.sample(batch, Sampler(num_steps=3))["images"]
    assert plain.shape == (2, 3, 128, 128) and plain.abs().max() <= 1 and torch.isfinite(plain).all()
    assert torch.equal(plain, captured)
    assert len(cap.layers) == 12 and cap.steps_seen == 3
    latent = 128 // 8
    grids = [g["query"] for g in cap.layer_grids().values()]
    assert grids == [(latent // f, latent // f) for f in (8, 4, 2, 1) for _ in range(3)]
    assert all(g["ref"] == g["query"] for g in cap.layer_grids().values())
    maps = cap.maps()
    assert maps.g2r.ulam.shape == (2, 16, 16) and maps.r2g.tlam.shape == (2, 3, 16, 16)
    assert maps.g2r.hlam.shape == (2, 2, 16, 16)
    single = tiny.sample({"lr": lr[1:], "sample_id": ["b"]}, Sampler(num_steps=3))["images"]
    torch.testing.assert_close(single, plain[1:], atol=1e-4, rtol=0)


def test_paca_keys_are_the_controlnet_residual_of_the_same_skip(tiny):
    x = torch.randn(1, 4, 16, 16)
    text = torch.randn(1, 77, 32)
    down, mid = tiny.controlnet(x, 10, encoder_hidden_states=text, controlnet_cond=torch.rand(1, 3, 128, 128),
                                return_dict=False)
    seen = {}
    hooks = [s.module.register_forward_pre_hook(
        lambda m, a, kw, name=s.name: seen.__setitem__(name, kw["encoder_hidden_states"]), with_kwargs=True)
        for s in tiny.attribution_layers()]
    try:
        tiny.unet(x, 10, encoder_hidden_states=text, down_block_additional_residuals=down,
                  mid_block_additional_residual=mid)
    finally:
        for h in hooks:
            h.remove()
    for index, name in enumerate(tiny.unet.paca_layer_names()):
        residual = down[11 - index]                       # up_blocks.0.* read 11, 10, 9; up_blocks.3.* read 2, 1, 0
        expected = residual.permute(0, 2, 3, 1).reshape(1, -1, residual.shape[1])
        torch.testing.assert_close(seen[name], expected, rtol=0, atol=0)
    assert all(block.pixel_context is None for block in tiny.unet.up_blocks)


def test_unet_without_controlnet_is_the_stock_diffusers_unet(tiny):
    stock = UNet2DConditionModel.from_config(configs.TINY_UNET)
    missing, unexpected = stock.load_state_dict(tiny.unet.state_dict(), strict=False)
    assert not missing and all("pixel_attentions" in k for k in unexpected)
    x, text = torch.randn(2, 4, 16, 16), torch.randn(2, 77, 32)
    with torch.no_grad():
        torch.testing.assert_close(tiny.unet(x, 5, text).sample, stock(x, 5, text).sample)


def test_degradation_removal_embedding_matches_diffusers_and_emits_rgbs():
    torch.manual_seed(0)
    ours = DegradationRemovalEmbedding(32, 3, (8, 8, 16, 16))
    stock = ControlNetConditioningEmbedding(32, 3, (8, 8, 16, 16))
    missing, unexpected = stock.load_state_dict(ours.state_dict(), strict=False)
    assert not missing and all(k.startswith("to_rgbs") for k in unexpected)
    image = torch.rand(1, 3, 64, 64)
    torch.testing.assert_close(ours(image), stock(image))
    assert [tuple(r.shape) for r in ours.rgb_outputs(image)] == [(1, 3, 32, 32), (1, 3, 16, 16), (1, 3, 8, 8)]
    rrdb = DegradationRemovalEmbedding(32, 3, (8, 8, 16, 16), use_rrdb=True)
    assert len([k for k in rrdb.state_dict() if k.startswith("preprocesser.")]) == 60


def test_release_folder_round_trip(tmp_path, tiny):
    tiny.unet.save_pretrained(tmp_path / "unet")
    tiny.controlnet.save_pretrained(tmp_path / "controlnet")
    assert json.loads((tmp_path / "controlnet" / "config.json").read_text())["use_rrdb"] is False
    fresh = create_model("pasd-tiny")
    assert fresh.load_checkpoint(tmp_path).ok
    for key, value in tiny.unet.state_dict().items():
        assert torch.equal(fresh.unet.state_dict()[key], value), key
    (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no weights in .*unet"):
        fresh.load_checkpoint(tmp_path)


def test_start_latents_follow_pasd_twice_noised_lr_latent():
    scheduler = DDIMScheduler.from_config(configs.SD15_SCHEDULER)
    scheduler.set_timesteps(20)
    z, n1, n2 = torch.randn(3, 2, 4, 8, 8).unbind(0)
    acp = scheduler.alphas_cumprod
    t0 = int(scheduler.timesteps[0])
    once = acp[t0].sqrt() * z + (1 - acp[t0]).sqrt() * n1
    expected = acp[900].sqrt() * once + (1 - acp[900]).sqrt() * n2
    torch.testing.assert_close(start_latents(scheduler, z, n1, n2, 900), expected)


def test_wavelet_color_fix_keeps_detail_and_takes_reference_colours():
    image = torch.rand(1, 3, 32, 32)
    high, low = wavelet_split(image)
    torch.testing.assert_close(high + low, image)
    flat_gen, flat_ref = torch.full((1, 3, 32, 32), 0.2), torch.full((1, 3, 32, 32), 0.7)
    torch.testing.assert_close(wavelet_color_fix(flat_gen, flat_ref), flat_ref)
    torch.testing.assert_close(wavelet_color_fix(image, image), image)


def test_prompts_and_byte_tokenizer():
    assert full_prompt("") == "clean, high-resolution, 8k"
    assert full_prompt("a chip,") == "a chip, clean, high-resolution, 8k"
    ids = ByteTokenizer(998, 999, 999, 8)(["ab", "abcdefghij"])
    assert ids.tolist() == [[998, 97, 98, 999, 999, 999, 999, 999], [998, 97, 98, 99, 100, 101, 102, 999]]
