"""`i2am attribute` end to end on custom-tiny and the toy world: compose API, CLI, resume, DDP, loggers, multirun."""
import json
import shutil
import signal

import pytest
from helpers.tasks_util import cli, read_metrics, run_task, toy_overrides
from helpers.wandb_records import read_run
from omegaconf import OmegaConf

from i2am._testing_hooks import KILL_AFTER_SAMPLES
from i2am.adapters import create_model
from i2am.engine import AttributionMaps
from i2am.runs import RunDir

EXPECTED = ("imacs_g", "imacs_r", "loc_err", "loc_pointing", "attn_entropy", "attn_max_prob",
            "loc_err_bbox_baseline", "loc_err_centre_prior", "r2g_mass_in_region")


# Runs of the same batch size take the same code path sample by sample (per-sample seeds; a sample's result does not
# depend on its batch mates), so they agree bit for bit. Another batch size reorders float32 sums inside the model:
# 2.3e-6 relative on the dataset values and 3.9e-6 on per-sample ones between batch sizes 1 and 2 (measured under
# ATEN_CPU_CAPABILITY=default, avx2 and avx512), so the cross-batch check allows 10x the largest: 4e-5. IMACS reads
# the min-max-normalised image of each map (engine.render): on this untrained model's near-flat maps the normalisation
# divides that rounding by a small range, so IMACS values moved by up to 8.2e-5 (absolute; imacs_g_clean of -0.666,
# sample 000006, body_surface world): they get 10x that, absolute.
ACROSS_BATCH_SIZES = 4e-5
IMACS_ACROSS_BATCH_SIZES = 8e-4


def sample_records(run) -> dict[str, dict]:
    """Every per-sample value file (the done-markers metrics/<id>.json) of a run folder, by file name."""
    return {p.name: json.loads(p.read_text()) for p in sorted((run / "metrics").glob("*.json"))}


def assert_agree_across_batch_sizes(values: dict, reference: dict, where: str):
    """Float values within ACROSS_BATCH_SIZES of the reference; everything else (ids, counts, nulls) equal."""
    floats = {k for k, v in reference.items() if isinstance(v, float) and not k.startswith("imacs_")}
    imacs = {k for k, v in reference.items() if isinstance(v, float) and k.startswith("imacs_")}
    assert values.keys() == reference.keys(), where
    assert {k: values[k] for k in floats} == pytest.approx({k: reference[k] for k in floats}, rel=ACROSS_BATCH_SIZES), \
        where
    assert {k: values[k] for k in imacs} == pytest.approx({k: reference[k] for k in imacs},
                                                          abs=IMACS_ACROSS_BATCH_SIZES), where
    assert {k: v for k, v in values.items() if k not in floats | imacs} == \
        {k: v for k, v in reference.items() if k not in floats | imacs}, where


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """One uninterrupted run through the compose API (batch size 2); later tests compare against it."""
    tmp = tmp_path_factory.mktemp("attr")
    metrics = run_task("attribute", toy_overrides(tmp))
    return tmp, metrics


def test_attribute_writes_samples_maps_and_metrics(reference_run):
    tmp, metrics = reference_run
    run = tmp / "run"
    assert metrics["n_samples"] == 4
    for key in EXPECTED:
        assert key in metrics and metrics[key] == metrics[key], key      # present and not NaN
    assert read_metrics(run) == metrics     # the returned values, written as they are
    samples = sorted((run / "samples").glob("*.png"))
    maps = sorted((run / "maps").glob("*.safetensors"))
    assert len(samples) == len(maps) == 4
    loaded = AttributionMaps.load(maps[0])
    assert loaded.r2g.ulam.shape[0] == 1 and loaded.g2r.available
    assert any(k.startswith("sram/") for k in loaded.raw)
    record = json.loads(next((run / "metrics").glob("*.json")).read_text())
    assert "imacs_g" in record and "loc_err" in record
    assert (run / "config.yaml").is_file() and (run / "csv" / "metrics.csv").is_file()
    assert list((run / "figures").glob("*.png"))


@pytest.mark.numeric
def test_rerun_on_the_same_directory_skips_finished_samples(reference_run, tmp_path):
    tmp, metrics = reference_run
    copy = tmp_path / "run"
    shutil.copytree(tmp / "run", copy)
    stamps = {p.name: p.stat().st_mtime_ns for p in (copy / "samples").glob("*.png")}
    (copy / "FAILED").write_text("i2am attribute failed: RuntimeError: an earlier attempt\n")
    assert not RunDir(copy).is_finished()      # a failed folder never passes for a finished run
    again = run_task("attribute", toy_overrides(tmp, f"run_dir={copy}"))
    assert again == metrics                 # merged again from the same saved per-sample states
    assert {p.name: p.stat().st_mtime_ns for p in (copy / "samples").glob("*.png")} == stamps
    assert not (copy / "FAILED").exists() and RunDir(copy).is_finished()


