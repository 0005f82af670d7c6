"""`i2am evaluate`, `i2am correlate`, `i2am detect` end to end on tiny presets and toy data; `i2am --help`."""
import json
import subprocess
import sys

import pytest
from helpers.tasks_util import ROOT, cli, read_metrics, run_task, toy_overrides


@pytest.fixture(scope="module")
def attribute_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    run_task("attribute", toy_overrides(tmp, "evaluator_set=none"))
    return tmp / "run"


def test_evaluate_merges_quality_into_the_run_metrics(attribute_run):
    metrics = run_task("evaluate", [f"run_dir={attribute_run}", "evaluator@quality=quality_toy"])
    assert metrics["n_generated"] == 4
    stored = read_metrics(attribute_run)
    for key in ("fid_randconv", "kid_randconv", "ssim"):       # labelled: not Inception FID
        assert key in stored and stored[key] == pytest.approx(metrics[key])
    assert "fid" not in stored
    assert stored["fid_randconv"] > 0 and -1 <= stored["ssim"] <= 1
    cli("evaluate", [f"run_dir={attribute_run}", "evaluator@quality=quality_toy"])     # the same through the CLI
    assert read_metrics(attribute_run)["fid_randconv"] == pytest.approx(metrics["fid_randconv"])


def test_report_of_a_run_through_the_cli_and_the_compose_api(attribute_run):
    import re

    from PIL import Image

    cli("report", [f"run_dir={attribute_run}"])
    page = attribute_run / "report.html"
    sources = re.findall(r"<img src='([^']+)'", page.read_text())
    assert sources
    for source in sources:
        with Image.open(attribute_run / source) as image:
            image.verify()
    page.unlink()
    run_task("report", [f"run_dir={attribute_run}"])
    assert page.is_file()


def test_evaluate_names_a_bad_run_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.yaml"):
        run_task("evaluate", [f"run_dir={tmp_path}"])


def test_correlate_over_runs_through_the_cli(tmp_path):
    table = [(-0.9, 30.0, 0.40), (-0.5, 25.0, 0.50), (-0.2, 21.0, 0.55), (0.1, 18.0, 0.62)]
    runs = []
    for i, (imacs_g, fid, ssim) in enumerate(table):
        run = tmp_path / "sweep" / str(i)
        run.mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps({"imacs_g": imacs_g, "fid": fid, "ssim": ssim}))
        runs.append(run)
    cli("correlate", [f"runs={tmp_path / 'sweep'}", f"run_dir={tmp_path / 'corr'}",
                      "correlation.x_keys=[imacs_g]", "correlation.y_keys=[fid,ssim]", "correlation.n_bootstrap=200"])
    rows = (tmp_path / "corr" / "correlation.csv").read_text().splitlines()
    assert rows[0].startswith("x,y") and len(rows) == 3
    fid_row = next(r for r in rows if r.startswith("imacs_g,fid"))
    assert float(fid_row.split(",")[3]) < -0.9             # Pearson: IMACS falls as FID rises in this table
    assert (tmp_path / "corr" / "figures" / "correlation_imacs_g_fid.png").is_file()
    result = run_task("correlate", [f"runs={tmp_path / 'sweep'}", f"run_dir={tmp_path / 'corr2'}",
                                    "correlation.x_keys=[imacs_g]", "correlation.y_keys=[fid,ssim]",
                                    "correlation.n_bootstrap=200"])
    assert result["n_runs"] == 4 and result["pearson_imacs_g_fid"] < -0.9


@pytest.mark.slow   # the detect CLI stays in the default suite through test_models_diffusers.py
def test_detect_with_pbe_tiny_on_toy_coco(tmp_path):
    overrides = ["model=pbe-tiny", "data=toy_coco", f"paths.data_dir={tmp_path / 'data'}", "sampler.num_steps=2",
                 "data.limit=3", "data.toy.n=16", "trainer.enable_progress_bar=false"]
    cli("detect", [*overrides, f"run_dir={tmp_path / 'run'}"])
    metrics = read_metrics(tmp_path / "run")
    assert run_task("detect", [*overrides, f"run_dir={tmp_path / 'run2'}"]) == pytest.approx(metrics)
    assert metrics["det_n"] == 3
    for key in ("det_miou", "det_iou50", "det_ap", "det_miou_whole_image", "det_miou_random",
                "det_miou_random_official", "det_miou_daam"):
        assert key in metrics
    # PBE has one reference token: the DAAM key-axis map is constant, so its box is the whole image
    assert metrics["det_miou_daam"] == pytest.approx(metrics["det_miou_whole_image"])


def test_help_lists_every_task():
    from i2am.app.tasks import TASKS

    out = subprocess.run([sys.executable, "-m", "i2am.app.cli", "--help"], cwd=ROOT, capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": ""}, check=False).stdout
    for task in TASKS:
        assert f"  {task} " in out or f"  {task}\n" in out


@pytest.mark.parametrize("args", [["--help"], ["attribute", "--cfg", "job"], ["reproduce", "--help"]])
def test_cli_help_and_config_do_not_import_torch(args):
    """`i2am --help`, `i2am <task> --cfg job` and `i2am reproduce --help` answer in a fraction of a second: torch
    loads only when a task runs."""
    code = (f"import sys, i2am.app.cli; i2am.app.cli.main({args!r}); "
            "heavy = [m for m in ('torch', 'lightning', 'diffusers') if m in sys.modules]; assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True)


@pytest.mark.slow   # a two-trial Optuna sweep of train runs
def test_optuna_sweep_over_the_loss_weights(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    cli("train", ["-m", "experiment=sweep_loss_weights", "hydra.sweeper.n_trials=2", "trainer.max_steps=2",
                  f"paths.data_dir={tmp_path / 'data'}", f"paths.output_dir={tmp_path / 'out'}",
                  "data.toy.n_train=4", "data.toy.n_test=2", "trainer.enable_progress_bar=false"], timeout=900)
    results = list((tmp_path / "out").rglob("optimization_results.yaml"))
    assert len(results) == 1
    text = results[0].read_text()
    assert "best_value" in text and "cwg_weight" in text and "dcml_weight" in text
    trials = [json.loads(p.read_text()) for p in (tmp_path / "out").rglob("metrics.json")]
    assert len(trials) == 2 and all(t["attention_loss"] == "paper" for t in trials)


def test_data_layout_is_validated_before_any_model_is_built(tmp_path, monkeypatch):
    from i2am.app.tasks import attribute
    from i2am.data import LayoutError

    def never(*args, **kwargs):
        raise AssertionError("the model was built before the data layout was validated")

    monkeypatch.setattr(attribute, "build_adapter", never)
    (tmp_path / "data" / "zalando-hd-resized" / "test" / "image").mkdir(parents=True)
    with pytest.raises(LayoutError, match="cloth"):
        run_task("attribute", [f"paths.data_dir={tmp_path / 'data'}", f"run_dir={tmp_path / 'run'}", "data=vitonhd"])
