"""A multirun as one comparable set of runs: TensorBoard hparams/scalars/images read back with TensorBoard's own
EventAccumulator; wandb runs of the sweep share a group and carry the overrides, the table and the panels."""
from __future__ import annotations

import pytest
from helpers.tasks_util import cli, toy_overrides
from helpers.wandb_records import read_run

from i2am.app.tasks.dashboards import finish_loggers


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dash")
    overrides = [o for o in toy_overrides(tmp, "data.limit=1", "data.batch_size=1", "num_figures=1")
                 if not o.startswith(("run_dir=", "data.limit=4", "data.batch_size=2"))]
    proc = cli("attribute", ["-m", "seed=0,1", "logger=[tensorboard,wandb]", f"paths.output_dir={tmp / 'out'}",
                             *overrides], timeout=900)
    jobs = sorted((tmp / "out" / "attribute" / "multirun").glob("*/[0-9]"))
    assert len(jobs) == 2, proc.stdout[-2000:]
    return jobs


def test_tensorboard_holds_overrides_as_hparams_with_final_metrics_and_panels(sweep):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    seeds = []
    for job in sweep:
        events = EventAccumulator(str(job / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
        events.Reload()
        content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
        hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
        seeds.append(hparams["seed"].number_value)
        assert hparams["sampler.num_steps"].number_value == 2
        scalars = events.Tags()["scalars"]
        assert {"imacs_g", "loc_err"} <= set(scalars)
        assert events.Scalars("imacs_g")[-1].value == events.Scalars("imacs_g")[-1].value   # a number, not NaN
        images = events.Tags()["images"]
        assert images and all(tag.startswith("samples/") for tag in images)
        panel = events.Images(images[0])[0]
        assert panel.width > 0 and panel.height > 0 and panel.encoded_image_string[:4] == b"\x89PNG"
    assert sorted(seeds) == [0, 1]


def test_wandb_runs_of_one_multirun_share_a_group_with_overrides_table_and_panels(sweep):
    runs = [read_run(next((job / "wandb").glob("offline-run-*/run-*.wandb"))) for job in sweep]
    groups = {run["group"] for run in runs}
    assert len(groups) == 1 and None not in groups and groups.pop().startswith("attribute-")
    assert sorted(run["config"]["overrides"]["seed"] for run in runs) == [0, 1]
    for run in runs:
        assert run["config"]["sampler"]["num_steps"] == 2
        assert isinstance(run["summary"]["imacs_g"], float)
        assert run["summary"]["per_sample/_type"] == "table-file" and run["summary"]["per_sample/nrows"] == 1
        # the panels are a history step (older wandb keeps image lists out of the summary)
        assert any(step.get("samples/_type") == "images/separated" and step.get("samples/count", 0) > 0
                   for step in run["history"])


class RecordingLogger:
    def __init__(self):
        self.statuses = []

    def finalize(self, status):
        self.statuses.append(status)


def test_loggers_are_finalized_as_failed_when_the_task_raised():
    ok, failed = RecordingLogger(), RecordingLogger()
    try:
        pass
    finally:
        finish_loggers([ok])
    with pytest.raises(RuntimeError):
        try:
            raise RuntimeError("the task failed")
        finally:
            finish_loggers([failed])
    assert ok.statuses == ["success"] and failed.statuses == ["failed"]
