"""model=diffusers: pipelines from local folders (and the -tiny preset from config) in the attribute loop."""
from __future__ import annotations

import math

import pytest
import torch
from helpers.tasks_util import read_metrics, run_task

from i2am.adapters import create_model
from i2am.adapters.diffusers.tiny import build_pipeline
from i2am.engine import AttributionCapture, AttributionMaps, CaptureConfig
from i2am.sampling.sampler import Sampler


def _batch(n=2):
    gen = torch.Generator().manual_seed(0)
    mask = torch.zeros(n, 1, 128, 96)
    mask[..., 32:96, 24:72] = 1
    return {"image": torch.rand(n, 3, 128, 96, generator=gen) * 2 - 1, "inpaint_mask": mask,
            "reference": torch.rand(n, 3, 64, 64, generator=gen) * 2 - 1, "sample_id": [f"s{i}" for i in range(n)]}


@pytest.mark.parametrize("pipeline,ip,relation,tokens", [
    ("PaintByExamplePipeline", None, "image:example", 1),
    ("StableDiffusionInpaintPipeline", "plain", "image:ip_adapter", 4),
    ("StableDiffusionInpaintPipeline", "plus", "image:ip_adapter", 16),
    ("StableDiffusionPipeline", "plain", "image:ip_adapter", 4)])
def test_tiny_pipelines_sample_under_the_capture(pipeline, ip, relation, tokens):
    adapter = create_model("diffusers-tiny", pipeline=pipeline, ip_adapter={"kind": ip})
    assert adapter.relation == relation
    assert {s.relation for s in adapter.attribution_layers()} == {relation}
    with AttributionCapture(adapter, CaptureConfig(num_steps=2, time_groups=1)) as cap:
        out = adapter.sample(_batch(), Sampler(num_steps=2))
    maps = cap.maps()
    assert out["images"].shape == (2, 3, 128, 96) and maps.r2g.ulam.shape == (2, 16, 12)
    assert {tuple(m["ref_grid"]) for m in maps.meta["layers"]} == {(1, tokens)}
    assert maps.g2r.available == (tokens > 1)


def test_the_text_relation_can_be_chosen_and_unknown_ones_are_refused():
    adapter = create_model("diffusers-tiny", pipeline="StableDiffusionInpaintPipeline", relation="text")
    assert {s.relation for s in adapter.attribution_layers()} == {"text"}
    with pytest.raises(ValueError, match="relations"):
        create_model("diffusers-tiny", relation="image:reference")


def test_folders_load_locally_and_bad_input_is_named(tmp_path):
    pipe = build_pipeline("PaintByExamplePipeline", "tiny", seed=3)
    pipe.save_pretrained(tmp_path / "pbe")
    adapter = create_model("diffusers", path=str(tmp_path / "pbe"), image_size=(128, 96))
    for key, value in pipe.unet.state_dict().items():
        assert torch.equal(adapter.unet.state_dict()[key], value), key
    with pytest.raises(FileNotFoundError, match="no such folder"):
        create_model("diffusers", path=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="StableDiffusionUpscalePipeline"):
        from i2am.adapters.diffusers.pipeline import DiffusersPipelineAdapter
        DiffusersPipelineAdapter(type("StableDiffusionUpscalePipeline", (), {})())


def test_i2am_attribute_runs_on_a_pipeline_folder(tmp_path):
    build_pipeline("PaintByExamplePipeline", "tiny", seed=3).save_pretrained(tmp_path / "pbe")
    overrides = [f"paths.data_dir={tmp_path / 'data'}", f"run_dir={tmp_path / 'run'}", "model=diffusers",
                 f"model.path={tmp_path / 'pbe'}", "model.image_size=[128,96]", "evaluator_set=imacs",
                 "sampler.num_steps=2", "data.limit=2", "data.batch_size=2", "data.toy.n_train=2",
                 "data.toy.n_test=2", "trainer.enable_progress_bar=false"]
    metrics = run_task("attribute", overrides)
    written = read_metrics(tmp_path / "run")   # metrics.json writes NaN (no G2R map for one token) as null
    assert {k: v for k, v in written.items() if v is not None} == pytest.approx(
        {k: v for k, v in metrics.items() if not (isinstance(v, float) and math.isnan(v))})
    assert metrics["n_samples"] == 2 and metrics["imacs_g"] == metrics["imacs_g"]
    maps = AttributionMaps.load(min((tmp_path / "run" / "maps").glob("*.safetensors")))
    assert maps.relations == ["image:example"] and maps.meta["model"] == "diffusers"


CHECKS = ["evaluator_set=imacs", "+evaluator@evaluators.faithfulness=faithfulness",
          "+evaluator@evaluators.randomization=randomization", "evaluators.faithfulness.samples=1",
          "evaluators.faithfulness.fractions=[0.0,0.5,1.0]", "evaluators.faithfulness.random_orders=2",
          "evaluators.faithfulness.proxy_steps=[0.5]", "evaluators.faithfulness.n_bootstrap=100",
          "evaluators.randomization.samples=1", "evaluators.randomization.modes=[cascading]",
          "evaluators.randomization.max_stages=2"]


def test_faithfulness_and_randomization_run_on_a_diffusers_pipeline(tmp_path):
    """model=diffusers-tiny (PaintByExamplePipeline): one example token, so the R2G counterfactuals and the
    randomisation check run and the G2R deletion curves are rightly undefined."""
    overrides = [f"paths.data_dir={tmp_path / 'data'}", f"run_dir={tmp_path / 'run'}", "model=diffusers-tiny",
                 "sampler.num_steps=1", "data.limit=2", "data.batch_size=1", "data.toy.n_train=2",
                 "data.toy.n_test=2", "trainer.enable_progress_bar=false", *CHECKS]
    metrics = run_task("attribute", overrides)
    folder = next((tmp_path / "run" / "per_sample").iterdir())
    assert (folder / "faithfulness.json").is_file() and (folder / "randomization.png").is_file()
    assert metrics["r2g_cf_swap_spearman"] == metrics["r2g_cf_swap_spearman"]         # finite, not NaN
    assert metrics["rand_r2g_spearman_noise"] == metrics["rand_r2g_spearman_noise"]
    assert metrics["faith_full_pixel_del_gap"] != metrics["faith_full_pixel_del_gap"]   # NaN: no G2R map


def test_detect_runs_on_a_diffusers_pipeline(tmp_path):
    overrides = ["model=diffusers-tiny", "data=toy_coco", f"paths.data_dir={tmp_path / 'data'}",
                 "sampler.num_steps=1", "data.limit=2", "data.toy.n=8", "trainer.enable_progress_bar=false",
                 f"run_dir={tmp_path / 'run'}"]
    metrics = run_task("detect", overrides)
    assert metrics["det_n"] == 2
    for key in ("det_miou", "det_miou_whole_image", "det_miou_random", "det_miou_daam"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert AttributionMaps.load(min((tmp_path / "run" / "maps").glob("*.safetensors"))).meta["model"] == \
        "diffusers-tiny"
