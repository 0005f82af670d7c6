"""model=diffusers kinds beyond the first three: the adapter's loop equals the diffusers pipeline's own on the same
inputs (per step), outputs are unchanged under the capture, and knockout removes IP-Adapter and reference-attention
tokens as defined in i2am.engine.knockout."""
from __future__ import annotations

import math

import pytest
import torch

from i2am.adapters import create_model
from i2am.engine import AttributionCapture, CaptureConfig
from i2am.engine.knockout import TokenKnockout, rank_keep_mask
from i2am.sampling.sampler import Sampler, sample_seed

SIZE = (64, 64)


def _batch(n=1, seed=0):
    gen = torch.Generator().manual_seed(seed)
    mask = torch.zeros(n, 1, *SIZE)
    mask[..., 16:48, 16:48] = 1
    return {"image": torch.rand(n, 3, *SIZE, generator=gen) * 2 - 1, "inpaint_mask": mask,
            "reference": torch.rand(n, 3, 48, 48, generator=gen) * 2 - 1, "sample_id": [f"s{i}" for i in range(n)]}


def _adapter(pipeline, **settings):
    return create_model("diffusers-tiny", pipeline=pipeline, image_size=SIZE, **settings)


def _i2am_steps(adapter, batch, sampler):
    steps = []
    out = adapter.sample(batch, sampler, callback=lambda info: steps.append(info["x_next"].clone()))
    return out["latents"], steps


def _pipeline_steps(adapter, inputs, batch, num_steps, guidance, **call):
    """The diffusers pipeline on the adapter's own conditioning and noise: per-step latents and the final ones."""
    pipe, steps = adapter.pipe, []
    kind = adapter.kind
    if kind.context == "sdxl":
        call.update(pooled_prompt_embeds=inputs.extra["text_embeds"],
                    negative_pooled_prompt_embeds=inputs.extra["text_embeds_uncond"], height=SIZE[0], width=SIZE[1])
    if "ip" in inputs.extra:
        call["ip_adapter_image_embeds"] = [torch.cat([inputs.extra["ip_uncond"], inputs.extra["ip"]])]
    gen = torch.Generator().manual_seed(sample_seed(0, batch["sample_id"][0]))
    if kind.start_code == "q_sample":   # img2img: the noise comes from the generator, the start from the latent
        call.update(image=adapter.encode_images(batch["image"]), generator=gen)
    else:
        call["latents"] = torch.randn(inputs.latent_shape, generator=gen)[None]
    if "height" not in call and kind.start_code != "q_sample" and kind.concat is None and not kind.control:
        call.update(height=SIZE[0], width=SIZE[1])

    def record(p, i, t, kwargs):
        steps.append(kwargs["latents"].clone())
        return kwargs

    latents = pipe(prompt_embeds=inputs.context, negative_prompt_embeds=inputs.uncond_context,
                   num_inference_steps=num_steps, guidance_scale=guidance, output_type="latent",
                   callback_on_step_end=record, **call).images
    return latents, steps


@pytest.mark.parametrize("pipeline,settings", [
    ("StableDiffusionInstructPix2PixPipeline", {"ip_adapter": {"kind": None}}),
    ("StableDiffusionImg2ImgPipeline", {"strength": 0.5}),
    ("StableDiffusionXLPipeline", {}),
    ("StableDiffusionControlNetPipeline", {"ip_adapter": {"kind": None}})])
@pytest.mark.numeric
def test_the_adapter_loop_equals_the_diffusers_pipeline_step_by_step(pipeline, settings):
    adapter = _adapter(pipeline, **settings)
    batch, steps, guidance = _batch(), 2, 5.0
    mine, my_steps = _i2am_steps(adapter, batch, Sampler(num_steps=steps, guidance=guidance))
    inputs = adapter.prepare(batch)
    call = {}
    if adapter.kind.name == "pix2pix":
        call.update(image=batch["image"], image_guidance_scale=adapter.image_guidance)
    if adapter.kind.control:
        call.update(image=inputs.extra["control"])
    if adapter.kind.start_code == "q_sample":
        call["strength"] = settings["strength"]
    total = math.ceil(steps / settings.get("strength", 1.0))
    theirs, their_steps = _pipeline_steps(adapter, inputs, batch, total, guidance, **call)
    assert len(my_steps) == len(their_steps) == steps
    for i, (a, b) in enumerate(zip(my_steps, their_steps)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=f"step {i}")
    torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-5)


