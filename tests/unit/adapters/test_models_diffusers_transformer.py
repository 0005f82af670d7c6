"""model=diffusers for diffusion-transformer editors (tiny FluxKontextPipeline, FluxKontextInpaintPipeline,
Flux2Pipeline, QwenImageEditPipeline, QwenImageEditPlusPipeline, LongCatImageEditPipeline, JoyImageEditPipeline): the
attribute loop with the toy world's evaluators, faithfulness and randomisation through the pipeline's own loop, and
joint-attention knockout.
StableDiffusion3Pipeline (image <-> text): tests/unit/adapters/test_models_diffusers_sd3.py."""
from __future__ import annotations

import json

import pytest
import torch
from helpers.knockout_checks import assert_knockout_identities, toy_batch
from helpers.tasks_util import run_task

import i2am
from i2am import toy
from i2am.adapters import create_model
from i2am.adapters.diffusers.dit._base import DiffusersTransformerAdapter
from i2am.adapters.diffusers.dit.tiny import build_transformer_pipeline
from i2am.engine import AttributionMaps, CaptureConfig
from i2am.engine.factory import capture_for
from i2am.engine.hooks import Hooks
from i2am.engine.joint_knockout import JointTokenKnockout
from i2am.sampling.sampler import Sampler

CHECKS = ["+evaluator@evaluators.faithfulness=faithfulness", "evaluators.faithfulness.samples=1",
          "evaluators.faithfulness.fractions=[0.0,0.5,1.0]", "evaluators.faithfulness.random_orders=1",
          "evaluators.faithfulness.modes=[full,proxy]", "evaluators.faithfulness.proxy_steps=[0.5]",
          "evaluators.faithfulness.n_bootstrap=100",
          "+evaluator@evaluators.randomization=randomization", "evaluators.randomization.samples=1",
          "evaluators.randomization.modes=[cascading]", "evaluators.randomization.max_stages=2"]


def test_i2am_attribute_runs_a_kontext_folder_with_every_evaluator(tmp_path):
    """model=diffusers model.pipeline=FluxKontextPipeline on the toy world: IMACS with the toy masks, SRAM
    localisation, faithfulness (full re-runs and the one-step x0 proxy, with joint knockout) and randomisation, all
    finite."""
    build_transformer_pipeline("FluxKontextPipeline", "tiny", seed=3).save_pretrained(tmp_path / "kontext")
    overrides = [f"paths.data_dir={tmp_path / 'data'}", f"run_dir={tmp_path / 'run'}", "model=diffusers",
                 "model.pipeline=FluxKontextPipeline", f"model.path={tmp_path / 'kontext'}", "model.guidance=null",
                 "model.image_size=[128,96]", "sampler.num_steps=2", "data.limit=2", "data.batch_size=2",
                 "data.toy.n_train=2", "data.toy.n_test=2", "trainer.enable_progress_bar=false", "evaluator_set=toy",
                 "capture.sram_layers=auto", *CHECKS]
    metrics = run_task("attribute", overrides)
    assert metrics["n_samples"] == 2
    for key in ("imacs_g", "imacs_r", "loc_err", "loc_err_bbox_baseline", "attn_entropy",
                "faith_full_latent_del_auc", "faith_full_pixel_all_removed", "faith_proxy_latent_del_auc",
                "faith_proxy_pixel_del_curve_error", "r2g_cf_swap_spearman",
                "r2g_cf_null_change", "rand_r2g_spearman_cascade_final", "rand_g2r_spearman_noise"):
        assert metrics[key] == metrics[key], key   # finite, not NaN
    assert metrics["faith_full_latent_all_removed"] > 0            # removing the reference changes the output
    maps = AttributionMaps.load(min((tmp_path / "run" / "maps").glob("*.safetensors")))
    assert maps.relations == ["image:reference"] and maps.meta["model"] == "diffusers"
    assert [m["name"] for m in maps.meta["layers"]] == ["image:reference/transformer_blocks.0.attn",
                                                        "image:reference/single_transformer_blocks.0.attn"]
    assert maps.r2g.ulam.shape == (1, 8, 6) and maps.g2r.ulam.shape == (1, 8, 6)    # 128x96 / (8 x 2x2 packing)
    assert maps.sram("image:reference/single_transformer_blocks.0.attn", points=[(2, 3)]).shape == (1, 1, 8, 6)
    folder = next(p for p in (tmp_path / "run" / "per_sample").iterdir() if (p / "faithfulness.json").is_file())
    curves = json.loads((folder / "faithfulness.json").read_text())["g2r"]["curves"]["full"]["latent"]
    assert curves["deletion"]["attribution"][0] == 0.0 and len(curves["deletion"]["attribution"]) == 3


