"""i2am.trace on diffusion-transformer pipelines (FLUX.1 Kontext and its inpainting variant, FLUX.2 with two references,
Qwen-Image-Edit with true CFG, Qwen-Image-Edit Plus with two references and true CFG, LongCat-Image-Edit and
JoyImage-Edit with CFG, SD3 with CFG) against a naive float64 reference built from each block's own projections, norms,
rotary."""
from __future__ import annotations

import sys
from contextlib import nullcontext

import pytest
import torch
from helpers.flux_inputs import kontext_inputs
from helpers.joyimage import joyimage_prompt, seeded, tiny_joyimage_edit
from helpers.longcat import longcat_area, longcat_prompt, tiny_longcat_edit
from helpers.naive_joint import Recorder, naive_accumulators, naive_families

import i2am
from i2am import toy
from i2am.engine import CaptureConfig
from i2am.engine.joint import JointAttentionCapture, find_blocks, word_maps

RTOL, ATOL = 1e-5, 1e-7
STEPS = 2


def _call(pipe, case, generator_seed=0, **extra):
    kwargs = {**case["kwargs"](pipe), **extra}
    with case.get("context", nullcontext)():
        generator = torch.Generator().manual_seed(generator_seed)
        return pipe(num_inference_steps=STEPS, output_type="pt", generator=generator, **kwargs).images


# Sizes in pixels; the tiny VAEs have factor 8 and the transformers read 2 x 2 latent patches: 16 pixels per token.
def _kontext_kwargs(pipe):
    return dict(image=toy.image(96, 64), **toy.prompt(pipe), height=64, width=64, _auto_resize=False,
                max_area=64 * 64)


def _kontext_cfg_kwargs(pipe):
    return {**_kontext_kwargs(pipe), **toy.prompt(pipe, negative=True), "true_cfg_scale": 2.0}


def _flux2_kwargs(pipe):
    return dict(image=[toy.image(64, 64), toy.image(96, 64, seed=3)], **toy.prompt(pipe), height=64, width=64)


def _klein_kwargs(pipe):
    return {"image": [toy.image(64, 96, seed=3)], **toy.prompt(pipe, negative=True), "guidance_scale": 2.0,
            "height": 64, "width": 64}


def _qwen_kwargs(pipe):
    return dict(image=toy.image(96, 64), **toy.prompt(pipe, negative=True), true_cfg_scale=2.0, height=64, width=64)


def _kontext_inpaint_kwargs(pipe):
    return dict(image=toy.image(64, 64), mask_image=toy.mask(64, 64), image_reference=toy.image(96, 64, seed=3),
                **toy.prompt(pipe), height=64, width=64, _auto_resize=False, max_area=64 * 64)


def _qwen_plus_kwargs(pipe):
    return {**_qwen_kwargs(pipe), "image": [toy.image(64, 64), toy.image(96, 64, seed=3)]}


def _longcat_kwargs(pipe):
    return dict(image=toy.image(96, 64), **longcat_prompt(), guidance_scale=2.0)   # its CFG: two calls per step


def _joyimage_kwargs(pipe):
    return dict(image=toy.image(96, 64), **joyimage_prompt(), guidance_scale=2.0, height=64, width=64)


def _sd3_kwargs(pipe):
    return dict(**toy.prompt(pipe, negative=True), guidance_scale=2.0, height=64, width=64)


def _maker(name):
    return lambda: toy.pipeline(name)


def _flux_transformer():
    return toy.pipeline("FluxKontextPipeline").transformer


