"""conf/experiment/ (one config per paper artifact: its runs and its offline twin), their multiruns, and the
tables/figures of i2am.report.artifacts that `i2am reproduce` draws."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.artifacts import artifact_jobs
from helpers.paths import REPO
from helpers.tasks_util import cli
from hydra import initialize_config_dir
from omegaconf import OmegaConf
from PIL import Image

from i2am.app.reproduce import reproduce
from i2am.report.artifacts import make, task_of

CONF = REPO / "conf"

ARTIFACTS = ("vitonhd_table", "detection_table", "llam_stableviton", "tlam_hlam_dcivton", "sram_stableviton",
             "daam_comparison", "debugging_custom", "teaser")
REAL_MODELS = {"stableviton", "dcivton", "custom", "pbe"}


def test_an_artifact_is_one_experiment_config_and_one_module():
    """i2am.report.artifacts finds the artifacts by their modules; each has exactly one conf/experiment/<name>.yaml
    (no -toy twin file, no per-label folder, no script), and names its task where it is not attribute."""
    from i2am.report.artifacts import ARTIFACTS as FOUND

    assert set(ARTIFACTS) | {"sr_figure"} == set(FOUND)
    experiments = {p.stem for p in (CONF / "experiment").glob("*.yaml")}
    for name in FOUND:
        assert name in experiments and (REPO / "i2am" / "report" / "artifacts" / f"{name}.py").is_file(), name
        assert [e for e in experiments if e.startswith(name) and e != name] == [], name
        assert not (CONF / "artifact" / name).exists() and not (REPO / "experiments" / f"{name}.py").exists(), name
    assert {name: task_of(name) for name in FOUND if task_of(name) != "attribute"} == {"detection_table": "detect"}


@pytest.mark.parametrize("name", ARTIFACTS)
def test_each_artifact_and_its_toy_twin_compose_on_the_right_models(name):
    paths = ["paths.ckpt_dir=/CKPT", "paths.data_dir=/DATA", "paths.output_dir=/OUT"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        real, toy = artifact_jobs(name, "real", *paths), artifact_jobs(name, "toy", *paths)
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
        assert (cfg.hydra.sweep.dir, cfg.hydra.sweep.subdir) == (f"/OUT/experiments/{name}-toy", label)


def test_toy_twins_take_the_custom_and_refined_weights_from_the_artifact():
    weights = ["artifact.checkpoints.custom=/C.ckpt", "artifact.checkpoints.refined=/R.ckpt"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for name in ("vitonhd_table", "debugging_custom"):
            checkpoints = {label: cfg.model.checkpoint for label, cfg in artifact_jobs(name, "toy", *weights)}
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
    """One stableviton-tiny toy multirun through `i2am reproduce sram_stableviton --toy`, shared by the figure
    tests."""
    root = tmp_path_factory.mktemp("experiments")
    proc = subprocess.run([sys.executable, "-m", "i2am.app.cli", "reproduce", "sram_stableviton", "--toy",
                           f"paths.output_dir={root}", f"paths.data_dir={toy_data_dir}",
                           "trainer.enable_progress_bar=false"], check=False, capture_output=True, text=True,
                          cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = [Path(line) for line in proc.stdout.splitlines() if line.endswith(".png")]
    return root / "experiments" / "sram_stableviton-toy", written


def test_sram_reproduce_runs_its_toy_multirun_and_draws_the_figure(stableviton_toy_run):
    out, written = stableviton_toy_run
    job = out / "stableviton"
    assert (job / "metrics.json").is_file() and (job / ".hydra" / "overrides.yaml").is_file()
    overrides = OmegaConf.load(job / ".hydra" / "overrides.yaml")
    assert {"experiment=sram_stableviton", "artifact.twin=toy", "artifact.label=stableviton"} <= set(overrides)
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
    out = tmp_path / "experiments" / f"{name}-toy"
    jobs = {p.name: OmegaConf.load(p / ".hydra" / "config.yaml") for p in out.iterdir() if (p / ".hydra").is_dir()}
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        expected = {label: cfg.model.name for label, cfg in artifact_jobs(name, "toy", *paths)}
    assert {label: cfg.model.name for label, cfg in jobs.items()} == expected
    pngs = [p for p in written if p.suffix == ".png"]
    if pngs:
        assert_pngs(pngs)
    else:
        assert {p.suffix for p in written} == {".md", ".csv"} and all(p.stat().st_size > 0 for p in written)


@pytest.mark.slow   # two joblib workers (about a minute on 2 cores); vitonhd_table above is the default suite's check
def test_a_multi_label_toy_artifact_is_one_joblib_multirun(tmp_path, toy_data_dir):
    """`i2am attribute -m experiment=daam_comparison artifact.twin=toy` on the joblib launcher: one job folder per
    label of its artifact.toy.runs, each composed on that label's model, and one multirun.yaml."""
    cli("attribute", ["-m", "experiment=daam_comparison", "artifact.twin=toy", "hydra/launcher=joblib",
                      "hydra.launcher.n_jobs=2", f"paths.output_dir={tmp_path}", f"paths.data_dir={toy_data_dir}",
                      "sampler.num_steps=1", "trainer.enable_progress_bar=false"])
    out = tmp_path / "experiments" / "daam_comparison-toy"
    models = {p.name: OmegaConf.load(p / ".hydra" / "config.yaml").model.name
              for p in out.iterdir() if (p / ".hydra").is_dir()}
    assert models == {"stableviton": "stableviton-tiny", "dcivton": "dcivton-tiny"}
    assert all((out / label / "metrics.json").is_file() for label in models)
    assert OmegaConf.load(out / "multirun.yaml").hydra.launcher._target_.endswith("JoblibLauncher")


def test_artifact_multirun_mistakes_are_one_line_errors_that_write_nothing(tmp_path):
    """A sweep value among an artifact multirun's arguments, or a label the artifact does not have, is refused before
    any job runs: exit 2, one paragraph naming the value, no traceback, no folder."""
    swept = cli("attribute", ["-m", "experiment=teaser", "artifact.twin=toy", "seed=0,1",
                              f"paths.output_dir={tmp_path}"], check=False, timeout=300)
    unknown = cli("reproduce", ["teaser", "--toy", "artifact.labels=[nope]", f"paths.output_dir={tmp_path}"],
                  check=False, timeout=300)
    assert "i2am attribute: error: seed=0,1: an artifact's multirun is one job per label" in swept.stderr
    assert "i2am reproduce: error: artifact.labels=['nope']: teaser (toy) has no run ['nope']" in unknown.stderr
    for proc in (swept, unknown):
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []
