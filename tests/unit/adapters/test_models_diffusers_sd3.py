"""model=diffusers / diffusers-dit(-tiny) with StableDiffusion3Pipeline: image <-> text only. The attribute loop with
IMACS, faithfulness (full and proxy, text-token knockout) and randomisation; the pipeline's own call with and without
its stacked CFG; the capture of the positive rows; text-token knockout; the refusals."""
from __future__ import annotations

import pytest
import torch
from helpers.knockout_checks import assert_knockout_identities, toy_batch
from helpers.tasks_util import run_task
from safetensors.torch import save_file

from i2am.adapters import create_model
from i2am.adapters.diffusers.dit.tiny import build_transformer_pipeline
from i2am.engine import AttributionMaps, CaptureConfig
from i2am.engine.factory import capture_for
from i2am.engine.joint import word_maps
from i2am.sampling.sampler import Sampler, sample_seed

SD3 = "StableDiffusion3Pipeline"


def _text_file(path, negative=False):
    """A fixed SD3 text conditioning of 6 tokens (random, so that the text and the CFG matter)."""
    gen = torch.Generator().manual_seed(1)
    state = {"prompt_embeds": torch.randn(1, 6, 32, generator=gen),
             "pooled_prompt_embeds": torch.randn(1, 32, generator=gen)}
    if negative:
        state |= {"negative_prompt_embeds": torch.randn(1, 6, 32, generator=gen),
                  "negative_pooled_prompt_embeds": torch.randn(1, 32, generator=gen)}
    save_file(state, str(path))
    return str(path)


FAITHFULNESS = ["+evaluator@evaluators.faithfulness=faithfulness", "evaluators.faithfulness.samples=1",
                "evaluators.faithfulness.fractions=[0.0,0.5,1.0]", "evaluators.faithfulness.random_orders=1",
                "evaluators.faithfulness.modes=[full,proxy]", "evaluators.faithfulness.proxy_steps=[0.5]",
                "evaluators.faithfulness.n_bootstrap=100", "evaluators.faithfulness.counterfactuals=[null]"]
RANDOMISATION = ["+evaluator@evaluators.randomization=randomization", "evaluators.randomization.samples=1",
                 "evaluators.randomization.modes=[cascading]", "evaluators.randomization.max_stages=2"]


def _overrides(tmp_path, *extra):
    return [f"paths.data_dir={tmp_path / 'data'}", f"run_dir={tmp_path / 'run'}", "sampler.num_steps=2",
            "data.limit=1", "data.batch_size=1", "data.toy.n_train=2", "data.toy.n_test=2",
            "trainer.enable_progress_bar=false", "evaluator_set=imacs", "capture.sram_layers=auto", *extra]


def test_i2am_attribute_runs_sd3_tiny_with_faithfulness_randomisation_and_an_sram_query(tmp_path):
    """model=diffusers-dit-tiny model.pipeline=StableDiffusion3Pipeline: relation text by default; IMACS_g with the
    sample's mask, faithfulness (text-token deletion / insertion, full and proxy; R2G null = every text token
    removed) and randomisation, all finite; the maps are word maps (G2R over the 6 text tokens)."""
    text = _text_file(tmp_path / "text.safetensors")
    metrics = run_task("attribute", _overrides(tmp_path, "model=diffusers-dit-tiny", f"model.pipeline={SD3}",
                                               f"model.prompt_embeds={text}", *FAITHFULNESS, *RANDOMISATION))
    assert metrics["n_samples"] == 1
    for key in ("imacs_g", "faith_full_latent_del_auc", "faith_full_pixel_all_removed", "faith_proxy_latent_del_auc",
                "faith_proxy_pixel_del_curve_error", "r2g_cf_null_spearman", "r2g_cf_null_change",
                "rand_r2g_spearman_cascade_final", "rand_g2r_spearman_noise"):
        assert metrics[key] == metrics[key], key   # finite, not NaN
    assert metrics["faith_full_latent_all_removed"] > 0 and metrics["r2g_cf_null_change"] > 0   # the text matters
    assert "imacs_r" not in metrics   # a G2R row of text tokens has no garment mask to be scored against
    maps = AttributionMaps.load(min((tmp_path / "run" / "maps").glob("*.safetensors")))
    assert maps.relations == ["text"]
    assert [m["name"] for m in maps.meta["layers"]] == ["text/transformer_blocks.0.attn",
                                                        "text/transformer_blocks.1.attn"]
    assert maps.r2g.ulam.shape == (1, 8, 6) and maps.g2r.ulam.shape == (1, 1, 6)   # 128x96 / (8 x 2x2 patches)
    word = maps.sram("text/transformer_blocks.1.attn", points=[(2, 3)])           # cell (2, 3)'s words
    assert word.shape == (1, 1, 1, 6)
    torch.testing.assert_close(word.sum(), torch.tensor(2.0))   # a softmax over the text tokens, summed over 2 steps
    assert word_maps(maps, "text/transformer_blocks.1.attn").shape == (1, 6, 8, 6)