def test_the_share_normalisation_and_the_text_relation_can_be_chosen():
    adapter = create_model("diffusers-dit-tiny", normalisation="share")
    assert {s.relation for s in adapter.attribution_layers()} == {"share:image:reference"}
    with capture_for(adapter, CaptureConfig(num_steps=1, time_groups=1)) as cap:
        adapter.sample(toy_batch(1), Sampler(num_steps=1))
    maps = cap.maps()
    assert maps.relations == ["share:image:reference"]
    assert 0 < float(maps.r2g.ulam.max()) <= 1   # a share of the attention mass
    text = create_model("diffusers-dit-tiny", relation="text")
    with capture_for(text, CaptureConfig(num_steps=1, time_groups=1)) as cap:
        text.sample(toy_batch(1), Sampler(num_steps=1))
    assert cap.maps().g2r.ulam.shape == (1, 1, 8)   # the 8 tokens of the fixed text embedding


def test_i2am_attribute_runs_a_qwen_image_edit_folder_with_every_evaluator(tmp_path):
    """model=diffusers model.pipeline=QwenImageEditPipeline from a saved folder, its reference resized to the
    generated image's area (+model.reference_area): every evaluator, finite; maps on the 8x6 token grids of the two
    double-stream blocks; the pipeline's own 1024x1024 resize is back after the run."""
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit as qwen_module

    original = qwen_module.calculate_dimensions
    build_transformer_pipeline("QwenImageEditPipeline", "tiny", seed=3).save_pretrained(tmp_path / "qwen")
    overrides = [f"paths.data_dir={tmp_path / 'data'}", f"run_dir={tmp_path / 'run'}", "model=diffusers",
                 "model.pipeline=QwenImageEditPipeline", f"model.path={tmp_path / 'qwen'}", "model.guidance=null",
                 "+model.reference_area=12288", "model.image_size=[128,96]", "sampler.num_steps=2", "data.limit=2",
                 "data.batch_size=2", "data.toy.n_train=2", "data.toy.n_test=2", "trainer.enable_progress_bar=false",
                 "evaluator_set=toy", "capture.sram_layers=auto", *CHECKS]
    metrics = run_task("attribute", overrides)
    assert metrics["n_samples"] == 2
    for key in ("imacs_g", "imacs_r", "loc_err", "loc_err_bbox_baseline", "attn_entropy",
                "faith_full_latent_del_auc", "faith_full_pixel_all_removed", "faith_proxy_latent_del_auc",
                "r2g_cf_swap_spearman", "r2g_cf_null_change", "rand_r2g_spearman_cascade_final"):
        assert metrics[key] == metrics[key], key
    assert metrics["faith_full_latent_all_removed"] > 0
    maps = AttributionMaps.load(min((tmp_path / "run" / "maps").glob("*.safetensors")))
    assert [m["name"] for m in maps.meta["layers"]] == ["image:reference/transformer_blocks.0.attn",
                                                        "image:reference/transformer_blocks.1.attn"]
    assert maps.r2g.ulam.shape == (1, 8, 6) and maps.g2r.ulam.shape == (1, 8, 6)   # 128x96 / (8 x 2x2 patches)
    assert maps.sram("image:reference/transformer_blocks.1.attn", points=[(2, 3)]).shape == (1, 1, 8, 6)
    assert qwen_module.calculate_dimensions is original


