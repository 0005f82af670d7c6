"""``i2am attribute`` / ``i2am detect`` with model=diffusers-tiny on every pipeline kind of the attribute loop (toy
data, one step), and model=diffusers on saved folders of the new kinds."""
from __future__ import annotations

import pytest
import torch
from helpers.tasks_util import run_task

from i2am.adapters import create_model
from i2am.adapters.diffusers.tiny import build_pipeline
from i2am.engine import AttributionMaps

BASE = ["sampler.num_steps=1", "data.limit=1", "trainer.enable_progress_bar=false"]
TOY = ["data.batch_size=1", "data.toy.n_train=2", "data.toy.n_test=2"]
FAITHFULNESS = ["+evaluator@evaluators.faithfulness=faithfulness", "evaluators.faithfulness.samples=1",
                "evaluators.faithfulness.fractions=[0.0,0.5,1.0]", "evaluators.faithfulness.random_orders=2",
                "evaluators.faithfulness.modes=[full]", "evaluators.faithfulness.n_bootstrap=50"]


def _run(tmp_path, task, *overrides):
    data = [] if task == "detect" else TOY
    return run_task(task, [f"paths.data_dir={tmp_path / 'data'}", f"run_dir={tmp_path / 'run'}", *BASE, *data,
                           *overrides])


def _maps(tmp_path) -> AttributionMaps:
    return AttributionMaps.load(min((tmp_path / "run" / "maps").glob("*.safetensors")))


@pytest.mark.parametrize("pipeline,extra,relation", [
    ("StableDiffusionImg2ImgPipeline", [], "image:ip_adapter"),
    ("StableDiffusionInpaintPipeline", ["model.ip_adapter.kind=plus"], "image:ip_adapter"),
    ("StableDiffusionXLPipeline", [], "image:ip_adapter"),
    ("StableDiffusionControlNetPipeline", ["model.relation=text"], "text"),
    ("StableDiffusionInstructPix2PixPipeline", [], "image:ip_adapter")])
def test_i2am_attribute_with_imacs_runs_on_each_kind(tmp_path, pipeline, extra, relation):
    metrics = _run(tmp_path, "attribute", "model=diffusers-tiny", f"model.pipeline={pipeline}", "evaluator_set=imacs",
                   *extra)
    assert metrics["n_samples"] == 1
    assert metrics["imacs_g"] == metrics["imacs_g"]   # finite
    assert "imacs_r" not in metrics   # the G2R maps run over IP-Adapter / text tokens: no garment grid to score
    maps = _maps(tmp_path)
    assert maps.relations == [relation]
    if pipeline == "StableDiffusionControlNetPipeline":   # the ControlNet's cross-attention is its own group
        assert {layer["group"] for layer in maps.meta["layers"]} == {"controlnet", "unet"}


def test_faithfulness_runs_on_reference_attention(tmp_path):
    """G2R over the reference's spatial tokens: the deletion / insertion curves knock them out of the denoiser's
    self-attention; the R2G counterfactuals swap the reference and remove it (null)."""
    metrics = _run(tmp_path, "attribute", "model=diffusers-tiny", "model.pipeline=StableDiffusionPipeline",
                   "model.reference_attention=true", "evaluator_set=imacs", "data.limit=2", *FAITHFULNESS)
    assert _maps(tmp_path).relations == ["image:reference"]
    for key in ("faith_full_pixel_del_gap", "faith_full_latent_ins_auc", "r2g_cf_swap_spearman",
                "r2g_cf_null_change"):
        assert metrics[key] == metrics[key], key   # finite, not NaN
    assert metrics["faith_full_latent_all_removed"] > 0   # removing the reference changes the output


def test_faithfulness_runs_on_an_ip_adapter_kind(tmp_path):
    """IP-Adapter tokens are not spatial: the deletion curves rank them by the G2R vector over the 4 image tokens."""
    metrics = _run(tmp_path, "attribute", "model=diffusers-tiny", "model.pipeline=StableDiffusionImg2ImgPipeline",
                   "evaluator_set=imacs", "data.limit=2", *FAITHFULNESS)
    assert _maps(tmp_path).relations == ["image:ip_adapter"]
    for key in ("faith_full_pixel_del_gap", "faith_full_latent_del_auc", "r2g_cf_swap_spearman",
                "r2g_cf_null_change"):
        assert metrics[key] == metrics[key], key
    assert metrics["faith_full_latent_all_removed"] > 0


