"""conf/experiment/ (one config per paper artifact, each with an offline -toy twin), their multiruns, and the
tables/figures of i2am.report.artifacts that `i2am reproduce` and experiments/<artifact>.py draw."""
from __future__ import annotations

import csv
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.paths import REPO
from hydra import compose, initialize_config_dir
from PIL import Image

from i2am.app.reproduce import reproduce
from i2am.report.artifacts import make, task_of

CONF = REPO / "conf"

ARTIFACTS = ("vitonhd_table", "detection_table", "llam_stableviton", "tlam_hlam_dcivton", "sram_stableviton",
             "daam_comparison", "debugging_custom", "teaser")
REAL_MODELS = {"stableviton", "dcivton", "custom", "pbe"}


def run_overrides(name: str, paths: list[str]) -> list[tuple[str, object]]:
    """Every job of an artifact's multirun, composed as Hydra's basic sweeper would: [(label, config)]."""
    task = task_of(name)
    base = compose(config_name=task, overrides=[f"experiment={name}", *paths], return_hydra_config=True)
    axes = [[f"{key}={value}" for value in str(values).split(",")]
            for key, values in (base.hydra.sweeper.params or {}).items()]
    jobs = [compose(config_name=task, overrides=[f"experiment={name}", *paths, *combo], return_hydra_config=True)
            for combo in itertools.product(*axes)]
    return [(cfg.artifact.label, cfg) for cfg in jobs]


def test_an_artifact_is_its_module_and_its_experiment_configs():
    """i2am.report.artifacts finds the artifacts by their modules; each has its experiment config, its toy twin and
    its entry point, and names its task where it is not attribute."""
    from i2am.report.artifacts import ARTIFACTS as FOUND

    assert set(ARTIFACTS) | {"sr_figure"} == set(FOUND)
    for name in FOUND:
        for experiment in (name, f"{name}-toy"):
            assert (CONF / "experiment" / f"{experiment}.yaml").is_file(), experiment
        assert (REPO / "experiments" / f"{name}.py").is_file(), name
    assert {name: task_of(name) for name in FOUND if task_of(name) != "attribute"} == {"detection_table": "detect"}
    assert task_of("detection_table-toy") == "detect"


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
        assert (cfg.hydra.sweep.dir, cfg.hydra.sweep.subdir) == (cfg.artifact.output_dir, label)
    models = {label.removesuffix("_unpaired"): str(cfg.model.checkpoint) for label, cfg in real}
    assert len(set(models.values())) == len(models), f"{name}: two models share a checkpoint: {models}"
    for label, cfg in toy:
        assert cfg.model.name.endswith("-tiny") and "toy" in str(cfg.data.root), (name, label)
        assert cfg.sampler.num_steps <= 5 and cfg.data.limit <= 4