def test_qwen_reference_area_sets_the_reference_grid_and_is_scoped_to_each_call():
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit as qwen_module

    original = qwen_module.calculate_dimensions
    small = create_model("diffusers-dit-tiny", pipeline="QwenImageEditPipeline")
    assert small.reference_grid() == (8, 6) and small.reference_area == 128 * 96
    larger = create_model("diffusers-dit-tiny", pipeline="QwenImageEditPipeline", reference_area=256 * 192)
    assert larger.reference_grid() == (16, 12)
    seen = []
    larger.transformer.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["img_shapes"]), with_kwargs=True)
    larger.run_loop(larger.prepare(toy_batch(1)), Sampler(num_steps=1))
    assert seen == [[[(1, 8, 6), (1, 16, 12)]]]   # generated 8x6, the reference resized to 256x192: 16x12 tokens
    assert qwen_module.calculate_dimensions is original
    with pytest.raises(RuntimeError, match="boom"), Hooks("test") as hooks:
        larger.scope_call(hooks)
        assert qwen_module.calculate_dimensions is not original
        raise RuntimeError("boom")
    assert qwen_module.calculate_dimensions is original
    full = create_model("diffusers-dit", pipeline="QwenImageEditPipeline", device="meta", image_size=(1024, 768))
    assert full.reference_area is None and full.reference_grid() == (74, 56)   # its own 1024x1024 area: 1184x896


INPAINT = "FluxKontextInpaintPipeline"
LONGCAT, JOYIMAGE = "LongCatImageEditPipeline", "JoyImageEditPipeline"
EDITORS = ["FluxKontextPipeline", INPAINT, "Flux2Pipeline", "QwenImageEditPipeline", "QwenImageEditPlusPipeline",
           LONGCAT, JOYIMAGE]


@pytest.mark.numeric
@pytest.mark.parametrize("pipeline", EDITORS)
def test_run_loop_is_seeded_per_sample_and_its_callback_is_the_euler_step(pipeline):
    """Per-sample noise; the callback's x, velocity and x0 are the Euler step's (for the inpainting editor inside
    its mask: outside it the pipeline pastes the noised image back); ``predict_x0`` (one transformer call prepared
    by the pipeline, the proxy's prediction) reproduces the x0 of the pipeline's own loop."""
    adapter = create_model("diffusers-dit-tiny", pipeline=pipeline)
    batch = toy_batch(2)
    batch["reference"] = batch["reference"][:1].repeat(2, 1, 1, 1)   # FLUX.2, Qwen Plus: one reference per call
    inputs = adapter.prepare(batch)
    steps = []
    both = adapter.run_loop(inputs, Sampler(num_steps=3), callback=steps.append)
    alone = adapter.run_loop(adapter.prepare({k: v[1:] for k, v in batch.items()}), Sampler(num_steps=3))
    torch.testing.assert_close(alone, both[1:], rtol=0, atol=1e-5)   # sample s1's noise does not depend on s0
    assert not torch.allclose(adapter.run_loop(inputs, Sampler(num_steps=3, seed=1)), both)
    assert [s["step"] for s in steps] == [0, 1, 2] and steps[-1]["sigma_next"] == 0.0
    torch.testing.assert_close(steps[-1]["x_next"], both)
    assert both.shape[1:] == inputs.latent_shape
    inside = torch.ones_like(both[:, :1], dtype=torch.bool)
    if pipeline == INPAINT:   # the latent grid's mask, as the pipeline downsamples it (nearest)
        inside = torch.nn.functional.interpolate(batch["inpaint_mask"], size=both.shape[-2:]) > 0.5
    for s in steps:
        euler = s["x"] + (s["sigma_next"] - s["sigma"]) * s["eps"]
        torch.testing.assert_close(euler * inside, s["x_next"] * inside)
        torch.testing.assert_close(s["denoised"], s["x"] - s["sigma"] * s["eps"])
        torch.testing.assert_close(adapter.predict_x0(s["x"], s["t"], inputs), s["denoised"], rtol=0, atol=1e-5)


def _call(pipe, image=True, seed=0):
    """16 pixels per token (the tiny VAEs' factor 8, 2 x 2 latent patches)."""
    kwargs = dict(**toy.prompt(pipe), num_inference_steps=2, output_type="latent", height=64, width=64,
                  generator=torch.Generator().manual_seed(seed))
    if type(pipe).__name__ == "Flux2Pipeline":   # one 64x64 reference: 4x4 tokens
        return pipe(image=[toy.image(64, 64)] if image else None, **kwargs).images
    return pipe(image=toy.image(64, 48) if image else None, max_area=64 * 64, _auto_resize=False,
                **kwargs).images   # a 64x48 reference: 4x3 tokens


