"""i2am.trace on tiny diffusers pipelines built from config: every family of every relation equals the naive float64
reference, outputs are bit-identical, processors are restored, the CFG chunk follows each pipeline and call."""
from __future__ import annotations

import copy
from typing import ClassVar

import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0, FusedAttnProcessor2_0
from helpers.naive_streams import expected_families, record

import i2am
from i2am import toy
from i2am.adapters.diffusers.reference_attention import ReferenceAttention
from i2am.engine import AttributionCapture, AttributionMaps, CaptureConfig
from i2am.sampling.sampler import make_scheduler
from i2am.tracing import overlay_maps

FAMILIES = ("ulam", "tlam", "hlam", "llam")


SIZE = 64                 # images; the tiny VAE has factor 8
GRID = SIZE // 8          # the latent grid
FINE = "up_blocks.3.attentions.0.transformer_blocks.0"   # a decoder block on the latent grid


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _images(batch: int, seed: int):
    return [toy.image(SIZE, SIZE, seed=seed + i) for i in range(batch)]


def _square_mask(size: int) -> torch.Tensor:
    mask = torch.zeros(1, 1, size, size)
    mask[..., size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 1
    return mask


def build(kind: str, batch: int = 1, seed: int = 0, guidance: float = 5.0):
    """(pipe, call kwargs, conditional chunk, chunk count, relations, steps) of one pipeline kind (``i2am.toy``).

    diffusers repeats one IP-Adapter image over the batch (one image per adapter), so a batch varies the prompts
    (and, for reference attention, the references)."""
    chunks, chunk, steps = (2, 1, 3) if guidance > 1 else (1, 0, 3)
    relations = ["text", "image:ip_adapter"]
    ip_image = toy.image(SIZE, SIZE, seed=20 + seed)
    if kind in ("sd_ip", "sd_ip_plus"):
        pipe = toy.pipeline("StableDiffusionPipeline", ip_adapter="plus" if kind == "sd_ip_plus" else "plain")
        extra = dict(ip_adapter_image=ip_image)
    elif kind == "img2img_ip":
        pipe = toy.pipeline("StableDiffusionImg2ImgPipeline", ip_adapter=True)
        extra = dict(image=_images(batch, 30 + seed), strength=0.6, ip_adapter_image=ip_image)
    elif kind == "inpaint_ip":
        pipe = toy.pipeline("StableDiffusionInpaintPipeline", ip_adapter=True)
        extra = dict(image=_images(batch, 30 + seed), mask_image=toy.mask(SIZE, SIZE), ip_adapter_image=ip_image)
    elif kind == "sdxl_ip":
        pipe = toy.pipeline("StableDiffusionXLPipeline", ip_adapter=True)
        extra = dict(ip_adapter_image=ip_image)
    elif kind == "controlnet":
        pipe = toy.pipeline("StableDiffusionControlNetPipeline")
        extra = dict(image=_images(batch, 30 + seed))
        relations = ["text"]
    elif kind == "reference":
        pipe = toy.pipeline("StableDiffusionPipeline")
        extra = {}
        relations = ["image:reference", "text"]
    elif kind == "pix2pix":
        pipe = toy.pipeline("StableDiffusionInstructPix2PixPipeline")
        extra = dict(image=_images(batch, 30 + seed), image_guidance_scale=1.5)
        chunks, chunk = (3, 0) if guidance > 1 else (1, 0)
        relations = ["text"]
    else:
        raise KeyError(kind)
    text = toy.prompt(pipe, batch, seed=10 + seed, negative=True)
    if kind == "reference":
        ref = ReferenceAttention(pipe.unet, copy.deepcopy(pipe.unet))
        ref.write(torch.randn(batch, 4, GRID, GRID, generator=_gen(50 + seed)), text["prompt_embeds"])
    kw = dict(text, num_inference_steps=3, height=SIZE, width=SIZE, output_type="pt", generator=_gen(seed),
              guidance_scale=guidance, **extra)
    if kind == "img2img_ip":
        kw["num_inference_steps"] = 5
    return pipe, kw, chunk, chunks, relations, steps


KINDS = ["sd_ip", "sd_ip_plus", "img2img_ip", "inpaint_ip", "sdxl_ip", "controlnet", "reference", "pix2pix"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_family_of_every_relation_equals_the_naive_reference(kind):
    pipe, kw, chunk, chunks, relations, steps = build(kind)
    plain = pipe(**kw).images
    kw["generator"] = _gen(0)
    traced = {}
    with i2am.trace(pipe, CaptureConfig(time_groups=2)) as tr:
        stores = record(pipe, lambda: traced.update(images=pipe(**kw).images), chunk, chunks)
    assert torch.equal(plain, traced["images"])                  # outputs bit-identical under the trace
    maps = tr.maps
    assert maps.relations == relations
    assert maps.meta["steps_seen"] == maps.meta["num_steps"] == steps
    groups = [None, "unet", "controlnet"] if kind == "controlnet" else [None]
    for relation in relations:
        for group in groups:
            sub = maps.relation(relation, group=group)
            for direction in ("r2g", "g2r"):
                expected = expected_families(stores, maps, relation, direction, group)
                got = getattr(sub, direction)
                for fam in FAMILIES:
                    torch.testing.assert_close(getattr(got, fam).double(), expected[fam], rtol=1e-5, atol=1e-7,
                                               msg=f"{kind} {relation} {group} {direction} {fam}")


def test_token_counts_and_grids_per_relation():
    layer = f"image:ip_adapter/{FINE}.attn2"
    for kind, tokens in (("sd_ip", 4), ("sd_ip_plus", 16)):
        pipe, kw, *_ = build(kind)
        with i2am.trace(pipe, CaptureConfig(sram_layers=[layer])) as tr:
            pipe(**kw)
        layers = tr.maps.relation("image:ip_adapter").meta["layers"]
        assert {tuple(m["ref_grid"]) for m in layers} == {(1, tokens)}
        sram = tr.maps.sram(layer, points=[(0, 0), (GRID - 1, GRID - 1)])          # G2R over the image tokens per cell
        assert sram.shape == (1, 2, 1, tokens)
        torch.testing.assert_close(sram.sum(-1), torch.full((1, 2, 1), 3.0))   # a softmax per step, 3 steps
        assert {tuple(m["ref_grid"]) for m in tr.maps.relation("text").meta["layers"]} == {(1, toy.TEXT_TOKENS)}
    pipe, kw, *_ = build("reference")
    with i2am.trace(pipe) as tr:
        pipe(**kw)
    for m in tr.maps.relation("image:reference").meta["layers"]:
        assert m["ref_grid"] == m["query_grid"] and m["name"].endswith("attn1")


def test_controlnet_layers_form_their_own_group():
    pipe, kw, *_ = build("controlnet")
    with i2am.trace(pipe) as tr:
        pipe(**kw)
    groups = {m["group"] for m in tr.maps.meta["layers"]}
    assert groups == {"unet", "controlnet"}
    names = [m["name"] for m in tr.maps.relation("text", group="controlnet").meta["layers"]]
    assert names and all(n.startswith("text/controlnet.down_blocks") for n in names)


def test_the_conditional_chunk_is_the_one_the_pipeline_stacks():
    """InstructPix2Pix stacks [text+image, image only, unconditional]: the text relation must come from chunk 0;
    the naive maps of another chunk differ, so the check can fail. Without CFG there is one chunk."""
    pipe, kw, chunk, chunks, *_ = build("pix2pix")
    with i2am.trace(pipe) as tr:
        stores_right = record(pipe, lambda: pipe(**kw), chunk, chunks)
    assert tr.maps.meta["cfg_layout"] == "chunk 0 of 3"
    kw["generator"] = _gen(0)
    stores_wrong = record(pipe, lambda: pipe(**kw), 1, chunks)
    got = tr.maps.relation("text").g2r.ulam.double()
    torch.testing.assert_close(got, expected_families(stores_right, tr.maps, "text", "g2r")["ulam"], rtol=1e-5,
                               atol=1e-7)
    assert not torch.allclose(got, expected_families(stores_wrong, tr.maps, "text", "g2r")["ulam"], rtol=1e-3)
    pipe, kw, chunk, chunks, *_ = build("sd_ip", guidance=1.0)
    assert chunks == 1
    with i2am.trace(pipe) as tr:
        stores = record(pipe, lambda: pipe(**kw), chunk, chunks)
    torch.testing.assert_close(tr.maps.relation("text").r2g.ulam.double(),
                               expected_families(stores, tr.maps, "text", "r2g")["ulam"], rtol=1e-5, atol=1e-7)


def _processors(pipe):
    return {name: proc for name, proc in pipe.unet.attn_processors.items()}


def _hook_count(pipe):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in pipe.unet.modules())


@pytest.mark.parametrize("kind", ["sd_ip", "reference"])
def test_outputs_are_bit_identical_and_everything_is_restored(kind):
    pipe, kw, *_ = build(kind)
    before, hooks = _processors(pipe), _hook_count(pipe)
    plain = pipe(**kw).images
    kw["generator"] = _gen(0)
    with i2am.trace(pipe) as tr:
        traced = pipe(**kw).images
        inner = _processors(pipe)
    assert torch.equal(plain, traced)
    assert any(inner[n] is not before[n] for n in before)                     # the capture was installed
    assert _processors(pipe) == before and _hook_count(pipe) == hooks
    assert "prepare_latents" not in vars(pipe)
    assert tr.maps.meta["steps_seen"] == 3


def test_restored_after_an_exception_inside_the_call():
    pipe, kw, *_ = build("sd_ip")
    before, hooks = _processors(pipe), _hook_count(pipe)

    def fail(*args, **kwargs):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"), i2am.trace(pipe):
        pipe(**kw, callback_on_step_end=fail)
    assert _processors(pipe) == before and _hook_count(pipe) == hooks
    assert "prepare_latents" not in vars(pipe)


def test_self_attention_keeps_its_fused_processor():
    pipe, kw, *_ = build("sd_ip")
    attn1 = pipe.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1
    with i2am.trace(pipe):
        pipe(**kw)
        assert type(attn1.processor) is AttnProcessor2_0


def test_cross_attention_kwargs_still_reach_the_processor():
    """IP-Adapter masks travel in cross_attention_kwargs, which diffusers filters by the processor's signature."""
    pipe, kw, *_ = build("sd_ip")
    masks = [torch.zeros(1, 1, 32, 32)]
    masks[0][..., :16] = 1
    kw["cross_attention_kwargs"] = {"ip_adapter_masks": masks}
    plain = pipe(**kw).images
    kw["generator"] = _gen(0)
    with i2am.trace(pipe):
        traced = pipe(**kw).images
    assert torch.equal(plain, traced)


def _map_bytes(maps):
    return sum(v.numel() * v.element_size() for v in maps.raw.values())


def test_memory_is_flat_in_steps():
    sizes = []
    for steps in (2, 6):
        pipe, kw, *_ = build("sd_ip")
        kw["num_inference_steps"] = steps
        with i2am.trace(pipe, CaptureConfig(time_groups=2)) as tr:
            pipe(**kw)
        assert tr.maps.meta["steps_seen"] == steps
        sizes.append(_map_bytes(tr.maps))
    assert sizes[0] == sizes[1]


@pytest.mark.numeric
@pytest.mark.parametrize("kind", ["sd_ip", "reference"])
def test_a_batch_of_two_equals_two_batches_of_one(kind):
    pipe, kw, *_ = build(kind, batch=2)
    kw["generator"] = [_gen(0), _gen(1)]
    with i2am.trace(pipe) as tr:
        pipe(**kw)
    whole = tr.maps
    parts = []
    for i in range(2):
        pipe_i, kw_i, *_ = build(kind, batch=2)
        for key in ("prompt_embeds", "negative_prompt_embeds"):
            kw_i[key] = kw_i[key][i:i + 1]
        if kind == "reference":
            bank = {k: v[i:i + 1] for k, v in _bank(pipe_i).items()}
            _bank(pipe_i).update(bank)
        kw_i["generator"] = _gen(i)
        with i2am.trace(pipe_i) as tr_i:
            pipe_i(**kw_i)
        parts.append(tr_i.maps)
    joined = AttributionMaps.concat(parts)
    assert whole.raw.keys() == joined.raw.keys()
    for key in whole.raw:
        torch.testing.assert_close(whole.raw[key], joined.raw[key], rtol=1e-5, atol=1e-6, msg=key)


def _bank(pipe):
    proc = pipe.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.processor
    return proc.bank


def test_one_attribution_maps_per_call_with_save_load_sram_and_overlays(tmp_path):
    pipe, kw, *_ = build("reference")
    layer = f"image:reference/{FINE}.attn1"
    with i2am.trace(pipe, CaptureConfig(sram_layers=[layer])) as tr:
        first = pipe(**kw).images
        kw["generator"] = _gen(1)
        pipe(**kw)
    assert len(tr.calls) == 2 and not torch.equal(tr.calls[0].raw[f"r2g/{layer}"], tr.calls[1].raw[f"r2g/{layer}"])
    maps = tr.calls[0]
    sram = maps.sram(layer, points=[(3, 4)])
    assert sram.shape == (1, 1, GRID, GRID)
    loaded = AttributionMaps.load(maps.save(tmp_path / "maps.safetensors"))
    assert loaded.relations == maps.relations
    torch.testing.assert_close(loaded.relation("image:reference").g2r.ulam, maps.relation("image:reference").g2r.ulam)
    images = [(img.permute(1, 2, 0).numpy() * 255).round().astype("uint8") for img in first]
    over = overlay_maps(images, maps.relation("image:reference").r2g.ulam)
    assert over[0].shape == (SIZE, SIZE, 3) and over[0].dtype.name == "uint8"


def test_unsupported_processors_and_pipelines_raise_naming_the_module():
    pipe, *_ = build("sd_ip")
    attn = pipe.unet.up_blocks[1].attentions[0].transformer_blocks[0].attn1
    attn.set_processor(FusedAttnProcessor2_0())
    with pytest.raises(ValueError, match=r"unet\.up_blocks\.1\.attentions\.0\.transformer_blocks\.0\.attn1 runs "
                                         r"processor FusedAttnProcessor2_0"):
        i2am.trace(pipe)
    attn.set_processor(AttnProcessor())   # the classic processor computes its keys with to_k: supported
    assert "text" in i2am.trace(pipe).relations

    class Transformer:   # e.g. a DiT pipeline
        components: ClassVar[dict] = {"transformer": torch.nn.Linear(1, 1)}

    with pytest.raises(ValueError, match="Transformer has no UNet denoiser"):
        i2am.trace(Transformer())


def test_paint_by_example_pipeline_matches_the_pbe_adapter():
    """The diffusers PaintByExamplePipeline on the pbe-tiny adapter's weights: the trace's maps equal the adapter's
    own capture on the same UNet calls."""
    from diffusers import PaintByExamplePipeline
    from transformers import CLIPImageProcessor

    from i2am.adapters import create_model

    adapter = create_model("pbe-tiny")
    pipe = PaintByExamplePipeline(vae=adapter.vae, image_encoder=adapter.image_encoder, unet=adapter.unet,
                                  scheduler=make_scheduler("ddim"), safety_checker=None,
                                  feature_extractor=CLIPImageProcessor())
    pipe.set_progress_bar_config(disable=True)
    size = adapter.image_encoder.config.image_size
    calls = []
    handle = adapter.unet.register_forward_pre_hook(
        lambda m, args, kwargs: calls.append((args[0].clone(), args[1], kwargs["encoder_hidden_states"].clone())),
        with_kwargs=True)
    with i2am.trace(pipe) as tr:
        pipe(example_image=torch.rand(1, 3, size, size, generator=_gen(60)) * 2 - 1,
             image=torch.rand(1, 3, 64, 64, generator=_gen(61)), mask_image=_square_mask(64),
             num_inference_steps=3, generator=_gen(0), output_type="pt", height=64, width=64)
    handle.remove()
    assert tr.maps.relations == ["image:example"] and tr.maps.meta["steps_seen"] == 3
    with AttributionCapture(adapter, CaptureConfig(num_steps=3, time_groups=3)) as cap, torch.no_grad():
        for sample, t, context in calls:
            adapter.unet(sample, t, encoder_hidden_states=context)
    own = cap.maps()
    traced = tr.maps.relation("image:example")
    assert [k.replace("image:example/", "") for k in traced.raw] == list(own.raw)
    for key, value in own.raw.items():
        prefix, name = key.split("/", 1)
        torch.testing.assert_close(traced.raw[f"{prefix}/image:example/{name}"], value, rtol=1e-5, atol=0)
    for fam in FAMILIES:
        torch.testing.assert_close(getattr(traced.r2g, fam), getattr(own.r2g, fam), rtol=1e-5, atol=0)
    assert not traced.g2r.available and not own.g2r.available   # one CLIP token: G2R is degenerate in both


def test_per_token_r2g_of_the_ip_adapter_tokens_averages_to_the_relation():
    pipe, kw, *_ = build("sd_ip")
    with i2am.trace(pipe, per_token=True) as tr:
        pipe(**kw)
    maps = tr.maps
    assert maps.relations == ["text", "image:ip_adapter"] + [f"image:ip_adapter[{t}]" for t in range(4)]
    whole = maps.relation("image:ip_adapter")
    per_token = [maps.relation(f"image:ip_adapter[{t}]") for t in range(4)]
    for key, value in whole.raw.items():
        if not key.startswith("r2g/"):
            continue
        path = key.split("/", 2)[2]
        tokens = torch.stack([p.raw[f"r2g/image:ip_adapter[{t}]/{path}"] for t, p in enumerate(per_token)])
        torch.testing.assert_close(tokens.mean(0), value, rtol=1e-5, atol=1e-7)
    assert not per_token[0].g2r.available   # one token each: G2R is degenerate