def test_toy_twins_take_the_custom_and_refined_weights_from_the_artifact():
    weights = ["artifact.checkpoints.custom=/C.ckpt", "artifact.checkpoints.refined=/R.ckpt"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for name in ("vitonhd_table-toy", "debugging_custom-toy"):
            checkpoints = {label: cfg.model.checkpoint for label, cfg in run_overrides(name, weights)}
            assert (checkpoints["custom"], checkpoints["refined"]) == ("/C.ckpt", "/R.ckpt"), name


def test_vitonhd_table_puts_measured_next_to_paper_numbers(tmp_path):
    metrics = {"stableviton": {"imacs_g": 0.5, "imacs_r": 0.25, "ssim": 0.75, "fid_randconv": 3.0},
               "dcivton": {"imacs_g": -0.5, "ssim": 0.5, "fid_randconv": 4.0},
               "custom": {"imacs_g": 0.0, "imacs_r": 0.0}}
    runs = {}
    for label, values in metrics.items():
        (tmp_path / label).mkdir()
        (tmp_path / label / "metrics.json").write_text(json.dumps(values))
        runs[label] = tmp_path / label
    md, table = make("vitonhd_table", runs, tmp_path / "out")
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
    _, table = make("vitonhd_table", {k: tmp_path / k for k in ("custom", "custom_unpaired")}, tmp_path)
    row = next(csv.DictReader(table.open()))
    assert (row["FID"], row["KID"], row["SSIM"]) == ("12.0", "0.01", "0.8")


def test_detection_table_maps_baselines_to_the_paper_rows(tmp_path):
    (tmp_path / "pbe").mkdir()
    (tmp_path / "pbe" / "metrics.json").write_text(json.dumps(
        {"det_miou": 0.3, "det_miou_whole_image": 0.2, "det_miou_random_official": 0.25, "det_miou_daam": 0.2,
         "det_n": 4}))
    _, table = make("detection_table", {"pbe": tmp_path / "pbe"}, tmp_path)
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
def stableviton_toy_run(tmp_path_factory, toy_data_dir):
    """One stableviton-tiny toy multirun through `python experiments/sram_stableviton.py --toy`, shared by the
    figure tests."""
    root = tmp_path_factory.mktemp("experiments")
    proc = subprocess.run([sys.executable, str(REPO / "experiments" / "sram_stableviton.py"), "--toy",
                           f"paths.output_dir={root}", f"paths.data_dir={toy_data_dir}",
                           "trainer.enable_progress_bar=false"], check=False, capture_output=True, text=True,
                          cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = [Path(line) for line in proc.stdout.splitlines() if line.endswith(".png")]
    return root / "experiments" / "sram_stableviton-toy", written


def test_sram_script_runs_its_toy_multirun_and_draws_the_figure(stableviton_toy_run):
    out, written = stableviton_toy_run
    job = out / "stableviton"
    assert (job / "metrics.json").is_file() and (job / ".hydra" / "overrides.yaml").is_file()
    assert "experiment=sram_stableviton-toy" in (job / ".hydra" / "overrides.yaml").read_text()
    assert (out / "multirun.yaml").is_file()
    samples = sorted((job / "samples").glob("*.png"))
    assert [p.name for p in written] == [f"sram_{p.stem}.png" for p in samples]
    assert_pngs(written)


def test_make_only_redraws_from_the_finished_jobs(stableviton_toy_run):
    out, written = stableviton_toy_run
    root = out.parent.parent
    redrawn = reproduce("sram_stableviton", toy=True, make_only=True,
                        overrides=[f"paths.output_dir={root}", f"paths.data_dir={root / 'data'}"])
    assert redrawn == written


def test_make_only_without_runs_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="teaser-toy"):
        reproduce("teaser", toy=True, make_only=True, overrides=[f"paths.output_dir={tmp_path}"])


@pytest.mark.parametrize("name", ["llam_stableviton", "teaser"])
def test_stableviton_figures_draw_from_a_toy_run(stableviton_toy_run, name, tmp_path):
    out, _ = stableviton_toy_run
    assert_pngs(make(name, {"stableviton": out / "stableviton"}, tmp_path))


# One table artifact runs in the default suite (the sram_stableviton figure runs in the fixture above); every other
# artifact's toy multirun is slow-marked (a minute or two each on 2 cores) and runs in .ci/run's slow set.
END_TO_END_DEFAULT = {"vitonhd_table"}


@pytest.mark.parametrize("name", [name if name in END_TO_END_DEFAULT else pytest.param(name, marks=pytest.mark.slow)
                                  for name in ARTIFACTS])
def test_every_toy_artifact_runs_end_to_end(name, tmp_path, toy_data_dir):
    paths = [f"paths.output_dir={tmp_path}", f"paths.data_dir={toy_data_dir}", "trainer.enable_progress_bar=false"]
    written = reproduce(name, toy=True, overrides=paths)
    jobs = sorted(p.name for p in (tmp_path / "experiments" / f"{name}-toy").iterdir() if (p / ".hydra").is_dir())
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        assert jobs == sorted(label for label, _ in run_overrides(f"{name}-toy", paths))
    pngs = [p for p in written if p.suffix == ".png"]
    if pngs:
        assert_pngs(pngs)
    else:
        assert {p.suffix for p in written} == {".md", ".csv"} and all(p.stat().st_size > 0 for p in written)