@pytest.mark.parametrize("name,grid", [("FluxKontextPipeline", (4, 3)), ("Flux2Pipeline", (4, 4))])
def test_joint_knockout_of_no_token_is_bit_identical_and_of_all_tokens_removes_the_reference(name, grid):
    """Knockout inside the joint attention: keeping every reference token leaves the backend call untouched
    (bit-identical), removing every one equals the pipeline without a reference image; a partial removal lies
    between. Everything is restored on exit, also after an exception."""
    import sys

    pipe = toy.pipeline(name)
    block = pipe.transformer.transformer_blocks[0].attn
    backend = sys.modules[type(block.processor).__module__]
    original_dispatch, original_processor = backend.dispatch_attention_fn, type(block.processor)
    plain, without = _call(pipe), _call(pipe, image=False)
    knockout = JointTokenKnockout(pipe.transformer)
    with knockout:
        knockout.set_keep(lambda g: torch.ones(1, g[0] * g[1], dtype=torch.bool))
        assert torch.equal(_call(pipe), plain)
        knockout.set_keep(lambda g: torch.zeros(1, g[0] * g[1], dtype=torch.bool))
        torch.testing.assert_close(_call(pipe), without, rtol=1e-5, atol=1e-6)
        knockout.delete(torch.arange(float(grid[0] * grid[1])).reshape(1, *grid), 0.5)
        half = _call(pipe)
    assert not torch.allclose(half, plain) and not torch.allclose(half, without)
    assert backend.dispatch_attention_fn is original_dispatch and type(block.processor) is original_processor
    with pytest.raises(RuntimeError, match="keep mask"), knockout:
        knockout.set_keep(lambda g: torch.ones(2, 5, dtype=torch.bool))
        _call(pipe)
    assert backend.dispatch_attention_fn is original_dispatch and type(block.processor) is original_processor
    assert torch.equal(_call(pipe), plain)


def test_qwen_joint_knockout_of_all_tokens_is_the_transformer_without_the_reference_tokens():
    """QwenImageEditPipeline cannot run without a reference image; removing every reference token equals its
    calls with the reference tokens cut out of the transformer's sequence (and out of img_shapes); keeping every
    one is bit-identical."""
    adapter = create_model("diffusers-dit-tiny", pipeline="QwenImageEditPipeline")
    inputs, sampler = adapter.prepare(toy_batch(2)), Sampler(num_steps=2)

    def cut(module, args, kw):
        generated = kw["img_shapes"][0][0]
        kw["hidden_states"] = kw["hidden_states"][:, :generated[1] * generated[2]]
        kw["img_shapes"] = [[shapes[0]] for shapes in kw["img_shapes"]]
        return args, kw

    assert_knockout_identities(adapter, inputs, sampler, cut, torch.arange(48.0).reshape(1, 8, 6).expand(2, -1, -1))


def test_flux2_runs_the_attribute_loop_one_reference_per_call(tmp_path):
    overrides = [f"paths.data_dir={tmp_path / 'data'}", f"run_dir={tmp_path / 'run'}", "model=diffusers-dit-tiny",
                 "model.pipeline=Flux2Pipeline", "sampler.num_steps=2", "data.limit=2", "data.batch_size=1",
                 "data.toy.n_train=2", "data.toy.n_test=2", "trainer.enable_progress_bar=false", "evaluator_set=toy",
                 "capture.sram_layers=auto", *CHECKS[:7]]
    metrics = run_task("attribute", overrides)
    assert metrics["n_samples"] == 2
    for key in ("imacs_g", "imacs_r", "loc_err", "faith_full_latent_del_auc", "faith_proxy_latent_del_auc",
                "r2g_cf_swap_spearman"):
        assert metrics[key] == metrics[key], key
    adapter = create_model("diffusers-dit-tiny", pipeline="Flux2Pipeline")
    with pytest.raises(ValueError, match="data.batch_size=1"):
        adapter.sample(toy_batch(2), Sampler(num_steps=1))