EVEN = lambda i: i % 2 == 0   # true CFG: the positive prompt runs first in each step
CASES = {
    "kontext": dict(make=_maker("FluxKontextPipeline"), kwargs=_kontext_kwargs, refs=1),
    "kontext_true_cfg": dict(make=_maker("FluxKontextPipeline"), kwargs=_kontext_cfg_kwargs, refs=1, keep=EVEN),
    "flux2_two_references": dict(make=_maker("Flux2Pipeline"), kwargs=_flux2_kwargs, refs=2),
    "flux2_klein_true_cfg": dict(make=_maker("Flux2KleinPipeline"), kwargs=_klein_kwargs, refs=1, keep=EVEN),
    "qwen_edit_true_cfg": dict(make=_maker("QwenImageEditPipeline"), kwargs=_qwen_kwargs, refs=1, keep=EVEN,
                               context=lambda: toy.qwen_reference_area(64 * 64)),
    "kontext_inpaint": dict(make=_maker("FluxKontextInpaintPipeline"), kwargs=_kontext_inpaint_kwargs, refs=1),
    "qwen_edit_plus_two_references_true_cfg": dict(make=_maker("QwenImageEditPlusPipeline"), kwargs=_qwen_plus_kwargs,
                                                   refs=2, keep=EVEN, context=lambda: toy.qwen_reference_area(64 * 64)),
    "longcat_edit_cfg": dict(make=tiny_longcat_edit, kwargs=_longcat_kwargs, refs=1, keep=EVEN,
                             context=lambda: longcat_area(64 * 64)),
    "joyimage_edit_cfg": dict(make=tiny_joyimage_edit, kwargs=_joyimage_kwargs, refs=1, keep=EVEN, context=seeded),
    "sd3_cfg": dict(make=_maker("StableDiffusion3Pipeline"), kwargs=_sd3_kwargs, refs=0,
                    rows=slice(1, 2)),   # [negative, positive] stacked
}


def _processor_modules(blocks) -> dict:
    return {type(b.module.processor).__module__: sys.modules[type(b.module.processor).__module__] for b in blocks}


@pytest.mark.parametrize("name", list(CASES))
def test_trace_matches_naive_reference_and_keeps_outputs(name):
    case = CASES[name]
    pipe = case["make"]()
    plain = _call(pipe, case)
    blocks = find_blocks(pipe.transformer)
    text_block = blocks[0].name
    capture = CaptureConfig(time_groups=2, sram_layers=[text_block])
    processors = {b.name: b.module.processor for b in blocks}
    backends = {name: vars(module).get("dispatch_attention_fn") for name, module in _processor_modules(blocks).items()}
    with Recorder(pipe.transformer, blocks, case.get("keep", lambda i: True)) as rec, i2am.trace(pipe, capture) as tr:
        traced = _call(pipe, case)
    assert torch.equal(plain, traced)                                       # outputs unchanged
    assert {b.name: b.module.processor for b in blocks} == processors       # restored
    assert {name: vars(module).get("dispatch_attention_fn") for name, module in
            _processor_modules(blocks).items()} == backends
    maps = tr.maps
    assert maps.meta["steps_seen"] == STEPS == len(rec.calls)
    seg_meta = maps.meta["segments"]
    assert sum(s["kind"] == "reference" for s in seg_meta) == case["refs"]
    from i2am.engine.packing import JointLayout, Segment
    layout = JointLayout(tuple(Segment(s["kind"], s["start"], s["length"], tuple(s["grid"]),
                                       index=int(s["relation"].rsplit(".", 1)[-1]) if "." in s["relation"] else 0)
                               for s in seg_meta))
    naive = naive_accumulators(rec, blocks, layout, rows=case.get("rows", slice(None)), time_groups=2,
                               sram=[text_block])
    assert set(naive) == set(maps.raw)
    for key, expected in naive.items():
        torch.testing.assert_close(maps.raw[key].double(), expected, rtol=RTOL, atol=ATOL, msg=key)
    groups = {b.group for b in blocks}
    for relation in maps.relations:
        sub = maps.relation(relation)
        names = [m["name"] for m in sub.meta["layers"]]
        assert len(names) == len(blocks)
        for direction in ("r2g", "g2r"):
            expected = naive_families(naive, names, direction)
            got = getattr(sub, direction)
            for family, value in expected.items():
                torch.testing.assert_close(getattr(got, family).double(), value.clamp(min=0), rtol=RTOL, atol=ATOL)
        for group in groups:   # double- and single-stream blocks as layer groups
            assert maps.relation(relation, group=group).r2g.ulam is not None
    gen = layout.generated
    for seg in layout.keys:   # R2G on the generated grid, G2R on each conditioning's own grid
        assert maps.relation(seg.relation).r2g.ulam.shape[-2:] == gen.grid
        assert maps.relation(seg.relation).g2r.ulam.shape[-2:] == seg.grid
    words = word_maps(maps, f"text/{text_block}")
    text = next(seg for seg in layout.keys if seg.kind == "text")   # first (FLUX, Qwen) or last (SD3, JoyImage)
    assert words.shape == (1, text.length, *gen.grid)
    torch.testing.assert_close(words.sum(1).double(), torch.full_like(words.sum(1), STEPS).double(), rtol=RTOL,
                               atol=ATOL)   # per generated position, the text-token shares sum to 1 per step