@pytest.mark.slow   # the folder-loading path; the tiny CLI run above covers the loop in the default suite
def test_i2am_attribute_runs_a_saved_sd3_folder(tmp_path):
    """model=diffusers model.pipeline=StableDiffusion3Pipeline model.path=...: the folder's transformer, CFG at
    conf/model/diffusers.yaml's guidance 5.0, text relation; the evaluators' numbers are finite."""
    build_transformer_pipeline(SD3, "tiny", seed=3).save_pretrained(tmp_path / "sd3")
    metrics = run_task("attribute", _overrides(tmp_path, "model=diffusers", f"model.pipeline={SD3}",
                                               f"model.path={tmp_path / 'sd3'}", "model.image_size=[128,96]",
                                               f"+model.prompt_embeds={_text_file(tmp_path / 't.safetensors')}"))
    assert metrics["n_samples"] == 1 and metrics["imacs_g"] == metrics["imacs_g"]
    maps = AttributionMaps.load(min((tmp_path / "run" / "maps").glob("*.safetensors")))
    assert maps.relations == ["text"] and maps.meta["model"] == "diffusers"


@pytest.mark.numeric
@pytest.mark.parametrize("guidance", [None, 1.0])
def test_sd3_run_loop_is_the_pipeline_call_and_predict_x0_its_x0(tmp_path, guidance):
    """With SD3's stacked CFG (guidance null = its 7.0) and without (1.0): ``run_loop`` is the pipeline's own call
    on the same per-sample noise (bit-identical), seeded per sample; the callback's x0 is the Euler step's and
    ``predict_x0`` (one transformer call, CFG combined as the pipeline does) reproduces it."""
    adapter = create_model("diffusers-dit-tiny", pipeline=SD3, guidance=guidance,
                           prompt_embeds=_text_file(tmp_path / "t.safetensors", negative=True))
    inputs = adapter.prepare(toy_batch(2))
    steps = []
    both = adapter.run_loop(inputs, Sampler(num_steps=3), callback=steps.append)
    generators = [torch.Generator().manual_seed(sample_seed(0, s)) for s in ("s0", "s1")]
    own = adapter.pipe(prompt_embeds=adapter.prompt_embeds.expand(2, -1, -1),
                       pooled_prompt_embeds=adapter.pooled_prompt_embeds.expand(2, -1),
                       negative_prompt_embeds=adapter.negative_prompt_embeds.expand(2, -1, -1),
                       negative_pooled_prompt_embeds=adapter.negative_pooled_prompt_embeds.expand(2, -1),
                       height=128, width=96, num_inference_steps=3, generator=generators, output_type="latent",
                       **({} if guidance is None else {"guidance_scale": guidance})).images
    assert torch.equal(both, own) and both.shape == (2, *inputs.latent_shape) == (2, 4, 16, 12)
    alone = adapter.run_loop(adapter.prepare({k: v[1:] for k, v in toy_batch(2).items()}), Sampler(num_steps=3))
    # batch size 1 against 2: float32 reordering, at most 2.9e-6 measured (|x| <= 4.4) on ATen's avx512, avx2 and
    # default kernels; 10x that
    torch.testing.assert_close(alone, both[1:], rtol=0, atol=3e-5)
    assert [s["step"] for s in steps] == [0, 1, 2] and steps[-1]["sigma_next"] == 0.0
    for s in steps:
        torch.testing.assert_close(s["x"] + (s["sigma_next"] - s["sigma"]) * s["eps"], s["x_next"])
        torch.testing.assert_close(adapter.predict_x0(s["x"], s["t"], inputs, guidance=guidance), s["denoised"],
                                   rtol=0, atol=1e-5)
    if guidance is None:   # the CFG matters: the unguided call differs
        assert not torch.allclose(adapter.run_loop(inputs, Sampler(num_steps=3, guidance=1.0)), both)