def test_unsupported_pipelines_and_checks_are_refused_naming_them(tmp_path):
    with pytest.raises(ValueError, match="got Flux2KleinPipeline"):
        DiffusersTransformerAdapter(toy.pipeline("Flux2KleinPipeline"))
    with pytest.raises(ValueError, match="got Flux2KleinPipeline"):
        create_model("diffusers", pipeline="Flux2KleinPipeline", path=str(tmp_path))
    with pytest.raises(ValueError, match="model.prompt_embeds"):
        create_model("diffusers-dit-tiny", prompt="a shirt")
    with pytest.raises(ValueError, match="set model.guidance=null"):
        create_model("diffusers-dit-tiny", pipeline="QwenImageEditPipeline", guidance=2.5)
    with pytest.raises(ValueError, match="reference_area is QwenImageEditPipeline's"):
        create_model("diffusers-dit-tiny", reference_area=4096)
    with pytest.raises(TypeError, match="reference_area"):
        create_model("diffusers", pipeline="PaintByExamplePipeline", device="meta", reference_area=4096)
    adapter = create_model("diffusers-dit-tiny")
    with pytest.raises(NotImplementedError, match="removal 'replace'"):
        adapter.token_knockout(mode="replace")
    with pytest.raises(ValueError, match="sampler.scheduler='ddim'"):
        adapter.run_loop(adapter.prepare(toy_batch(1)), Sampler(scheduler="ddim", num_steps=1))


@pytest.mark.parametrize("pipeline,blocks", [
    ("FluxKontextPipeline", ["single_transformer_blocks.0", "transformer_blocks.0"]),
    ("Flux2Pipeline", ["single_transformer_blocks.0", "transformer_blocks.0"]),
    ("QwenImageEditPipeline", ["transformer_blocks.1", "transformer_blocks.0"]),
    ("QwenImageEditPlusPipeline", ["transformer_blocks.1", "transformer_blocks.0"]),
    (INPAINT, ["single_transformer_blocks.0", "transformer_blocks.0"]),
    (LONGCAT, ["single_transformer_blocks.0", "transformer_blocks.0"]),
    (JOYIMAGE, ["double_blocks.1", "double_blocks.0"]),
    ("StableDiffusion3Pipeline", ["transformer_blocks.1", "transformer_blocks.0"])])
def test_randomisation_stages_cover_the_transformer_once_from_the_output_side(pipeline, blocks):
    adapter = create_model("diffusers-dit-tiny", pipeline=pipeline)
    stages = adapter.randomization_stages()
    assert [name for name, _ in stages] == ["transformer.out", *[f"transformer.{b}" for b in blocks],
                                            "transformer.in"]
    ids = [id(p) for _, modules in stages for m in modules for p in m.parameters()]
    assert sorted(ids) == sorted(id(p) for p in adapter.transformer.parameters())


