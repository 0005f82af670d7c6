"""Correlation across runs: the derived coefficients of docs/method.md §4.5 from the VITON-HD table of §4.4."""
import csv
import json
import math

import numpy as np
import pytest
from scipy import stats

from i2am.evaluation.correlation import _rowwise_pearson, correlate_runs, correlation, correlation_table
from i2am.evaluation.record import update_metrics_json

NAN = float("nan")
VITONHD_TABLE = {  # docs/method.md §4.4: DCI-VTON, StableVITON, Custom, Refined custom
    "dcivton": {"fid": 13.0953, "kid": 0.0334, "lpips": 0.0824, "ssim": 0.8612, "imacs_g": 0.0785},
    "stableviton": {"fid": 10.6755, "kid": 0.0064, "lpips": 0.0817, "ssim": 0.8634, "imacs_g": 0.3083,
                    "imacs_r": 0.3388},
    "custom": {"fid": 11.6572, "kid": 0.0042, "lpips": 0.1020, "ssim": 0.8396, "imacs_g": 0.0833, "imacs_r": 0.0403},
    "refined": {"fid": 11.5420, "kid": 0.0022, "lpips": 0.0964, "ssim": 0.8644, "imacs_g": 0.2215,
                "imacs_r": 0.0948},
}
# (Pearson, Spearman) derived from the paper's VITON-HD table (docs/method.md §4.4): IMACS_g over 4 models,
# IMACS_r over 3
EXPECTED = {
    ("imacs_g", "fid"): (-0.81, -1.00), ("imacs_g", "kid"): (-0.52, -0.40),
    ("imacs_g", "lpips"): (-0.34, -0.40), ("imacs_g", "ssim"): (0.60, 0.60),
    ("imacs_r", "fid"): (-1.00, -1.00), ("imacs_r", "kid"): (0.79, 0.50),
    ("imacs_r", "lpips"): (-0.99, -1.00), ("imacs_r", "ssim"): (0.61, 0.50),
}


def test_the_vitonhd_table_gives_the_derived_coefficients():
    table = correlation_table(list(VITONHD_TABLE.values()), n_bootstrap=500)
    assert len(table) == 8
    for row in table:
        pearson, spearman = EXPECTED[(row["x"], row["y"])]
        assert row["n"] == (4 if row["x"] == "imacs_g" else 3)  # DCI-VTON has no IMACS_r
        assert row["pearson"] == pytest.approx(pearson, abs=0.006)
        assert row["spearman"] == pytest.approx(spearman, abs=1e-9)  # ranks of 3-4 runs: exact fractions
        for name in ("pearson", "spearman"):
            assert -1 - 1e-9 <= row[f"{name}_low"] <= row[f"{name}_high"] <= 1 + 1e-9
    # a hand computation rounds (IMACS_r, KID) to +0.79; the table gives 0.7848
    kid_r = next(row for row in table if (row["x"], row["y"]) == ("imacs_r", "kid"))
    assert kid_r["pearson"] == pytest.approx(0.7848, abs=1e-4)


def test_bootstrap_is_seeded_and_its_vectorised_pearson_matches_scipy():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 10)), rng.normal(size=(6, 10))
    np.testing.assert_allclose(_rowwise_pearson(x, y), [stats.pearsonr(a, b).statistic for a, b in zip(x, y)])
    assert math.isnan(_rowwise_pearson(np.ones((1, 4)), y[:1, :4])[0])
    x, y = rng.normal(size=30), rng.normal(size=30)
    assert correlation(x, y, seed=1) == correlation(x, y, seed=1)
    strong = correlation(x, 2 * x + 0.1 * y, n_bootstrap=1000)
    assert strong["pearson_low"] > 0.9 and strong["spearman_low"] > 0.9


def test_fewer_than_three_runs_give_nan_not_an_error():
    result = correlation([1.0, 2.0, NAN], [3.0, 1.0, 2.0])
    assert result["n"] == 2 and math.isnan(result["pearson"])


def test_correlate_runs_reads_metrics_json_and_writes_csv_and_plots(tmp_path):
    run_dirs = []
    for name, metrics in VITONHD_TABLE.items():
        run_dir = tmp_path / "runs" / name
        update_metrics_json(run_dir, metrics | {"imacs_r": metrics.get("imacs_r", NAN)}, n_samples=2032)
        run_dirs.append(run_dir)
    assert json.loads((tmp_path / "runs" / "dcivton" / "metrics.json").read_text())["imacs_r"] is None
    out = tmp_path / "correlation"
    table = correlate_runs(out, run_dirs=run_dirs, y_keys=["fid"], n_bootstrap=200)
    assert [(row["x"], row["n"]) for row in table] == [("imacs_g", 4), ("imacs_r", 3)]
    with (out / "correlation.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert round(float(rows[0]["pearson"]), 2) == -0.81 and rows[1]["spearman"] == "-1.0"
    for x in ("imacs_g", "imacs_r"):
        assert (out / "figures" / f"correlation_{x}_fid.png").stat().st_size > 1000
    with pytest.raises(FileNotFoundError, match="no metrics.json"):
        correlate_runs(out, run_dirs=[tmp_path / "missing"])