def test_two_references_of_different_sizes_keep_their_grids():
    pipe = toy.pipeline("Flux2Pipeline")
    with i2am.trace(pipe) as tr:
        _call(pipe, CASES["flux2_two_references"])
    maps = tr.maps
    assert maps.relation("image:reference").g2r.ulam.shape[-2:] == (4, 4)      # 64 x 64 pixels
    assert maps.relation("image:reference.1").g2r.ulam.shape[-2:] == (6, 4)    # 96 x 64 pixels
    # the share normalisation: a generated token's full attention sums to 1 over every segment and itself
    total = sum(maps.relation(f"share:{r}").r2g.ulam for r in ("text", "image:reference", "image:reference.1"))
    assert (total > 0).all() and (total < STEPS).all()


def _backend_functions():
    from diffusers.models import attention_processor
    from diffusers.models.transformers import transformer_flux
    return transformer_flux.dispatch_attention_fn, attention_processor.F


def test_restoration_after_exception():
    pipe = toy.pipeline("FluxKontextPipeline")
    processors = {b.name: b.module.processor for b in find_blocks(pipe.transformer)}
    before = _backend_functions()

    def fail(*args, **kwargs):
        raise KeyboardInterrupt("stop")

    with pytest.raises(KeyboardInterrupt), i2am.trace(pipe):
        _call(pipe, CASES["kontext"], callback_on_step_end=fail)
    assert {b.name: b.module.processor for b in find_blocks(pipe.transformer)} == processors
    assert _backend_functions() == before
    assert "prepare_latents" not in vars(pipe)


@pytest.mark.numeric
def test_batch_invariance_and_chunking():
    transformer = _flux_transformer()
    inputs = kontext_inputs(transformer, 3)
    big = JointAttentionCapture(transformer, CaptureConfig(num_steps=1, time_groups=1))
    with big, torch.no_grad():
        transformer(**inputs)
    batched = big.maps()
    small = JointAttentionCapture(transformer, CaptureConfig(num_steps=1, time_groups=1, chunk_budget=64,
                                                                     one_pass_budget=64))
    for i in range(3):
        single = {k: (v[i:i + 1] if torch.is_tensor(v) and v.dim() and v.shape[0] == 3 else v)
                  for k, v in inputs.items()}
        small.reset()
        with small, torch.no_grad():
            transformer(**single)
        for key, value in small.maps().raw.items():
            torch.testing.assert_close(batched.raw[key][i:i + 1], value, rtol=RTOL, atol=ATOL)


def test_memory_flat_in_steps():
    transformer = _flux_transformer()
    sizes = []
    capture = JointAttentionCapture(transformer, CaptureConfig(num_steps=6, time_groups=2))
    with capture, torch.no_grad():
        for step in range(6):
            transformer(**{**kontext_inputs(transformer, 1), "timestep": torch.full((1,), 1.0 - step / 6)})
            sizes.append(capture.accumulator_bytes())
    assert capture.steps_seen == 6
    assert len(set(sizes)) == 1 and sizes[0] > 0


def test_region_mask_weights_generated_positions():
    transformer = _flux_transformer()
    inputs = kontext_inputs(transformer, 1)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :] = 1
    capture = JointAttentionCapture(transformer, CaptureConfig(num_steps=1, time_groups=1, sram_layers=[
        "transformer_blocks.0.attn"]), normalisations=("i2am",))
    capture.set_region_mask(mask)
    with capture, torch.no_grad():
        transformer(**inputs)
    maps = capture.maps()
    name = "image:reference/transformer_blocks.0.attn"
    sram = maps.raw[f"sram/{name}"]                                     # [1, 16, 15], heads averaged
    g2r_heads_mean = maps.raw[f"g2r/{name}"].mean(2).flatten(1)         # [1, 15]
    torch.testing.assert_close(g2r_heads_mean, sram[:, :8].sum(1) / 16, rtol=RTOL, atol=ATOL)