def test_a_fixed_text_embedding_is_read_from_a_file_and_checked(tmp_path):
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(1)
    embeds, pooled = torch.randn(1, 6, 32, generator=gen), torch.randn(1, 32, generator=gen)
    save_file({"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}, str(tmp_path / "text.safetensors"))
    adapter = create_model("diffusers-dit-tiny", prompt_embeds=str(tmp_path / "text.safetensors"))
    assert torch.equal(adapter.prompt_embeds, embeds) and torch.equal(adapter.pooled_prompt_embeds, pooled)
    zeros = create_model("diffusers-dit-tiny")
    assert not torch.allclose(adapter.sample(toy_batch(1), Sampler(num_steps=1))["latents"],
                              zeros.sample(toy_batch(1), Sampler(num_steps=1))["latents"])
    save_file({"prompt_embeds": torch.zeros(1, 6, 16)}, str(tmp_path / "narrow.safetensors"))
    with pytest.raises(ValueError, match="width 16, the transformer reads 32"):
        create_model("diffusers-dit-tiny", prompt_embeds=str(tmp_path / "narrow.safetensors"))


def test_qwen_reads_its_text_embedding_and_padding_mask_from_a_file(tmp_path):
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(1)
    embeds, mask = torch.randn(1, 6, 32, generator=gen), torch.tensor([[1, 1, 1, 1, 0, 0]])
    save_file({"prompt_embeds": embeds, "prompt_embeds_mask": mask}, str(tmp_path / "qwen.safetensors"))
    adapter = create_model("diffusers-dit-tiny", pipeline="QwenImageEditPipeline",
                           prompt_embeds=str(tmp_path / "qwen.safetensors"))
    assert torch.equal(adapter.prompt_embeds, embeds) and torch.equal(adapter.prompt_embeds_mask, mask)
    zeros = create_model("diffusers-dit-tiny", pipeline="QwenImageEditPipeline")
    assert torch.equal(zeros.prompt_embeds_mask, torch.ones(1, 8, dtype=torch.long))
    seen = []
    adapter.transformer.register_forward_pre_hook(
        lambda m, a, kw: seen.append(kw["encoder_hidden_states_mask"]), with_kwargs=True)
    adapter.sample(toy_batch(1), Sampler(num_steps=1))
    assert torch.equal(seen[0], mask)   # the padding reaches the transformer
    save_file({"prompt_embeds": embeds, "prompt_embeds_mask": mask[:, :4]}, str(tmp_path / "short.safetensors"))
    with pytest.raises(ValueError, match="4 entries for 6 text tokens"):
        create_model("diffusers-dit-tiny", pipeline="QwenImageEditPipeline",
                     prompt_embeds=str(tmp_path / "short.safetensors"))


def test_kontext_inpaint_keeps_the_image_outside_its_mask_and_repaints_inside():
    """The person image outside the inpaint mask is the pipeline's (the same for every noise seed); inside the mask
    the noise decides; the reference's tokens are the maps' relation, on the generated image's token grid."""
    adapter = create_model("diffusers-dit-tiny", pipeline=INPAINT)
    inputs = adapter.prepare(toy_batch(1))
    first, second = (adapter.run_loop(inputs, Sampler(num_steps=2, seed=seed)) for seed in (0, 1))
    inside = torch.nn.functional.interpolate(toy_batch(1)["inpaint_mask"], size=first.shape[-2:]) > 0.5
    torch.testing.assert_close(first * ~inside, second * ~inside, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(first * inside, second * inside)
    other = dict(toy_batch(1), image=-toy_batch(1)["image"])   # another person: another kept region
    assert not torch.allclose(adapter.run_loop(adapter.prepare(other), Sampler(num_steps=2)) * ~inside,
                              first * ~inside)


@pytest.mark.parametrize("pipeline,batch_size,source", [
    (INPAINT, 2, "folder"), ("QwenImageEditPlusPipeline", 1, "folder"), (LONGCAT, 2, "folder"), (JOYIMAGE, 2, "tiny")])
def test_i2am_attribute_runs_the_later_editors_with_every_evaluator(pipeline, batch_size, source, tmp_path):
    """model=diffusers on saved folders of the editors added beside the first four (JoyImage-Edit as the registered
    tiny model: a folder of it loads only with accelerate installed): every toy evaluator, finite; removing the
    reference changes the output; maps on the generated image's 8x6 token grid."""
    model = ["model=diffusers-dit-tiny", f"model.pipeline={pipeline}"]
    if source == "folder":
        build_transformer_pipeline(pipeline, "tiny", seed=3).save_pretrained(tmp_path / "editor")
        model = ["model=diffusers", f"model.pipeline={pipeline}", f"model.path={tmp_path / 'editor'}"]
    overrides = [f"paths.data_dir={tmp_path / 'data'}", f"run_dir={tmp_path / 'run'}", *model, "model.guidance=null",
                 "model.image_size=[128,96]", "sampler.num_steps=2", "data.limit=2", f"data.batch_size={batch_size}",
                 "data.toy.n_train=2", "data.toy.n_test=2", "trainer.enable_progress_bar=false", "evaluator_set=toy",
                 "capture.sram_layers=auto", *CHECKS]
    if pipeline.startswith("QwenImageEdit"):
        overrides.append("+model.reference_area=12288")
    metrics = run_task("attribute", overrides)
    assert metrics["n_samples"] == 2
    for key in ("imacs_g", "imacs_r", "loc_err", "attn_entropy", "faith_full_latent_del_auc",
                "faith_proxy_latent_del_auc", "r2g_cf_swap_spearman", "r2g_cf_null_change",
                "rand_r2g_spearman_cascade_final"):
        assert metrics[key] == metrics[key], key
    assert metrics["faith_full_latent_all_removed"] > 0
    maps = AttributionMaps.load(min((tmp_path / "run" / "maps").glob("*.safetensors")))
    assert maps.relations == ["image:reference"] and maps.meta["model"] == model[0].removeprefix("model=")
    assert maps.r2g.ulam.shape == (1, 8, 6) and maps.g2r.ulam.shape == (1, 8, 6)


@pytest.mark.numeric
@pytest.mark.parametrize("pipeline", EDITORS)
def test_the_adapters_maps_are_those_i2am_trace_takes_of_the_same_call(pipeline):
    """The adapter's capture (its relation, conditional rows, layer names and grids) against i2am.trace around the
    same pipeline call: the same maps of every block."""
    adapter = create_model("diffusers-dit-tiny", pipeline=pipeline)
    batch = toy_batch(2)
    batch["reference"] = batch["reference"][:1].repeat(2, 1, 1, 1)   # FLUX.2, Qwen Plus: one reference per call
    inputs, sampler, cfg = adapter.prepare(batch), Sampler(num_steps=2), CaptureConfig(num_steps=2, time_groups=2)
    with capture_for(adapter, cfg) as cap:
        adapter.run_loop(inputs, sampler)
    with i2am.trace(adapter.pipe, cfg) as tr:
        adapter.run_loop(inputs, sampler)
    ours, traced = cap.maps(), tr.maps.relation("image:reference")
    assert [m["name"] for m in ours.meta["layers"]] == [m["name"] for m in traced.meta["layers"]]
    for direction in ("r2g", "g2r"):
        for family in ("ulam", "tlam", "llam", "hlam"):
            torch.testing.assert_close(getattr(getattr(ours, direction), family),
                                       getattr(getattr(traced, direction), family), rtol=1e-5, atol=0)


def _cut_reference_tokens(generated_tokens: int):
    """LongCat-Image-Edit's transformer call with only the generated tokens (and their position ids)."""
    def cut(module, args, kw):
        kw["hidden_states"] = kw["hidden_states"][:, :generated_tokens]
        kw["img_ids"] = kw["img_ids"][:generated_tokens]
        return args, kw
    return cut


def _cut_reference_item(module, args, kw):
    """JoyImage-Edit's transformer call with only the generated item (the last); its one-item output broadcasts
    over the pipeline's items, whose reference the loop restores every step."""
    kw["hidden_states"] = kw["hidden_states"][:, -1:]
    return args, kw


@pytest.mark.parametrize("pipeline,cut", [(LONGCAT, _cut_reference_tokens(48)), (JOYIMAGE, _cut_reference_item)])
def test_joint_knockout_of_all_reference_tokens_is_the_call_without_them(pipeline, cut):
    """LongCat-Image-Edit and JoyImage-Edit: keeping every reference token is bit-identical, removing every one
    equals their transformer calls with the reference tokens cut out of the sequence (1e-5)."""
    adapter = create_model("diffusers-dit-tiny", pipeline=pipeline)
    inputs, sampler = adapter.prepare(toy_batch(2)), Sampler(num_steps=2)
    assert_knockout_identities(adapter, inputs, sampler, cut, torch.arange(48.0).reshape(1, 8, 6).expand(2, -1, -1))


def test_longcat_generates_at_image_size_on_the_fixed_embedding_and_restores_its_call():
    """LongCat-Image-Edit's call has no size argument and encodes its prompt even when given embeddings: inside each
    call the adapter sets the size (the reference resized to it) and hands the fixed embedding to its own
    encode_prompt; both are the pipeline's again after the call, also after an exception."""
    from diffusers.pipelines.longcat_image import pipeline_longcat_image_edit as module

    original = module.calculate_dimensions
    adapter = create_model("diffusers-dit-tiny", pipeline=LONGCAT, image_size=(64, 96))
    seen = []
    adapter.transformer.register_forward_pre_hook(lambda m, a, kw: seen.append(kw), with_kwargs=True)
    batch = toy_batch(1)   # a 128x96 reference
    latents = adapter.run_loop(adapter.prepare(batch), Sampler(num_steps=1))
    assert latents.shape == (1, 16, 8, 12) and adapter.reference_grid() == (4, 6)
    assert seen[0]["hidden_states"].shape[1] == 2 * 4 * 6   # generated 4x6 tokens, the reference resized to 4x6
    assert torch.equal(seen[0]["encoder_hidden_states"], adapter.prompt_embeds)
    assert module.calculate_dimensions is original and "encode_prompt" not in vars(adapter.pipe)
    with pytest.raises(TypeError, match="NoneType"):   # its own encode_prompt takes len(prompt) first
        adapter.pipe(image=toy.image(64, 64), prompt_embeds=adapter.prompt_embeds, guidance_scale=1.0,
                     num_inference_steps=1)
    with pytest.raises(RuntimeError, match="boom"), Hooks("test") as hooks:
        adapter.scope_call(hooks)
        assert module.calculate_dimensions is not original
        raise RuntimeError("boom")
    assert module.calculate_dimensions is original and "encode_prompt" not in vars(adapter.pipe)


def test_joyimage_keeps_image_size_and_encodes_its_reference_deterministically():
    """JoyImage-Edit's call snaps the size to a 1024x1024-area bucket (64 x 96 -> 832 x 1216) and samples the
    reference's VAE latent from the global generator; inside the adapter's calls the size is image_size and the
    latent the posterior's mode, whatever the global generator's state; the call is the pipeline's own after."""
    adapter = create_model("diffusers-dit-tiny", pipeline=JOYIMAGE, image_size=(64, 96))
    processor = adapter.pipe.vae_image_processor
    assert processor.get_default_height_width(None, 64, 96) == (832, 1216)
    inputs = adapter.prepare(toy_batch(1))
    torch.manual_seed(1)
    first = adapter.run_loop(inputs, Sampler(num_steps=2))
    torch.manual_seed(2)
    assert first.shape == (1, 4, 8, 12) and torch.equal(adapter.run_loop(inputs, Sampler(num_steps=2)), first)
    assert processor.get_default_height_width(None, 64, 96) == (832, 1216)
    assert "encode" not in vars(adapter.vae)


@pytest.mark.parametrize("pipeline", [LONGCAT, JOYIMAGE])
def test_longcat_and_joyimage_refuse_guidance_and_read_their_text_embedding(pipeline, tmp_path):
    """Their guidance_scale is classifier-free guidance whose negative prompt only the text encoder could give:
    refused, naming model.guidance=null; the fixed embedding is read at the width the transformer reads (no
    pooled embedding)."""
    from safetensors.torch import save_file

    with pytest.raises(ValueError, match="classifier-free guidance.*set model.guidance=null"):
        create_model("diffusers-dit-tiny", pipeline=pipeline, guidance=4.0)
    adapter = create_model("diffusers-dit-tiny", pipeline=pipeline)
    with pytest.raises(ValueError, match="set model.guidance=null"):
        adapter.run_loop(adapter.prepare(toy_batch(1)), Sampler(num_steps=1, guidance=4.0))
    embeds = torch.randn(1, 5, 32, generator=torch.Generator().manual_seed(1))
    save_file({"prompt_embeds": embeds}, str(tmp_path / "text.safetensors"))
    adapter = create_model("diffusers-dit-tiny", pipeline=pipeline, prompt_embeds=str(tmp_path / "text.safetensors"))
    assert torch.equal(adapter.prompt_embeds, embeds) and adapter.pooled_prompt_embeds is None
    with capture_for(adapter, CaptureConfig(num_steps=1, time_groups=1)) as cap:
        adapter.sample(toy_batch(1), Sampler(num_steps=1))
    assert cap.maps().r2g.ulam.shape == (1, 8, 6)


@pytest.mark.parametrize("pipeline,blocks,width", [(LONGCAT, 19 + 38, 3584), (JOYIMAGE, 20, 4096)])
def test_longcat_and_joyimage_full_layouts_build_on_the_meta_device(pipeline, blocks, width):
    """model=diffusers-dit with path=null: the full-size architecture (diffusers' defaults), layer layout only."""
    adapter = create_model("diffusers-dit", pipeline=pipeline, device="meta", image_size=(1024, 768))
    assert len(adapter.attribution_layers()) == blocks and adapter.prompt_embeds.shape[-1] == width
    assert adapter.reference_grid() == (64, 48) and adapter.latent_shape(64, 48)[1:] == (128, 96)


def test_a_joyimage_folder_without_accelerate_is_refused_naming_the_fix(tmp_path):
    import importlib.util

    if importlib.util.find_spec("accelerate") is not None:
        pytest.skip("accelerate is installed: the folder loads")
    build_transformer_pipeline(JOYIMAGE, "tiny").save_pretrained(tmp_path / "joy")
    with pytest.raises(ImportError, match="pip install accelerate"):
        create_model("diffusers", pipeline=JOYIMAGE, path=str(tmp_path / "joy"))
