"""Correlation of IMACS with quality metrics across runs (models, checkpoints, seeds): docs/method.md §4.5.

Pearson and Spearman coefficients (scipy) with percentile bootstrap 95 % intervals over resampled runs, as a CSV table
and one scatter plot with a least-squares line per (IMACS, metric) pair. Runs missing a value (e.g. IMACS_r of a
single-token model) are left out of that pair only. With a handful of runs the intervals are wide: they say so.
"""
from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from scipy import stats

from i2am.measures.stats import permutation_correlation
from i2am.runs import RunDir

IMACS_KEYS = ("imacs_g", "imacs_r")
QUALITY_KEYS = ("fid", "kid", "lpips", "ssim")
TABLE_COLUMNS = ("x", "y", "n", "pearson", "pearson_low", "pearson_high", "spearman", "spearman_low",
                 "spearman_high", "spearman_perm_p")


def _rowwise_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair of [B, n] arrays; NaN where a row is constant."""
    xc, yc = x - x.mean(axis=1, keepdims=True), y - y.mean(axis=1, keepdims=True)
    denominator = np.sqrt((xc ** 2).sum(axis=1) * (yc ** 2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (xc * yc).sum(axis=1) / denominator, np.nan)


def correlation(x: Sequence[float], y: Sequence[float], n_bootstrap: int = 2000, confidence: float = 0.95,
                seed: int = 0) -> dict[str, float]:
    """Pearson and Spearman of paired values (pairs with a NaN dropped), each with a bootstrap interval, and the
    Spearman's two-sided permutation p-value (``spearman_perm_p``; exact, over every pairing, when the n! pairings
    fit in ``n_bootstrap`` resamples: up to 6 runs at 2000; a random permutation sample beyond).

    The bootstrap resamples runs with replacement; resamples where x or y is constant have no coefficient and are
    skipped, so intervals from very few runs are indicative only.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    out = {"n": len(x)}
    if len(x) < 3:
        return out | {k: float("nan") for k in TABLE_COLUMNS[3:]}
    out["pearson"] = float(stats.pearsonr(x, y).statistic)
    out["spearman"] = float(stats.spearmanr(x, y).statistic)
    index = np.random.default_rng(seed).integers(0, len(x), size=(n_bootstrap, len(x)))
    xb, yb = x[index], y[index]
    tail = 100 * (1 - confidence) / 2
    for name, (xs, ys) in {"pearson": (xb, yb),
                           "spearman": (stats.rankdata(xb, axis=1), stats.rankdata(yb, axis=1))}.items():
        samples = _rowwise_pearson(xs, ys)
        samples = samples[~np.isnan(samples)]
        low, high = np.percentile(samples, [tail, 100 - tail]) if len(samples) else (np.nan, np.nan)
        out[f"{name}_low"], out[f"{name}_high"] = float(low), float(high)
    out["spearman_perm_p"] = permutation_correlation(x, y, n_permutations=n_bootstrap, seed=seed)[1]
    return out


def correlation_table(runs: Sequence[Mapping[str, float]], x_keys: Sequence[str] = IMACS_KEYS,
                      y_keys: Sequence[str] = QUALITY_KEYS, **kwargs) -> list[dict]:
    """One row per (x, y) pair present in the runs; each run is a flat name -> number map (its metrics.json)."""
    table = []
    for x_key in x_keys:
        for y_key in y_keys:
            if not any(x_key in run for run in runs) or not any(y_key in run for run in runs):
                continue
            x = [run.get(x_key, np.nan) for run in runs]
            y = [run.get(y_key, np.nan) for run in runs]
            table.append({"x": x_key, "y": y_key} | correlation(x, y, **kwargs))
    return table


def write_table_csv(table: Sequence[Mapping], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=TABLE_COLUMNS)
        writer.writeheader()
        writer.writerows({k: row[k] for k in TABLE_COLUMNS} for row in table)
    return path


def plot_scatter(runs: Sequence[Mapping[str, float]], x_key: str, y_key: str, path: str | Path,
                 labels: Sequence[str] | None = None, row: Mapping | None = None) -> Path:
    """Scatter of y against x over runs, with the least-squares line and the coefficients in the title."""
    from i2am.viz.canvas import new_figure, save_figure

    x = np.array([run.get(x_key, np.nan) for run in runs], dtype=float)
    y = np.array([run.get(y_key, np.nan) for run in runs], dtype=float)
    keep = ~(np.isnan(x) | np.isnan(y))
    figure = new_figure(figsize=(4, 3.2))
    axes = figure.subplots()
    axes.scatter(x[keep], y[keep])
    for label, xi, yi, kept in zip(labels or [], x, y, keep):
        if kept:
            axes.annotate(label, (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if keep.sum() >= 2 and np.ptp(x[keep]) > 0:
        slope, intercept = np.polyfit(x[keep], y[keep], 1)
        line_x = np.linspace(x[keep].min(), x[keep].max(), 2)
        axes.plot(line_x, slope * line_x + intercept, color="tab:red")
    if row is not None:
        axes.set_title(f"Pearson {row['pearson']:.2f}, Spearman {row['spearman']:.2f} (n={row['n']})", fontsize=8)
    axes.set_xlabel(x_key)
    axes.set_ylabel(y_key)
    figure.tight_layout()
    return save_figure(figure, path, dpi=120)


def load_runs(run_dirs: Sequence[str | Path]) -> tuple[list[dict], list[str]]:
    """metrics.json of each run directory -> (runs, labels); a missing file is an error naming the run."""
    runs, labels = [], []
    for run in map(RunDir, run_dirs):
        if not run.is_finished():
            raise FileNotFoundError(f"correlation: no metrics.json in run directory {run.path}")
        runs.append(run.read_metrics())
        labels.append(run.name)
    return runs, labels


def correlate_runs(output_dir: str | Path, run_dirs: Sequence[str | Path] = (),
                   runs: Sequence[Mapping[str, float]] | None = None, labels: Sequence[str] | None = None,
                   x_keys: Sequence[str] = IMACS_KEYS, y_keys: Sequence[str] = QUALITY_KEYS,
                   n_bootstrap: int = 2000, confidence: float = 0.95, seed: int = 0) -> list[dict]:
    """Correlation table of finished runs (``run_dirs``, or ``runs`` given directly) -> ``correlation.csv`` and
    ``figures/correlation_<x>_<y>.png`` under ``output_dir``. Returns the table."""
    if runs is None:
        runs, labels = load_runs(run_dirs)
    table = correlation_table(runs, x_keys, y_keys, n_bootstrap=n_bootstrap, confidence=confidence, seed=seed)
    output_dir = Path(output_dir)
    write_table_csv(table, output_dir / "correlation.csv")
    for row in table:
        plot_scatter(runs, row["x"], row["y"], RunDir(output_dir).figure_file(f"correlation_{row['x']}_{row['y']}"),
                     labels=labels, row=row)
    return table
