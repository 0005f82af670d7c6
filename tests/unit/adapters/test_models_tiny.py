"""Tiny presets (every ``*-tiny`` name of the registry): build on CPU, sample end to end, same hookable layers as full
size (the sized families), lossless checkpoint round trip (the families that load checkpoint files)."""
import pytest
import torch
from helpers.paths import REPO

from i2am.adapters import _unet_passes as unet_passes
from i2am.adapters import create_model, list_models
from i2am.adapters._registry import SizedFactory, model_factory
from i2am.engine import AttributionCapture, CaptureConfig
from i2am.sampling.sampler import Sampler

TINY = [name for name in list_models() if name.endswith("-tiny")]
# the tiny presets of the families registered in the three standard sizes: the full architecture at toy width, and
# an original checkpoint that holds every weight
SIZED = [name for name in TINY if isinstance(model_factory(name), SizedFactory)]


def toy_batch(n=2, size=(128, 96), seed=0, ids=None):
    g = torch.Generator().manual_seed(seed)
    img = lambda: torch.rand(n, 3, *size, generator=g) * 2 - 1
    mask = torch.zeros(n, 1, *size)
    mask[:, :, size[0] // 4: 3 * size[0] // 4, size[1] // 4: 3 * size[1] // 4] = 1
    return {"image": img(), "reference": img(), "agnostic": img(), "densepose": img(), "inpaint_mask": mask,
            "lr": torch.rand(n, 3, 128, 128, generator=g), "sample_id": ids or [f"s{i}" for i in range(n)]}


def randomize_(model, seed=0):
    """Random weights everywhere, including the zero-initialised warp blocks and convs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model


@pytest.fixture(scope="module")
def models():
    return {name: randomize_(create_model(name)) for name in TINY}


# each model's default sampler at 4 steps: LDM DDIM ("uniform", +1; the diffusers UNet pipelines sample with it
# too), the custom model's own DDIM (999, 1000 - τ, ...), PASD's UniPC with "linspace" spacing (round(linspace(999, 0,
# 5))[:4]), FLUX's flow-matching Euler (sigma 1, 3/4, 1/2, 1/4 without shift, times 1000). A new tiny family fails
# here until its schedule is added.
DEFAULT_TIMESTEPS = {"pbe-tiny": [751, 501, 251, 1], "dcivton-tiny": [751, 501, 251, 1],
                     "stableviton-tiny": [751, 501, 251, 1], "custom-tiny": [999, 750, 500, 250],
                     "pasd-tiny": [999, 749, 500, 250], "diffusers-tiny": [751, 501, 251, 1],
                     "diffusers-dit-tiny": [1000.0, 750.0, 500.0, 250.0],
                     # the tiny Wan I2V's flow-matching Euler at shift 7 (diffusers' exponential time shift)
                     "diffusers-video-tiny": [1000.0, 933.98095703125, 781.3526000976562, 46.75572204589844]}


@pytest.mark.parametrize("name", TINY)
def test_tiny_samples_four_steps(models, name):
    model, steps = models[name], []
    n = 1 if model.video else 2   # an image-to-video pipeline conditions a call on one reference image
    out = model.sample(toy_batch(n), Sampler(num_steps=4), callback=lambda s: steps.append(s["t"]))
    latent_shape = model.prepare(toy_batch(n)).latent_shape
    frames = (model.num_frames,) if model.video else ()   # a video [B, 3, T, H, W]
    assert out["images"].shape == (n, 3, *frames, *model.image_size) and out["latents"].shape == (n, *latent_shape)
    assert torch.isfinite(out["images"]).all() and out["images"].abs().max() <= 1
    assert steps == DEFAULT_TIMESTEPS[name]


@pytest.mark.parametrize("name", SIZED)
def test_tiny_layers_match_full_size_layout(models, name):
    tiny, full = models[name], create_model(name.removesuffix("-tiny"), device="meta")
    tiny_layers, full_layers = tiny.attribution_layers(), full.attribution_layers()
    assert [(s.name, s.group, s.mid) for s in tiny_layers] == [(s.name, s.group, s.mid) for s in full_layers]
    with AttributionCapture(tiny, CaptureConfig(num_steps=1, time_groups=1, layers="all+mid",
                                                directions=("r2g",))) as cap:
        inputs = tiny.prepare(toy_batch(n=1))
        with torch.no_grad():
            tiny.denoise(torch.randn(1, 4, 16, 12), torch.tensor(500), inputs)
    captured = {k: v["query"] for k, v in cap.layer_grids().items()}
    assert len(cap.layers) == len(full_layers) and captured == tiny.expected_query_grids()
    (th, tw), (fh, fw) = tiny.latent_size, full.latent_size
    full_grids = full.expected_query_grids()
    for spec in tiny_layers:   # relative layout: same fraction of the latent grid (the 2x2 mid block excepted)
        if not spec.mid:
            qh, qw = captured[spec.name]
            assert (qh * fh // th, qw * fw // tw) == full_grids[spec.name], spec.name


@pytest.mark.numeric
@pytest.mark.parametrize("name", SIZED)
def test_tiny_round_trip_through_original_layout(models, name, tmp_path):
    """The sized families' original checkpoint (one LDM file) holds the whole model, so a loaded copy samples the
    same; the other families' exported weights round-trip in test_adapter_contract."""
    model = models[name]
    path = tmp_path / "original.ckpt"
    torch.save({"state_dict": model.export_checkpoint()}, path)
    fresh = create_model(name)
    report = fresh.load_checkpoint(path, strict=True)
    assert report.ok
    batch = toy_batch()
    with torch.no_grad():
        x = torch.randn(2, *model.prepare(batch).latent_shape, generator=torch.Generator().manual_seed(1))
        a = model.denoise(x, torch.tensor(601), model.prepare(batch), guidance=3.0)
        b = fresh.denoise(x, torch.tensor(601), fresh.prepare(batch), guidance=3.0)
    assert torch.equal(a, b)
    assert torch.equal(model.sample(batch, Sampler(num_steps=2))["images"],
                       fresh.sample(batch, Sampler(num_steps=2))["images"])


def test_own_state_dict_loads_with_lightning_prefix(models):
    model, fresh = models["custom-tiny"], create_model("custom-tiny")
    report = fresh.load_checkpoint({f"model.{k}": v for k, v in model.state_dict().items()})
    assert report.ok and all(torch.equal(v, fresh.state_dict()[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("name,cond_index", [("pbe-tiny", 1), ("custom-tiny", 0)])
def test_cfg_is_one_batched_call_in_the_family_layout(models, name, cond_index):
    model = models[name]
    inputs = model.prepare(toy_batch())
    seen = []
    handle = model.step_module.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append(kwargs["encoder_hidden_states"]), with_kwargs=True)
    x, t = torch.randn(2, 4, 16, 12), torch.tensor(401)
    try:
        with torch.no_grad():
            guided = model.denoise(x, t, inputs, guidance=4.0)
            eps_c = model.denoise(x, t, inputs, guidance=1.0)
            inputs.context = inputs.uncond_context
            eps_u = model.denoise(x, t, inputs, guidance=1.0)
    finally:
        handle.remove()
    assert len(seen) == 3 and seen[0].shape[0] == 4
    assert torch.equal(seen[0].chunk(2)[cond_index], seen[1])
    torch.testing.assert_close(guided, eps_u + 4.0 * (eps_c - eps_u), atol=1e-5, rtol=1e-4)


def test_stableviton_warp_blocks_read_the_garment(models):
    model = models["stableviton-tiny"]
    batch = toy_batch(n=1)
    x, t = torch.randn(1, 4, 16, 12), torch.tensor(301)
    with torch.no_grad():
        base = model.denoise(x, t, model.prepare(batch))
        inputs = model.prepare(batch)
        inputs.extra["garment_latent"] = inputs.extra["garment_latent"] + 1.0   # the UNet's own inputs unchanged
        moved = model.denoise(x, t, inputs)
        saved = [c.weight.clone() for c in model.denoiser.warp_zero_convs]
        for c in model.denoiser.warp_zero_convs:
            c.weight.zero_(), c.bias.zero_()
        inputs_unwarped = model.denoise(x, t, inputs)
        plain = model.denoise(x, t, model.prepare(batch))
    randomize_(model)   # restore random weights for other tests
    assert not torch.allclose(base, moved)
    assert torch.equal(inputs_unwarped, plain)   # with zero warp convs the garment path has no effect
    assert saved


def test_custom_decoder_layer_names_and_training_forward(models):
    model = models["custom-tiny"]
    assert model.decoder_layer_name(2) == "up_blocks.1.attentions.1.transformer_blocks.0.attn2"
    assert model.expected_query_grids()[model.decoder_layer_name(2)] == (4, 3)
    assert model.token_grid == (8, 6) and {s.ref_grid for s in model.attribution_layers()} == {(8, 6)}
    inputs = model.prepare(toy_batch())
    eps = model.training_eps(torch.randn(2, 4, 16, 12), torch.tensor([10, 900]), inputs)
    eps_u = model.training_eps(torch.randn(2, 4, 16, 12), torch.tensor([10, 900]), inputs, unconditional=True)
    eps.mean().backward()
    assert model.projector.proj_out.weight.grad is not None and model.dinov2.embeddings.cls_token.grad is None
    assert eps.shape == eps_u.shape == (2, 4, 16, 12)


def test_split_unet_passes_equal_diffusers_forward(models):
    unet = models["pbe-tiny"].unet
    x, ctx = torch.randn(2, 9, 16, 12), torch.randn(2, 1, 32)
    with torch.no_grad():
        emb = unet_passes.time_embedding(unet, torch.tensor(500), 2, x.dtype)
        h, skips = unet_passes.encode(unet, x, emb, ctx)
        torch.testing.assert_close(unet_passes.decode(unet, h, skips, emb, ctx),
                                   unet(x, 500, encoder_hidden_states=ctx).sample, atol=0, rtol=0)


def test_model_and_sampler_configs_instantiate():

    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    conf = REPO / "conf"
    for name in ("pbe", "dcivton", "stableviton", "custom"):
        cfg = OmegaConf.load(conf / "model" / f"{name}-tiny.yaml")
        assert cfg.name == f"{name}-tiny" and cfg._target_ == "i2am.adapters.create_model"
        assert OmegaConf.load(conf / "model" / f"{name}.yaml").name == name
    model = instantiate(OmegaConf.load(conf / "model" / "custom-tiny.yaml"))
    sampler = instantiate(OmegaConf.load(conf / "sampler" / "ddim.yaml"))
    assert model.name == "custom-tiny" and sampler.settings(model)["guidance"] == 5.0
    assert instantiate(OmegaConf.load(conf / "sampler" / "unipc.yaml")).settings(model)["num_steps"] == 20
