"""Every registered tiny model keeps the adapter contract (``i2am.engine.contract.AttributionAdapter``): it builds,
prepares a toy batch, samples one step under its capture with non-empty finite maps, leaves its model as it found
it, and round-trips its weights. The model list is the registry's, so a new family is checked without being named
here; the diffusion-transformer preset is checked with each pipeline it runs."""
import pytest
import torch
from torch import nn

from i2am.adapters import create_model, list_models
from i2am.adapters._checkpoint import CheckpointError
from i2am.adapters.diffusers.dit.transformer import ADAPTERS
from i2am.engine import CaptureConfig
from i2am.engine.contract import AttributionAdapter
from i2am.sampling.sampler import Sampler

TINY = [name for name in list_models() if name.endswith("-tiny")]
CASES = [(name, {}) for name in TINY if name != "diffusers-dit-tiny"]
CASES += [("diffusers-dit-tiny", {"pipeline": p}) for p in ADAPTERS if "diffusers-dit-tiny" in TINY]


def case_id(case) -> str:
    name, options = case
    return "-".join([name, *options.values()])


def toy_batch(n=2, size=(128, 96)):
    """Every key a tiny family reads: the try-on images and mask, PASD's low-resolution input."""
    g = torch.Generator().manual_seed(0)
    img = lambda: torch.rand(n, 3, *size, generator=g) * 2 - 1
    mask = torch.zeros(n, 1, *size)
    mask[:, :, size[0] // 4: 3 * size[0] // 4, size[1] // 4: 3 * size[1] // 4] = 1
    return {"image": img(), "reference": img(), "agnostic": img(), "densepose": img(), "inpaint_mask": mask,
            "lr": torch.rand(n, 3, 128, 128, generator=g), "sample_id": [f"s{i}" for i in range(n)]}


def randomize_(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model


def model_state(model: nn.Module) -> dict:
    """What a capture may change and must put back: every module's processor and hooks, the instance's methods."""
    processors = {n: m.processor for n, m in model.named_modules() if hasattr(m, "set_processor")}
    hooks = {n: (len(m._forward_hooks), len(m._forward_pre_hooks)) for n, m in model.named_modules()}
    return {"processors": processors, "hooks": hooks, "instance": set(vars(model))}


def test_the_registry_has_tiny_presets_of_every_family():
    assert len(TINY) >= 7 and len(CASES) >= len(TINY)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_adapter_keeps_the_contract(case):
    name, options = case
    torch.manual_seed(0)
    adapter = create_model(name, **options).eval()
    assert isinstance(adapter, AttributionAdapter)
    # FLUX.2, Qwen-Image-Edit Plus and the image-to-video pipelines take one reference per call
    n = 1 if adapter.video or options.get("pipeline") in ("Flux2Pipeline", "QwenImageEditPlusPipeline") else 2
    batch = {k: v[:n] for k, v in toy_batch().items()}
    inputs = adapter.prepare(batch)
    # [C, h, w], a video's [C, F, h, w]
    assert inputs.sample_ids == batch["sample_id"] and len(inputs.latent_shape) == (4 if adapter.video else 3)

    if adapter.video:   # transformers installs its CLIP hidden-state capture hooks on the image encoder's first call
        adapter.sample(batch, Sampler(num_steps=1, seed=0))
    before = model_state(adapter)
    with adapter.attribution_capture(CaptureConfig(num_steps=1, time_groups=1)) as capture:
        out = adapter.sample(batch, Sampler(num_steps=1, seed=0))
    maps = capture.maps()
    assert model_state(adapter) == before
    assert out["latents"].shape == (n, *inputs.latent_shape) and torch.isfinite(out["images"]).all()
    assert maps.raw and maps.batch_size == n
    assert all(torch.isfinite(v).all() and v.abs().sum() > 0 for v in maps.raw.values()), sorted(maps.raw)
    assert {key.split("/", 1)[1] for key in maps.raw} <= {s.name for s in adapter.attribution_layers()}


@pytest.mark.parametrize("name", TINY)
def test_checkpoint_round_trip(name, tmp_path):
    source = randomize_(create_model(name), seed=1)
    if not source.loads_checkpoints:   # weights from a diffusers folder (model.path): a file is refused
        with pytest.raises(CheckpointError, match="model.path"):
            source.load_checkpoint(tmp_path / "any.ckpt")
        return
    path = tmp_path / "original.ckpt"
    torch.save({"state_dict": source.export_checkpoint()}, path)
    fresh = create_model(name)
    assert fresh.load_checkpoint(path, strict=True).ok
    expected, loaded = source.export_checkpoint(), fresh.export_checkpoint()
    assert expected.keys() == loaded.keys() and all(torch.equal(expected[k], loaded[k]) for k in expected)
    changed = [k for k, v in create_model(name).export_checkpoint().items() if not torch.equal(v, expected[k])]
    assert changed   # the load did change the fresh model's weights
