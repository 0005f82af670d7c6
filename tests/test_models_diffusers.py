"""model=diffusers: pipelines from local folders (and the -tiny preset from config) in the attribute loop."""
from __future__ import annotations

import pytest
import torch
from tasks_util import read_metrics, run_task

from i2am.attribution import AttributionCapture, AttributionMaps, CaptureConfig
from i2am.models import create_model
from i2am.models.diffusers_tiny import build_pipeline
from i2am.models.sampler import Sampler


def _batch(n=2):
    gen = torch.Generator().manual_seed(0)
    mask = torch.zeros(n, 1, 128, 96)
    mask[..., 32:96, 24:72] = 1
    return {"image": torch.rand(n, 3, 128, 96, generator=gen) * 2 - 1, "inpaint_mask": mask,
            "reference": torch.rand(n, 3, 64, 64, generator=gen) * 2 - 1, "sample_id": [f"s{i}" for i in range(n)]}


@pytest.mark.parametrize("pipeline,ip,relation,tokens", [
    ("PaintByExamplePipeline", None, "image:example", 1),
    ("StableDiffusionInpaintPipeline", "plain", "image:ip_adapter", 4),
    ("StableDiffusionInpaintPipeline", "plus", "image:ip_adapter", 16)])
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
    with pytest.raises(ValueError, match="StableDiffusionPipeline"):
        import tiny_pipelines as tp

        from i2am.models.diffusers_pipeline import DiffusersPipelineAdapter
        DiffusersPipelineAdapter(tp.sd())


def test_i2am_attribute_runs_on_a_pipeline_folder(tmp_path):
    build_pipeline("PaintByExamplePipeline", "tiny", seed=3).save_pretrained(tmp_path / "pbe")
    overrides = [f"paths.data_dir={tmp_path / 'data'}", f"run_dir={tmp_path / 'run'}", "model=diffusers",
                 f"model.path={tmp_path / 'pbe'}", "model.image_size=[128,96]", "evaluators=imacs",
                 "sampler.num_steps=2", "data.limit=2", "data.batch_size=2", "data.toy.n_train=2",
                 "data.toy.n_test=2", "trainer.enable_progress_bar=false"]
    metrics = run_task("attribute", overrides)
    assert read_metrics(tmp_path / "run") == pytest.approx(metrics, nan_ok=True)   # PBE: imacs_r is NaN (no G2R)
    assert metrics["n_samples"] == 2 and metrics["imacs_g"] == metrics["imacs_g"]
    maps = AttributionMaps.load(sorted((tmp_path / "run" / "maps").glob("*.safetensors"))[0])
    assert maps.relations == ["image:example"] and maps.meta["model"] == "diffusers"