def test_unsupported_transformer_and_processor_are_named():
    with pytest.raises(ValueError, match="Linear is not a supported diffusion transformer"):
        find_blocks(torch.nn.Linear(2, 2))
    from diffusers.models.transformers.transformer_flux import FluxAttnProcessor

    class MyProcessor(FluxAttnProcessor):
        pass

    pipe = toy.pipeline("FluxKontextPipeline")
    pipe.transformer.single_transformer_blocks[0].attn.set_processor(MyProcessor())
    with pytest.raises(ValueError, match=r"single_transformer_blocks\.0\.attn runs processor MyProcessor"):
        i2am.trace(pipe)


@pytest.mark.parametrize("backend", [None, "_native_math"])
def test_dispatch_backend_left_in_place(backend, monkeypatch):
    """A backend chosen on the processors still runs: the pass-through calls the module's own dispatch function,
    except for diffusers' native backend, whose SDPA call it makes itself to read the kernel's log-sum-exp."""
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    # set_attention_backend also makes the backend diffusers' process-wide default: put that back afterwards
    monkeypatch.setattr(_AttentionBackendRegistry, "_active_backend", _AttentionBackendRegistry._active_backend)
    transformer = _flux_transformer()
    if backend is not None:
        transformer.set_attention_backend(backend)
    from diffusers.models.transformers import transformer_flux
    seen = []
    original = transformer_flux.dispatch_attention_fn

    def spy(*args, **kwargs):
        seen.append(kwargs.get("backend"))
        return original(*args, **kwargs)

    transformer_flux.dispatch_attention_fn = spy
    try:
        capture = JointAttentionCapture(transformer, CaptureConfig(num_steps=1, time_groups=1))
        with capture, torch.no_grad():
            transformer(**kontext_inputs(transformer, 1))
    finally:
        transformer_flux.dispatch_attention_fn = original
    if backend is None:
        assert seen == [] and capture.stats_path == "kernel-lse"
    else:   # one double- and one single-stream block, each through the original dispatch
        assert [str(getattr(b, "value", b)) for b in seen] == [backend] * 2 and capture.stats_path == "recomputed"
    assert sys.modules["diffusers.models.transformers.transformer_flux"].dispatch_attention_fn is original


def test_qwen_text_padding_is_left_out_of_every_softmax():
    """prompt_embeds_mask with padding: the processor masks those keys; so does the capture (and the naive
    reference)."""
    pipe = toy.pipeline("QwenImageEditPipeline")
    pe = toy.prompt(pipe, tokens=5)["prompt_embeds"]
    mask = torch.tensor([[1, 1, 1, 0, 0]])
    kwargs = {"image": toy.image(96, 64), "prompt_embeds": pe, "prompt_embeds_mask": mask, "height": 64, "width": 64}
    blocks = find_blocks(pipe.transformer)
    with toy.qwen_reference_area(64 * 64), Recorder(pipe.transformer, blocks) as rec, i2am.trace(pipe) as tr:
        pipe(num_inference_steps=1, output_type="pt", generator=torch.Generator().manual_seed(0), **kwargs)
    maps = tr.maps
    from i2am.engine.packing import JointLayout, Segment
    layout = JointLayout(tuple(Segment(s["kind"], s["start"], s["length"], tuple(s["grid"]))
                               for s in maps.meta["segments"]))
    valid = torch.ones(layout.length, dtype=torch.bool)
    valid[3:5] = False
    naive = naive_accumulators(rec, blocks, layout, time_groups=1, key_valid=valid)
    assert set(naive) == set(maps.raw)
    for key, expected in naive.items():
        torch.testing.assert_close(maps.raw[key].double(), expected, rtol=RTOL, atol=ATOL, msg=key)
    assert (maps.relation("text").g2r.ulam[..., 3:] == 0).all()
