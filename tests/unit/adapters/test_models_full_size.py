"""Full-size adapters on the meta device against the released checkpoints' manifests (shapes only, no weights)."""
import json
import os
from pathlib import Path

import pytest
import torch
from helpers.paths import REPO

from i2am.adapters import create_model, list_models

MANIFESTS = Path(os.environ.get("I2AM_MANIFESTS", REPO.parent / "shared" / "manifests"))
SCHEDULE = {"betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
            "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
            "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2"}
POSITION_IDS = "cond_stage_model.transformer.vision_model.embeddings.position_ids"
# name, manifest, keys a strict load accepts and reports as ignored, keys an export cannot regenerate
CASES = [
    ("pbe", "pbe_ldm.json", SCHEDULE | {POSITION_IDS}, {POSITION_IDS}),
    ("dcivton", "dcivton_viton512.json", SCHEDULE | {POSITION_IDS}, {POSITION_IDS}),
    ("stableviton", "stableviton_vitonhd.json", SCHEDULE | {"logvar"}, set()),
    ("custom", "custom_v2.json", set(), set()),
]
HOOKABLE = {"pbe": (15, 1, 0), "dcivton": (15, 1, 0), "stableviton": (15, 1, 9), "custom": (15, 1, 0)}

pytestmark = pytest.mark.skipif(not MANIFESTS.is_dir(), reason=f"manifests not found at {MANIFESTS}")


def manifest_state(manifest: dict, with_optional: bool = False) -> dict:
    keys = dict(manifest["keys"], **(manifest.get("optional_keys", {}) if with_optional else {}))
    dtypes = manifest.get("dtype_exceptions", {})
    return {k: torch.empty(shape, device="meta", dtype=getattr(torch, dtypes.get(k, "float32")))
            for k, shape in keys.items()}


@pytest.fixture(scope="module")
def meta_models():
    return {name: create_model(name, device="meta") for name, *_ in CASES}


def test_registry_lists_every_family():
    assert {"pbe", "pbe-tiny", "dcivton", "dcivton-tiny", "stableviton", "stableviton-tiny", "custom",
            "custom-tiny"} <= set(list_models())
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        create_model("nope")


@pytest.mark.parametrize("name,manifest_file,ignorable,not_exported", CASES)
def test_full_size_loads_manifest_strictly(meta_models, name, manifest_file, ignorable, not_exported):
    manifest = json.loads((MANIFESTS / manifest_file).read_text())
    model = meta_models[name]
    report = model.load_checkpoint(manifest_state(manifest), strict=True)
    assert report.missing == [] and report.unexpected == [] and report.mismatched == []
    expected_ignored = {k for k in manifest["keys"] if k in ignorable or k.startswith("vgg.")}
    assert set(report.ignored) == expected_ignored
    if manifest.get("optional_keys"):   # StableVITON: a copy re-saved under transformers 4.19 has position_ids
        assert model.load_checkpoint(manifest_state(manifest, with_optional=True)).ignored.count(POSITION_IDS) == 1


@pytest.mark.parametrize("name,manifest_file,ignorable,not_exported", CASES)
def test_full_size_export_reproduces_manifest_layout(meta_models, name, manifest_file, ignorable, not_exported):
    manifest = json.loads((MANIFESTS / manifest_file).read_text())
    exported = meta_models[name].export_checkpoint()
    wanted = {k: v for k, v in manifest["keys"].items()
              if not k.startswith("vgg.") and k not in (not_exported or set())}
    assert set(exported) == set(wanted)
    assert {k: list(v.shape) for k, v in exported.items()} == wanted


@pytest.mark.parametrize("name", [c[0] for c in CASES])
def test_full_size_hookable_layers(meta_models, name):
    layers = meta_models[name].attribution_layers()
    unet, mid, warp = HOOKABLE[name]
    assert sum(s.group == "unet" and not s.mid for s in layers) == unet
    assert sum(s.mid for s in layers) == mid
    assert sum(s.group == "warp" for s in layers) == warp
    grids = meta_models[name].expected_query_grids()
    latent = meta_models[name].latent_size
    assert latent == ((64, 64) if name == "pbe" else (64, 48))
    non_mid = [grids[s.name] for s in layers if not s.mid and s.group == "unet"]
    assert non_mid == [latent] * 2 + [(latent[0] // 2, latent[1] // 2)] * 2 + [(latent[0] // 4, latent[1] // 4)] * 5 \
        + [(latent[0] // 2, latent[1] // 2)] * 3 + [latent] * 3


def test_full_size_custom_layer_two_and_token_grid(meta_models):
    custom = meta_models["custom"]
    name = custom.decoder_layer_name(2)
    assert name == "up_blocks.1.attentions.1.transformer_blocks.0.attn2"
    assert custom.expected_query_grids()[name] == (16, 12)
    assert {s.ref_grid for s in custom.attribution_layers()} == {(37, 28)}
    assert tuple(custom.uncond_context.shape) == (1, 1036, 768)
    assert custom.cfg_layout == "cond_uncond" and meta_models["pbe"].cfg_layout == "uncond_cond"
    assert meta_models["stableviton"].cfg_layout == "none"


def test_full_size_stableviton_warp_blocks(meta_models):
    sv = meta_models["stableviton"]
    warps = [s for s in sv.attribution_layers() if s.group == "warp"]
    assert [sv.expected_query_grids()[s.name] for s in warps] == [(16, 12)] * 3 + [(32, 24)] * 3 + [(64, 48)] * 3
    assert all(s.ref_grid == "query" and s.module.heads == 8 for s in warps)
    assert [s.module.to_k.in_features for s in warps] == [1280, 1280, 640, 640, 640, 320, 320, 320, 320]