@pytest.mark.numeric
def test_killed_run_restarted_ends_with_the_same_metrics(reference_run, tmp_path):
    """A real SIGKILL (no cleanup runs) right after the 2nd of 4 done-markers, the end of the first batch of the
    reference's batch size; the restart (through the CLI) finishes the second batch: bit-identical to the reference."""
    tmp, _ = reference_run
    run = tmp_path / "run"
    overrides = toy_overrides(tmp, f"run_dir={run}")
    killed = cli("attribute", overrides, check=False, env={KILL_AFTER_SAMPLES: "2"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert len(list((run / "metrics").glob("*.json"))) == 2
    assert not (run / "metrics.json").exists()
    proc = cli("attribute", overrides)
    assert "imacs_g" in proc.stdout
    assert "2 of 4 samples done, resuming with 2" in (run / "cli.log").read_text()
    assert read_metrics(run) == read_metrics(tmp / "run")
    assert sample_records(run) == sample_records(tmp / "run")


@pytest.mark.numeric
def test_attribute_through_the_cli_at_another_batch_size(reference_run, tmp_path):
    """Batch size 1 against the reference's 2: the same numbers up to float32 reordering (ACROSS_BATCH_SIZES)."""
    tmp, _ = reference_run
    run = tmp_path / "run"
    cli("attribute", toy_overrides(tmp, f"run_dir={run}", "data.batch_size=1"))
    assert_agree_across_batch_sizes(read_metrics(run), read_metrics(tmp / "run"), "metrics.json")
    # run_dir= is the Hydra run folder: its log and .hydra/ are there too
    assert (run / "cli.log").is_file() and (run / ".hydra" / "config.yaml").is_file()
    saved = OmegaConf.load(run / "config.yaml")   # what ran, where the config left it to the model
    defaults = create_model("custom-tiny").sampler_defaults
    assert saved.sampler.num_steps == 2 and saved.capture.time_groups == 2 and saved.capture.num_steps == 2
    assert saved.sampler.scheduler == defaults["scheduler"] and saved.sampler.guidance == defaults["guidance"]
    reference = sample_records(tmp / "run")
    assert sample_records(run).keys() == reference.keys()
    for name, values in sample_records(run).items():
        assert_agree_across_batch_sizes(values, reference[name], name)


@pytest.mark.numeric
def test_two_ddp_ranks_give_the_same_dataset_metrics(reference_run, tmp_path):
    """Each rank runs batches of the reference's size (other batch mates: no effect on a sample), and rank 0 merges
    the per-sample states from disk in sample order: bit-identical to the one-process run."""
    tmp, _ = reference_run
    run = tmp_path / "run"
    cli("attribute", toy_overrides(tmp, f"run_dir={run}", "trainer.accelerator=cpu",
                                   "trainer.devices=2", "+trainer.strategy=ddp"), timeout=900)
    assert read_metrics(run) == read_metrics(tmp / "run")
    assert sample_records(run) == sample_records(tmp / "run")


def test_wandb_offline_run_folder_holds_the_logged_metrics(reference_run, tmp_path):
    import wandb

    tmp, metrics = reference_run
    overrides = [o for o in toy_overrides(tmp, f"run_dir={tmp_path / 'run'}", "logger=wandb", "data.limit=2")
                 if o != "data.limit=4"]
    run_task("attribute", overrides)
    wandb.teardown()          # the wandb service exits only once it has written everything
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    logged = read_run(next(runs[0].glob("run-*.wandb")))
    metrics = read_metrics(tmp_path / "run")
    assert logged["summary"]["imacs_g"] == metrics["imacs_g"]      # the same float64 through wandb's records
    assert logged["summary"]["loc_err"] == metrics["loc_err"]
    assert logged["summary"]["per_sample/nrows"] == 2
    assert logged["config"]["task_name"] == "attribute" and logged["group"] is None    # not a multirun


@pytest.mark.slow   # other multiruns run in the default suite (dashboards, the SRAM script); this is the joblib one
def test_multirun_with_the_joblib_launcher(tmp_path):
    overrides = [o for o in toy_overrides(tmp_path, "data.limit=2")
                 if not o.startswith(("run_dir=", "data.limit=4"))]
    proc = cli("attribute", ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1",
                             f"paths.output_dir={tmp_path / 'out'}", *overrides], timeout=900)
    jobs = sorted((tmp_path / "out" / "attribute" / "multirun").glob("*/*/metrics.json"))
    assert len(jobs) == 2, proc.stdout[-2000:]
    first, second = (json.loads(j.read_text()) for j in jobs)
    assert first["n_samples"] == second["n_samples"] == 2
    assert first["imacs_g"] != second["imacs_g"]          # different seeds, different samples
