"""conf/experiment/ (one config per paper artifact, each with an offline -toy twin) and experiments/<artifact>.py."""
from __future__ import annotations

import csv
import importlib
import json
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "conf"
sys.path.insert(0, str(REPO / "experiments"))

ARTIFACTS = ("vitonhd_table", "detection_table", "llam_stableviton", "tlam_hlam_dcivton", "sram_stableviton",
             "daam_comparison", "debugging_custom", "teaser")
REAL_MODELS = {"stableviton", "dcivton", "custom", "pbe"}


def script(name: str):
    return importlib.import_module(name)


def run_overrides(name: str, paths: list[str]) -> list[tuple[str, object]]:
    """Every run of an artifact composed with its own overrides: [(label, config)]."""
    task = OmegaConf.load(CONF / "experiment" / f"{name}.yaml").artifact.task
    base = compose(config_name=task, overrides=[f"experiment={name}", *paths])
    checkpoint = script("runner").checkpoint_override
    return [(label, compose(config_name=task, overrides=[f"experiment={name}", *paths, *extra,
                                                         *checkpoint(base, label)]))
            for label, extra in base.artifact.runs.items()]


@pytest.mark.parametrize("name", ARTIFACTS)
def test_each_artifact_and_its_toy_twin_compose_on_the_right_models(name):
    paths = ["paths.ckpt_dir=/CKPT", "paths.data_dir=/DATA", "paths.output_dir=/OUT"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        real, toy = run_overrides(name, paths), run_overrides(f"{name}-toy", paths)
    assert [label for label, _ in real if not label.endswith("_unpaired")] == [label for label, _ in toy]
    for label, cfg in real:
        assert cfg.model.name in REAL_MODELS, (name, label)
        assert str(cfg.model.checkpoint).startswith("/CKPT/"), (name, label, cfg.model.checkpoint)
        assert str(cfg.data.root).startswith("/DATA/") and "toy" not in str(cfg.data.root)
        assert cfg.artifact.output_dir == f"/OUT/experiments/{name}"
    models = {label.removesuffix("_unpaired"): str(cfg.model.checkpoint) for label, cfg in real}
    assert len(set(models.values())) == len(models), f"{name}: two models share a checkpoint: {models}"
    for label, cfg in toy:
        assert cfg.model.name.endswith("-tiny") and "toy" in str(cfg.data.root), (name, label)
        assert cfg.sampler.num_steps <= 5 and cfg.data.limit <= 4


def test_vitonhd_table_puts_measured_next_to_paper_numbers(tmp_path):
    metrics = {"stableviton": {"imacs_g": 0.5, "imacs_r": 0.25, "ssim": 0.75, "fid_randconv": 3.0},
               "dcivton": {"imacs_g": -0.5, "ssim": 0.5, "fid_randconv": 4.0},
               "custom": {"imacs_g": 0.0, "imacs_r": 0.0}}
    runs = {}
    for label, values in metrics.items():
        (tmp_path / label).mkdir()
        (tmp_path / label / "metrics.json").write_text(json.dumps(values))
        runs[label] = tmp_path / label
    md, table = script("vitonhd_table").make(runs, tmp_path / "out", None)
    rows = {r["method"]: r for r in csv.DictReader(table.open())}
    assert list(rows) == ["StableVITON", "DCI-VTON", "Custom"]
    assert rows["StableVITON"]["IMACS_g"] == "0.5" and rows["StableVITON"]["IMACS_g (paper)"] == "0.3083"
    assert rows["DCI-VTON"]["FID"] == "4.0" and rows["DCI-VTON"]["IMACS_r"] == ""
    text = md.read_text()
    assert "| StableVITON | 3.0000 | 10.6755 |" in text and "NOT Inception" in text and "paired outputs" in text


def test_vitonhd_table_reads_fid_from_unpaired_runs(tmp_path):
    for label, values in {"custom": {"fid": 99.0, "ssim": 0.8}, "custom_unpaired": {"fid": 12.0, "kid": 0.01}}.items():
        (tmp_path / label).mkdir()
        (tmp_path / label / "metrics.json").write_text(json.dumps(values))
    _, table = script("vitonhd_table").make({k: tmp_path / k for k in ("custom", "custom_unpaired")}, tmp_path, None)
    row = next(csv.DictReader(table.open()))
    assert (row["FID"], row["KID"], row["SSIM"]) == ("12.0", "0.01", "0.8")


def test_detection_table_maps_baselines_to_the_paper_rows(tmp_path):
    (tmp_path / "pbe").mkdir()
    (tmp_path / "pbe" / "metrics.json").write_text(json.dumps(
        {"det_miou": 0.3, "det_miou_whole_image": 0.2, "det_miou_random_official": 0.25, "det_miou_daam": 0.2,
         "det_n": 4}))
    _, table = script("detection_table").make({"pbe": tmp_path / "pbe"}, tmp_path, None)
    rows = {r["method"]: r for r in csv.DictReader(table.open())}
    assert rows["Ours (I2AM)"]["mIoU measured"] == "0.3" and rows["Ours (I2AM)"]["mIoU_gen (paper)"] == "0.2416"
    assert rows["Random_{10~30%}"]["mIoU measured"] == "0.25" and rows["YOLOv3"]["mIoU measured"] == ""


def assert_pngs(paths: list[Path]) -> None:
    assert paths
    for path in paths:
        with Image.open(path) as image:
            image.load()
            assert image.size[0] > 100


@pytest.fixture(scope="module")
def stableviton_toy_run(tmp_path_factory):
    """One stableviton-tiny toy run through the runner (sram_stableviton-toy), shared by the figure scripts."""
    root = tmp_path_factory.mktemp("experiments")
    paths = [f"paths.output_dir={root}", f"paths.data_dir={root / 'data'}", "trainer.enable_progress_bar=false"]
    module = script("sram_stableviton")
    written = module.main("sram_stableviton", module.make, ["--toy", *paths])
    return root / "experiments" / "sram_stableviton-toy", written


def test_sram_script_runs_its_toy_config_and_draws_the_figure(stableviton_toy_run):
    out, written = stableviton_toy_run
    assert (out / "stableviton" / "metrics.json").is_file()
    samples = sorted((out / "stableviton" / "samples").glob("*.png"))
    assert [p.name for p in written] == [f"sram_{p.stem}.png" for p in samples]
    assert_pngs(written)


@pytest.mark.parametrize("name", ["llam_stableviton", "teaser"])
def test_stableviton_figure_scripts_draw_from_a_toy_run(stableviton_toy_run, name, tmp_path):
    out, _ = stableviton_toy_run
    assert_pngs(script(name).make({"stableviton": out / "stableviton"}, tmp_path, None))


@pytest.mark.parametrize("name", ARTIFACTS)
def test_every_toy_experiment_runs_end_to_end(name, tmp_path):
    paths = [f"paths.output_dir={tmp_path}", f"paths.data_dir={tmp_path / 'data'}", "trainer.enable_progress_bar=false"]
    module = script(name)
    written = module.main(name, module.make, ["--toy", *paths])
    pngs = [p for p in written if p.suffix == ".png"]
    if pngs:
        assert_pngs(pngs)
    else:
        assert {p.suffix for p in written} == {".md", ".csv"} and all(p.stat().st_size > 0 for p in written)
