"""``i2am attribute data=pairs``: one's own images (odd sizes, written here with PIL) on every model kind that takes a
reference, the refusals at startup, and ``model.path=<org>/<name>`` resolved from a Hugging Face cache offline."""
from __future__ import annotations

import math
import shutil

import pytest
from helpers.pairs_folders import write_pairs
from helpers.tasks_util import cli, compose_task, read_metrics, run_task
from PIL import Image

from i2am.adapters.diffusers.tiny import build_pipeline
from i2am.app.cli import check
from i2am.app.evaluator_fit import EvaluatorMismatchError, check_evaluators
from i2am.app.startup_checks import run_checks
from i2am.errors import UserError

STEMS = ("a", "b")
FAST = ["sampler.num_steps=1", "trainer.enable_progress_bar=false"]
KINDS = {   # one run per model family that takes a reference (the default suite)
    "pbe": ["model=pbe-tiny"], "dcivton": ["model=dcivton-tiny"], "stableviton": ["model=stableviton-tiny"],
    "custom": ["model=custom-tiny"],
    "diffusers-paint-by-example": ["model=diffusers-tiny"],
    "diffusers-inpaint-ip-adapter": ["model=diffusers-tiny", "model.pipeline=StableDiffusionInpaintPipeline"],
    "dit-flux-kontext": ["model=diffusers-dit-tiny"],
}
MORE_KINDS = {   # the other pipeline kinds (-m slow)
    f"diffusers-{pipeline}": ["model=diffusers-tiny", f"model.pipeline={pipeline}"] for pipeline in
    ("StableDiffusionImg2ImgPipeline", "StableDiffusionXLPipeline", "StableDiffusionControlNetPipeline",
     "StableDiffusionInstructPix2PixPipeline")} | {
    "diffusers-reference-attention": ["model=diffusers-tiny", "model.pipeline=StableDiffusionPipeline",
                                      "model.reference_attention=true"],
    "dit-flux2": ["model=diffusers-dit-tiny", "model.pipeline=Flux2Pipeline"],
    "dit-qwen-image-edit": ["model=diffusers-dit-tiny", "model.pipeline=QwenImageEditPipeline"],
}


def assert_one_paragraph(proc, *named) -> None:
    """Exit status 2, no traceback, one line of error naming each of ``named``."""
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    error = [line for line in proc.stderr.splitlines() if line.startswith("i2am ")]
    assert len(error) == 1, proc.stderr[-3000:]
    for text in named:
        assert text in error[0], (text, error[0])


def _overrides(tmp_path, root, *extra) -> list[str]:
    return ["data=pairs", f"data.root={root}", f"run_dir={tmp_path / 'run'}", f"paths.output_dir={tmp_path / 'out'}",
            *FAST, *extra]


def _attribute_on_pairs(tmp_path, model):
    overrides = _overrides(tmp_path, write_pairs(tmp_path / "pairs", stems=STEMS), *model)
    run_checks(compose_task("attribute", overrides))
    metrics = run_task("attribute", overrides)
    run = tmp_path / "run"
    assert metrics["n_samples"] == len(STEMS)
    assert sorted(p.stem for p in (run / "maps").glob("*.safetensors")) == list(STEMS)
    for stem in STEMS:
        with Image.open(run / "samples" / f"{stem}.png") as sample:
            assert sample.size == (96, 128)   # the model's size, whatever the files' sizes
    assert math.isfinite(metrics["imacs_g"])   # scored against mask/


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_attribute_runs_on_own_images_for_each_model_kind(tmp_path, kind):
    _attribute_on_pairs(tmp_path, KINDS[kind])


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(MORE_KINDS))
def test_attribute_runs_on_own_images_for_the_other_pipeline_kinds(tmp_path, kind):
    _attribute_on_pairs(tmp_path, MORE_KINDS[kind])


REFUSED = {   # what is wrong -> (file removed, overrides, what the message names)
    "no data.root": (None, [], ["data/pairs: no such folder", "Point data.root at a folder", "reference/<stem>.*"]),
    "a model without a reference": (None, ["model=pasd-tiny", "data.size=[128,128]"],
                                    ["model=pasd-tiny", "takes no reference", "data=sr_toy"]),
    "another size than the model's": (None, ["data.size=[64,48]"], ["data.size=[64, 48]", "model=custom-tiny",
                                                                    "set data.size=[128, 96]"]),
    "a stem without its source": ("source/b.png", [], ["has images whose stem is not in", "b",
                                                       "same stem in every folder"]),
}