def test_pix2pix_guidance_uses_three_chunks_and_both_scales():
    adapter = _adapter("StableDiffusionInstructPix2PixPipeline", ip_adapter={"kind": None})
    inputs = adapter.prepare(_batch())
    x, t = torch.randn(1, *inputs.latent_shape, generator=torch.Generator().manual_seed(1)), torch.tensor(500)
    rows = []
    handle = adapter.unet.register_forward_pre_hook(lambda m, args: rows.append(args[0].shape[0]))
    eps = {g: adapter.denoise(x, t, inputs, guidance=g) for g in (5.0, 1.0)}
    adapter.image_guidance = 3.0
    eps_image = adapter.denoise(x, t, inputs, guidance=5.0)
    handle.remove()
    assert rows == [3, 1, 3]
    assert not torch.allclose(eps[5.0], eps[1.0]) and not torch.allclose(eps[5.0], eps_image)


@pytest.mark.parametrize("pipeline,settings", [
    ("StableDiffusionImg2ImgPipeline", {}), ("StableDiffusionXLPipeline", {}),
    ("StableDiffusionControlNetPipeline", {}), ("StableDiffusionInstructPix2PixPipeline", {}),
    ("StableDiffusionPipeline", {"reference_attention": True})])
def test_outputs_are_bit_identical_under_the_capture(pipeline, settings):
    adapter = _adapter(pipeline, **settings)
    batch, sampler = _batch(2), Sampler(num_steps=2)
    plain = adapter.sample(batch, sampler)["latents"]
    with AttributionCapture(adapter, CaptureConfig(num_steps=2, time_groups=1)) as cap:
        traced = adapter.sample(batch, sampler)["latents"]
    assert torch.equal(plain, traced)
    maps = cap.maps()
    groups = {layer["group"] for layer in maps.meta["layers"]}
    assert maps.r2g.ulam.shape == (2, 8, 8) and maps.g2r.available
    if adapter.kind.control:
        text = create_model("diffusers-tiny", pipeline=pipeline, image_size=SIZE, relation="text")
        assert {s.group for s in text.attribution_layers()} == {"controlnet", "unet"}
    assert groups == {"unet"}


def test_pix2pix_maps_come_from_the_text_and_image_chunk():
    """The capture's rows are chunk 0 of 3 ([text + image, image, unconditional]): the maps change when only that
    chunk's context changes, and not when only the unconditional context does."""
    adapter = _adapter("StableDiffusionInstructPix2PixPipeline", ip_adapter={"kind": None}, relation="text")
    inputs = adapter.prepare(_batch())
    x, t = torch.randn(1, *inputs.latent_shape, generator=torch.Generator().manual_seed(1)), torch.tensor(500)

    def r2g(inp):
        with AttributionCapture(adapter, CaptureConfig(num_steps=1, time_groups=1)) as cap:
            adapter.denoise(x, t, inp, guidance=5.0)
        return cap.maps().r2g.ulam

    import dataclasses
    base = r2g(inputs)
    other_uncond = dataclasses.replace(inputs, uncond_context=torch.randn_like(inputs.uncond_context))
    other_cond = dataclasses.replace(inputs, context=torch.randn_like(inputs.context))
    torch.testing.assert_close(r2g(other_uncond), base, rtol=1e-6, atol=0)
    assert not torch.allclose(r2g(other_cond), base)


def _one_call(adapter, inputs, guidance=1.0):
    x = torch.randn(1, *inputs.latent_shape, generator=torch.Generator().manual_seed(2))
    return adapter.denoise(x, torch.tensor(400), inputs, guidance=guidance)


