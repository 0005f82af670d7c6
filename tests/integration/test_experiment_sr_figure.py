"""The offline twin of `sr_figure` runs offline (pasd-tiny on the toy SR set) and i2am.report.artifacts.sr_figure draws
its figure."""

from helpers.artifacts import artifact_job_overrides
from helpers.paths import CONF
from helpers.tasks_util import read_metrics, run_task
from hydra import initialize_config_dir
from PIL import Image

from i2am.report.artifacts.sr_figure import draw_run


def test_sr_figure_toy_runs_and_writes_its_figure(tmp_path):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        (job,) = artifact_job_overrides("sr_figure", "toy").values()   # its one job, run as a single run
    metrics = run_task("attribute", [*job, f"paths.data_dir={tmp_path / 'data'}", f"run_dir={tmp_path / 'run'}",
                                     "trainer.enable_progress_bar=false", "data.toy_count=1", "sampler.num_steps=2",
                                     "capture.time_groups=2"])
    assert metrics["n_samples"] == 1 and 0 < metrics["psnr"] < 100 and -1 <= metrics["ssim"] <= 1
    assert read_metrics(tmp_path / "run")["psnr"] == metrics["psnr"]
    assert (tmp_path / "run" / "csv" / "metrics.csv").is_file()     # the CSV logger writes into the run folder
    figures = draw_run(tmp_path / "run", tmp_path / "figures")
    assert len(figures) == 1
    with Image.open(figures[0]) as image:
        image.verify()