def test_detect_runs_on_the_img2img_kind(tmp_path):
    metrics = _run(tmp_path, "detect", "model=diffusers-tiny", "model.pipeline=StableDiffusionImg2ImgPipeline",
                   "data=toy_coco", "data.toy.n=8", "data.limit=2")
    assert metrics["det_n"] == 2
    for key in ("det_miou", "det_miou_whole_image", "det_miou_random"):
        assert 0.0 <= metrics[key] <= 1.0, key


@pytest.mark.parametrize("pipeline,settings", [   # the SD-like kinds load through the same code as text2img
    ("StableDiffusionXLPipeline", {}), ("StableDiffusionControlNetPipeline", {}),
    ("StableDiffusionPipeline", {"reference_attention": True})])
def test_saved_folders_of_each_kind_load_with_model_path(tmp_path, pipeline, settings):
    pipe = build_pipeline(pipeline, "tiny", seed=3, ip_adapter=None)
    pipe.save_pretrained(tmp_path / "pipe")
    adapter = create_model("diffusers", pipeline=pipeline, path=str(tmp_path / "pipe"), image_size=(64, 64),
                           **settings)
    for name in ("unet", "controlnet", "text_encoder_2"):
        module = getattr(pipe, name, None)
        for key, value in (module.state_dict().items() if module is not None else ()):
            assert torch.equal(getattr(adapter, name).state_dict()[key], value), f"{name}.{key}"
    if settings.get("reference_attention"):
        assert adapter.relation == "image:reference"
        for key, value in pipe.unet.state_dict().items():   # the reference network: a copy of the denoiser
            assert torch.equal(adapter.reference_unet.state_dict()[key], value), key


def test_reference_attention_is_refused_where_it_cannot_run():
    with pytest.raises(ValueError, match="text2img and img2img"):
        create_model("diffusers-tiny", pipeline="StableDiffusionInpaintPipeline", reference_attention=True)


RANDOMIZATION = ["+evaluator@evaluators.randomization=randomization", "evaluators.randomization.samples=1",
                 "evaluators.randomization.modes=[cascading]", "evaluators.randomization.max_stages=1",
                 "evaluators.randomization.figures=false"]


@pytest.mark.slow
@pytest.mark.parametrize("pipeline,extra", [
    ("StableDiffusionPipeline", []),
    ("StableDiffusionInpaintPipeline", []),
    ("StableDiffusionXLPipeline", []),
    ("StableDiffusionControlNetPipeline", []),
    ("StableDiffusionInstructPix2PixPipeline", [])])
def test_every_evaluator_runs_on_each_kind(tmp_path, pipeline, extra):
    """IMACS with the dataset's masks, the faithfulness checks (G2R curves over the IP-Adapter tokens, R2G swap and
    null) and the randomisation check in one attribute run, then detection, on every kind of the loop."""
    metrics = _run(tmp_path, "attribute", "model=diffusers-tiny", f"model.pipeline={pipeline}", "evaluator_set=imacs",
                   "data.limit=2", *FAITHFULNESS, *RANDOMIZATION, *extra)
    assert _maps(tmp_path).relations == ["image:ip_adapter"]
    assert "imacs_r" not in metrics   # G2R over IP-Adapter tokens
    for key in ("imacs_g", "faith_full_pixel_del_gap", "r2g_cf_swap_spearman", "r2g_cf_null_change",
                "rand_r2g_spearman_noise"):
        assert metrics[key] == metrics[key], key   # finite, not NaN
    assert metrics["faith_full_latent_all_removed"] > 0   # removing every IP token changes the output
    detected = _run(tmp_path / "detect", "detect", "model=diffusers-tiny", f"model.pipeline={pipeline}",
                    "data=toy_coco", "data.toy.n=8", "data.limit=2", *extra)
    assert detected["det_n"] == 2 and 0.0 <= detected["det_miou"] <= 1.0