def test_ip_adapter_knockout_none_all_and_some_tokens():
    adapter = _adapter("StableDiffusionPipeline")
    inputs = adapter.prepare(_batch())
    plain = _one_call(adapter, inputs)
    scores = torch.tensor([[[0.1, 0.9, 0.3, 0.5]]])
    with TokenKnockout(adapter) as knockout:
        knockout.delete(scores, 0.0)
        assert torch.equal(_one_call(adapter, inputs), plain)          # nothing removed: the processor's own call
        knockout.delete(scores, 1.0)
        all_removed = _one_call(adapter, inputs)
        knockout.delete(scores, 0.5)                                   # tokens 1 and 3 go
        some_removed = _one_call(adapter, inputs)
    adapter.pipe.set_ip_adapter_scale(0.0)
    torch.testing.assert_close(all_removed, _one_call(adapter, inputs), rtol=1e-5, atol=1e-6)   # = IP scale 0
    adapter.pipe.set_ip_adapter_scale(1.0)
    # reference: the processor itself run on the kept image tokens only
    kept = torch.tensor([0, 2])
    procs = {name: proc for name, proc in adapter.unet.attn_processors.items() if hasattr(proc, "to_k_ip")}

    class Kept:
        def __init__(self, inner):
            self.inner = inner

        def __call__(self, attn, hidden_states, encoder_hidden_states=None, *args, **kwargs):
            text, ip = encoder_hidden_states
            ip = [tokens.reshape(tokens.shape[0], -1, tokens.shape[-1])[:, kept] for tokens in ip]
            return self.inner(attn, hidden_states, (text, ip), *args, **kwargs)

    adapter.unet.set_attn_processor({n: Kept(p) if n in procs else p for n, p in adapter.unet.attn_processors.items()})
    expected = _one_call(adapter, inputs)
    adapter.unet.set_attn_processor({n: procs.get(n, p) for n, p in adapter.unet.attn_processors.items()})
    torch.testing.assert_close(some_removed, expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(some_removed, plain)


def test_ip_adapter_knockout_refuses_the_replace_removal():
    adapter = _adapter("StableDiffusionPipeline")
    inputs = adapter.prepare(_batch())
    with TokenKnockout(adapter, mode="replace", replacement=inputs.uncond_context) as knockout, \
            pytest.raises(NotImplementedError, match="IP-Adapter image tokens have no such replacement"):
        knockout.delete(torch.rand(1, 1, 4), 0.5)
        _one_call(adapter, inputs)


def test_reference_attention_knockout_none_all_and_some_tokens():
    adapter = _adapter("StableDiffusionPipeline", reference_attention=True)
    inputs = adapter.prepare(_batch())
    plain = _one_call(adapter, inputs, guidance=5.0)
    scores = torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(3))
    with TokenKnockout(adapter) as knockout:
        knockout.delete(scores, 0.0)
        assert torch.equal(_one_call(adapter, inputs, guidance=5.0), plain)
        knockout.delete(scores, 1.0)
        all_removed = _one_call(adapter, inputs)
        knockout.delete(scores, 0.25)
        some_removed = _one_call(adapter, inputs)
    torch.testing.assert_close(all_removed, _one_call(adapter, adapter.null_inputs(inputs)), rtol=1e-5, atol=1e-6)
    # reference: the bank holding only the kept tokens of each layer (reference grid = the layer's query grid)
    x = torch.randn(1, *inputs.latent_shape, generator=torch.Generator().manual_seed(2))
    adapter.reference.write(inputs.extra["reference_latent"], inputs.context)
    grids = adapter.expected_query_grids(inputs.latent_shape[1:])
    for spec in adapter.attribution_layers():
        name = spec.name.split("/", 1)[1]
        keep = rank_keep_mask(scores, grids[spec.name], 0.25, keep_top=False)[0]
        adapter.reference.bank[name] = adapter.reference.bank[name][:, keep]
    expected = adapter.unet(x, torch.tensor(400), encoder_hidden_states=inputs.context).sample
    torch.testing.assert_close(some_removed, expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(some_removed, _one_call(adapter, inputs))


def test_sampler_strength_needs_the_q_sample_start_and_a_diffusers_scheduler():
    adapter = _adapter("StableDiffusionImg2ImgPipeline", ip_adapter={"kind": None})
    assert Sampler().settings(adapter)["strength"] == 0.75 and adapter.sampler_defaults["start_code"] == "q_sample"
    inputs = adapter.prepare(_batch())
    with pytest.raises(ValueError, match="needs start_code='q_sample'"):
        Sampler(num_steps=1, start_code="noise")(adapter, inputs)
    with pytest.raises(ValueError, match="plms runs the whole schedule"):
        Sampler(num_steps=50, scheduler="plms")(adapter, inputs)
    with pytest.raises(ValueError, match=r"strength=0.0: choose a value in \(0, 1\]"):
        Sampler(strength=0.0)


def test_the_null_reference_removes_the_attributed_relation_only():
    adapter = _adapter("StableDiffusionImg2ImgPipeline")
    inputs = adapter.prepare(_batch())
    null = adapter.null_inputs(inputs)
    assert torch.equal(null.extra["ip"], inputs.extra["ip_uncond"]) and torch.equal(null.context, inputs.context)
    text = _adapter("StableDiffusionImg2ImgPipeline", relation="text")
    inputs = text.prepare(_batch())
    null = text.null_inputs(inputs)
    assert torch.equal(null.context, inputs.uncond_context) and torch.equal(null.extra["ip"], inputs.extra["ip"])