def test_sd3_capture_under_cfg_scores_the_positive_rows(tmp_path):
    """Under CFG the capture scores the positive half of each stacked call: its first-step maps equal those of the
    call without CFG (same noise, so the same positive input), not those of the negative prompt."""
    text = _text_file(tmp_path / "t.safetensors", negative=True)
    cfg = CaptureConfig(num_steps=1, time_groups=1, sram_layers=("transformer_blocks.1.attn",))
    maps = {}
    for guidance in (7.0, 1.0):
        adapter = create_model("diffusers-dit-tiny", pipeline=SD3, guidance=guidance, prompt_embeds=text)
        with capture_for(adapter, cfg) as cap:
            cap.set_region_mask(toy_batch(2)["inpaint_mask"])
            adapter.run_loop(adapter.prepare(toy_batch(2)), Sampler(num_steps=1))
        maps[guidance] = cap.maps()
    for key, value in maps[1.0].raw.items():
        torch.testing.assert_close(maps[7.0].raw[key], value, rtol=1e-5, atol=1e-7)
    assert maps[7.0].r2g.ulam.shape == (2, 8, 6)
    negative = create_model("diffusers-dit-tiny", pipeline=SD3, guidance=1.0, prompt_embeds=text)
    negative.prompt_embeds.copy_(negative.negative_prompt_embeds)
    negative.pooled_prompt_embeds.copy_(negative.negative_pooled_prompt_embeds)
    with capture_for(negative, cfg) as cap:
        negative.run_loop(negative.prepare(toy_batch(2)), Sampler(num_steps=1))
    assert not torch.allclose(cap.maps().g2r.ulam, maps[7.0].g2r.ulam)


@pytest.mark.parametrize("guidance", [7.0, 1.0])
def test_sd3_text_knockout_of_no_token_is_bit_identical_and_of_all_tokens_removes_the_text(tmp_path, guidance):
    """Knocking out text tokens (in both CFG passes): none removed is bit-identical; all removed equals the
    pipeline whose transformer gets no text tokens (encoder_hidden_states cut to length 0; the pooled embedding
    still conditions the time embedding); half removed lies between."""
    adapter = create_model("diffusers-dit-tiny", pipeline=SD3, guidance=guidance,
                           prompt_embeds=_text_file(tmp_path / "t.safetensors", negative=True))
    inputs, sampler = adapter.prepare(toy_batch(2)), Sampler(num_steps=2)

    def no_text(module, args, kw):
        kw["encoder_hidden_states"] = kw["encoder_hidden_states"][:, :0]
        return args, kw

    assert_knockout_identities(adapter, inputs, sampler, no_text, torch.arange(6.0).reshape(1, 1, 6).expand(2, -1, -1))


def test_sd3_refuses_a_reference_relation_and_the_reference_counterfactuals():
    with pytest.raises(ValueError, match="model.relation='image:reference': StableDiffusion3Pipeline has no reference"):
        create_model("diffusers-dit-tiny", pipeline=SD3, relation="image:reference")
    adapter = create_model("diffusers-dit-tiny", pipeline=SD3)
    assert adapter.relation == "text" and adapter.null_reference == "knockout"
    with pytest.raises(ValueError, match=r"\['swap'\] change the reference image, not the text"):
        adapter.check_counterfactuals(["swap", "null"])
    adapter.check_counterfactuals(["null"])
    editor = create_model("diffusers-dit-tiny")
    editor.check_counterfactuals(["swap", "rotated", "null"])   # an editor's reference maps: the reference matters
    assert editor.null_reference != "knockout"
    text_maps = create_model("diffusers-dit-tiny", relation="text")   # an editor's text maps: the text matters
    assert text_maps.null_reference == "knockout"
    with pytest.raises(ValueError, match=r"\['rotated'\] change the reference image.*FluxKontextPipeline"):
        text_maps.check_counterfactuals(["rotated"])


def test_sd3_full_size_layout_on_meta_and_its_text_embedding_file(tmp_path):
    full = create_model("diffusers-dit", pipeline=SD3, device="meta", image_size=(1024, 1024))
    layers = full.attribution_layers()
    assert len(layers) == 24 and layers[0].name == "text/transformer_blocks.0.attn"
    assert layers[0].query_grid == (64, 64) and layers[0].ref_grid == "row"   # 1024 / (8 x 2x2 patches)
    assert full.prompt_embeds.shape == (1, 8, 4096) and full.pooled_prompt_embeds.shape == (1, 2048)
    adapter = create_model("diffusers-dit-tiny", pipeline=SD3,
                           prompt_embeds=_text_file(tmp_path / "t.safetensors", negative=True))
    assert adapter.negative_prompt_embeds.shape == (1, 6, 32) and adapter.negative_prompt_embeds.abs().sum() > 0
    zeros = create_model("diffusers-dit-tiny", pipeline=SD3, prompt_embeds=_text_file(tmp_path / "p.safetensors"))
    assert torch.equal(zeros.negative_prompt_embeds, torch.zeros(1, 6, 32))
    save_file({"prompt_embeds": torch.zeros(1, 6, 32), "pooled_prompt_embeds": torch.zeros(1, 32),
               "negative_prompt_embeds": torch.zeros(1, 5, 32)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match="differ in shape"):
        create_model("diffusers-dit-tiny", pipeline=SD3, prompt_embeds=str(tmp_path / "bad.safetensors"))