@pytest.mark.parametrize("mistake", sorted(REFUSED))
def test_a_mistake_is_refused_at_startup_naming_the_fix(tmp_path, mistake):
    remove, extra, named = REFUSED[mistake]
    root = write_pairs(tmp_path / "pairs", stems=STEMS)
    if remove:
        (root / remove).unlink()
    overrides = [o for o in _overrides(tmp_path, root, *extra, f"paths.data_dir={tmp_path / 'data'}")
                 if mistake != "no data.root" or not o.startswith("data.root=")]
    with pytest.raises(UserError) as refused:
        run_checks(compose_task("attribute", overrides))
    message = str(refused.value)
    assert "\n" not in message
    for text in named:
        assert text in message, (text, message)
    assert not (tmp_path / "run").exists()


def test_evaluators_score_only_the_regions_the_folder_has_masks_for(tmp_path):
    root = write_pairs(tmp_path / "pairs", stems=STEMS)
    shutil.rmtree(root / "reference_mask")
    kept, notes = check_evaluators(compose_task("attribute", _overrides(tmp_path, root)))
    assert kept == ["imacs"] and any("IMACS_r left out" in n and "reference_mask/" in n for n in notes), notes
    shutil.rmtree(root / "mask")
    kept, notes = check_evaluators(compose_task("attribute", _overrides(tmp_path, root)))
    assert kept == [] and any("IMACS_g left out" in n and "mask/" in n for n in notes), notes
    with pytest.raises(EvaluatorMismatchError, match="cannot apply: IMACS_g left out.*evaluator_set=none"):
        check_evaluators(compose_task("attribute", _overrides(tmp_path, root, "evaluator_set=imacs")))
    metrics = run_task("attribute", _overrides(tmp_path, root, "model=pbe-tiny"))
    assert metrics == {"n_samples": len(STEMS)}   # no score over a region without an outside


def test_an_undecodable_image_is_one_paragraph_from_the_cli_and_nothing_is_written(tmp_path):
    root = write_pairs(tmp_path / "pairs", stems=STEMS)
    broken = root / "reference" / "b.jpg"
    broken.write_bytes(broken.read_bytes()[:100])
    proc = cli("attribute", _overrides(tmp_path, root, "model=pbe-tiny"), check=False)
    assert_one_paragraph(proc, f"data.root={root}", f"{broken} cannot be decoded", "Replace or remove these files")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs"]


def _cache_a_hub_pipeline(hf_home, repo_id: str) -> None:
    """A tiny Paint-by-Example pipeline saved into the layout of a Hugging Face cache: models--<org>--<name>/
    snapshots/<commit>/ and refs/main naming the commit."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    build_pipeline("PaintByExamplePipeline", "tiny", seed=3, ip_adapter=None).save_pretrained(
        repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


def test_a_hub_id_resolves_from_the_cache_offline_and_runs_on_own_images(tmp_path):
    _cache_a_hub_pipeline(tmp_path / "hf", "tiny-org/tiny-pbe")
    root = write_pairs(tmp_path / "pairs", stems=STEMS)
    cli("attribute", _overrides(tmp_path, root, "model=diffusers", "model.path=tiny-org/tiny-pbe",
                                "model.image_size=[128,96]", "data.size=[128,96]"),
        env={"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"})
    assert read_metrics(tmp_path / "run")["n_samples"] == len(STEMS)
    assert sorted(p.stem for p in (tmp_path / "run" / "samples").glob("*.png")) == list(STEMS)


def test_a_hub_id_not_in_the_cache_offline_is_one_line_saying_so(tmp_path):
    root = write_pairs(tmp_path / "pairs", stems=STEMS)
    proc = cli("attribute", _overrides(tmp_path, root, "model=diffusers", "model.path=tiny-org/not-cached",
                                       "model.image_size=[128,96]", "data.size=[128,96]"),
               check=False, env={"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"})
    assert_one_paragraph(proc, "model.path=tiny-org/not-cached", "not in the local Hugging Face cache",
                         "HF_HUB_OFFLINE=1", "download it first", "point model.path at a local folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs"]   # refused at startup: no run folder


def test_i2am_check_reports_the_pairs_and_the_hub_id(tmp_path, capsys):
    root = write_pairs(tmp_path / "pairs", stems=STEMS)
    folder = tmp_path / "pipe"
    build_pipeline("PaintByExamplePipeline", "tiny", seed=3, ip_adapter=None).save_pretrained(folder)
    code = check(["attribute", "data=pairs", f"data.root={root}", "model=diffusers", f"model.path={folder}",
                  "model.image_size=[128,96]"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0, lines
    assert f"ok    data: 2 samples, 8 image files decoded under {root}" in lines   # 4 folders x 2 stems
    assert f"ok    model path: {folder} (local folder)" in lines
