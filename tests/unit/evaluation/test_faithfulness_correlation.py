"""`i2am correlate` puts IMACS next to faithfulness across runs (does IMACS track faithfulness?), with its default
config, over runs whose metrics.json carry both kinds of number; runs without the faithfulness numbers drop out of
those pairs only."""
import csv
import json

import pytest
from helpers.tasks_util import compose_task, run_task
from scipy import stats

# IMACS and the deletion gap to random order of five runs (checkpoints); the last run was attributed without the
# faithfulness evaluator
RUNS = [
    {"imacs_g": 0.05, "imacs_r": 0.02, "fid": 30.0, "faith_full_pixel_del_gap": 0.01},
    {"imacs_g": 0.10, "imacs_r": 0.04, "fid": 26.0, "faith_full_pixel_del_gap": 0.05},
    {"imacs_g": 0.15, "imacs_r": 0.03, "fid": 22.0, "faith_full_pixel_del_gap": 0.04},
    {"imacs_g": 0.30, "imacs_r": 0.09, "fid": 19.0, "faith_full_pixel_del_gap": 0.20},
    {"imacs_g": 0.35, "imacs_r": 0.10, "fid": 18.0},
]


def test_correlate_puts_imacs_next_to_faithfulness_by_default(tmp_path):
    for i, metrics in enumerate(RUNS):
        run = tmp_path / "sweep" / f"ckpt{i}"
        run.mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps(metrics))
    result = run_task("correlate", [f"runs={tmp_path / 'sweep'}", f"run_dir={tmp_path / 'corr'}",
                                    "correlation.n_bootstrap=200"])
    with (tmp_path / "corr" / "correlation.csv").open() as handle:
        rows = {(r["x"], r["y"]): r for r in csv.DictReader(handle)}
    with_faith = [r for r in RUNS if "faith_full_pixel_del_gap" in r]
    for x in ("imacs_g", "imacs_r"):
        row = rows[(x, "faith_full_pixel_del_gap")]
        assert int(row["n"]) == 4                         # the run without the faithfulness numbers drops out
        xs, ys = [r[x] for r in with_faith], [r["faith_full_pixel_del_gap"] for r in with_faith]
        assert float(row["spearman"]) == pytest.approx(stats.spearmanr(xs, ys).statistic)
        assert float(row["pearson"]) == pytest.approx(stats.pearsonr(xs, ys).statistic)
        assert (tmp_path / "corr" / "figures" / f"correlation_{x}_faith_full_pixel_del_gap.png").is_file()
        assert int(rows[(x, "fid")]["n"]) == 5            # the quality pairs keep every run
    assert result["pearson_imacs_g_faith_full_pixel_del_gap"] == pytest.approx(
        stats.pearsonr([r["imacs_g"] for r in with_faith], [r["faith_full_pixel_del_gap"] for r in with_faith])
        .statistic)


def test_the_demo_correlates_imacs_with_faithfulness_too():
    demo = compose_task("demo", [])
    assert f"faith_{demo.demo.claims.mode}_pixel_del_gap" in demo.demo.correlation_y_keys   # the curves it runs
    assert {"fid_randconv", "ssim"} <= set(demo.demo.correlation_y_keys)   # the correlation claim's pairs
