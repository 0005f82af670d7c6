"""Paired per-sample comparisons for every dataset-level claim (docs/faithfulness.md, "Statistics").

A comparison takes one value per sample for the map and one for the baseline it must beat (or the differences
directly) and reports: n, the effect (mean difference), a percentile bootstrap interval over SAMPLES only when
n >= ``MIN_INTERVAL_N`` (with fewer samples its quantiles are just the extremes), and an exact p-value (the sign test,
``scipy.stats.binomtest``, or the Wilcoxon signed-rank test, ``scipy.stats.wilcoxon``). ``decide`` turns it into a
verdict: "insufficient n" when even the most extreme outcome at this n cannot reach alpha, never "held".
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

MIN_INTERVAL_N = 10
TESTS = ("wilcoxon", "sign")
ALTERNATIVES = ("greater", "less", "two-sided")
HELD, NOT_HELD, INSUFFICIENT, NOT_TESTED = "held", "did not hold", "insufficient n", "not tested"


@dataclass(frozen=True)
class Paired:
    """One paired comparison: differences are map - baseline, oriented so that positive means the map wins."""

    n: int
    effect: float                 # mean difference over the n samples
    lo: float | None              # bootstrap-over-samples interval, None when n < MIN_INTERVAL_N
    hi: float | None
    p: float                      # p-value of ``test`` (NaN when n = 0)
    test: str
    alternative: str
    min_p: float                  # the smallest p any outcome reaches at this n (all differences on one side)

    def interval_text(self) -> str:
        return "no interval (n < 10)" if self.lo is None else f"[{self.lo:+.3f}, {self.hi:+.3f}]"

    def text(self) -> str:
        """``n = 12, effect +0.041 [+0.010, +0.070], wilcoxon p = 0.003``: what a claim row shows."""
        if self.n == 0:
            return "n = 0"
        return f"n = {self.n}, effect {self.effect:+.3f} {self.interval_text()}, {self.test} p = {self.p:.3g}"

    def as_dict(self) -> dict:
        return asdict(self)


def differences(a: Sequence[float], b: Sequence[float] | None = None) -> np.ndarray:
    """Per-sample ``a - b`` (or ``a`` alone) as float64, dropping samples where either is NaN."""
    a = np.asarray(a, dtype=np.float64).ravel()
    d = a if b is None else a - np.asarray(b, dtype=np.float64).ravel()
    return d[np.isfinite(d)]


def min_p_value(n: int, test: str = "wilcoxon", alternative: str = "greater") -> float:
    """The smallest exact p-value reachable with n non-zero differences (every one on the tested side): 2^-n one-sided,
    twice that two-sided, for both the sign test and the exact signed-rank test."""
    if n <= 0:
        return 1.0
    return min(1.0, (2.0 if alternative == "two-sided" else 1.0) * 0.5 ** n)


def sign_test_p(d: np.ndarray, alternative: str = "greater") -> float:
    """Exact sign test of the differences (zeros dropped): ``binomtest(#positive, #non-zero, 0.5)``."""
    nonzero = d[d != 0]
    if nonzero.size == 0:
        return 1.0
    return float(stats.binomtest(int((nonzero > 0).sum()), int(nonzero.size), 0.5, alternative=alternative).pvalue)


def wilcoxon_p(d: np.ndarray, alternative: str = "greater") -> float:
    """Wilcoxon signed-rank p of the differences (scipy's default method: exact for small n without ties)."""
    if d.size == 0 or not np.any(d != 0):
        return 1.0
    return float(stats.wilcoxon(d, alternative=alternative).pvalue)


def bootstrap_interval(d: np.ndarray, n_bootstrap: int = 2000, confidence: float = 0.95,
                       seed: int = 0) -> tuple[float | None, float | None]:
    """Percentile bootstrap interval of the mean difference, resampling samples; (None, None) below MIN_INTERVAL_N."""
    if d.size < MIN_INTERVAL_N:
        return None, None
    if np.all(d == d[0]):
        return float(d[0]), float(d[0])
    res = stats.bootstrap((d,), np.mean, n_resamples=n_bootstrap, confidence_level=confidence,
                          method="percentile", random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def paired(a: Sequence[float], b: Sequence[float] | None = None, *, test: str = "wilcoxon",
           alternative: str = "greater", n_bootstrap: int = 2000, confidence: float = 0.95, seed: int = 0) -> Paired:
    """Compare per-sample values ``a`` with ``b`` (same samples, same order) or test the differences ``a`` against
    0; ``alternative="greater"``: the map's value is larger (orient the inputs so that larger is better)."""
    if test not in TESTS:
        raise ValueError(f"statistics test={test!r}: choose from {TESTS}")
    if alternative not in ALTERNATIVES:
        raise ValueError(f"statistics alternative={alternative!r}: choose from {ALTERNATIVES}")
    d = differences(a, b)
    if d.size == 0:
        return Paired(0, math.nan, None, None, math.nan, test, alternative, 1.0)
    p = wilcoxon_p(d, alternative) if test == "wilcoxon" else sign_test_p(d, alternative)
    lo, hi = bootstrap_interval(d, n_bootstrap, confidence, seed)
    return Paired(int(d.size), float(d.mean()), lo, hi, p, test, alternative,
                  min_p_value(int((d != 0).sum()), test, alternative))


def decide(result: Paired, alpha: float, min_effect: float = 0.0) -> str:
    """The verdict of a claim "the map beats its baseline": ``held`` when p <= alpha and the effect exceeds
    ``min_effect``; ``insufficient n`` when no outcome at this n could reach alpha; ``not tested`` without samples."""
    if result.n == 0:
        return NOT_TESTED
    if result.min_p > alpha:
        return INSUFFICIENT
    return HELD if result.p <= alpha and result.effect > min_effect else NOT_HELD


def permutation_correlation(x: Sequence[float], y: Sequence[float], n_permutations: int = 10000,
                            seed: int = 0) -> tuple[float, float]:
    """Spearman rho of x and y with a two-sided permutation p-value (``scipy.stats.permutation_test``)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size < 3:
        return math.nan, math.nan

    def rho(xs):
        return stats.spearmanr(xs, y).statistic

    res = stats.permutation_test((x,), rho, permutation_type="pairings", n_resamples=n_permutations,
                                 alternative="two-sided", random_state=np.random.default_rng(seed))
    return float(res.statistic), float(res.pvalue)


def flat(key: str, result: Paired) -> dict[str, float]:
    """A comparison as flat metrics.json numbers: ``key`` (the effect), ``key_n``, ``key_lo`` / ``key_hi`` (NaN
    without an interval), ``key_p``, ``key_min_p``."""
    nan = math.nan
    return {key: result.effect, f"{key}_n": float(result.n), f"{key}_lo": nan if result.lo is None else result.lo,
            f"{key}_hi": nan if result.hi is None else result.hi, f"{key}_p": result.p, f"{key}_min_p": result.min_p}


def from_flat(metrics, key: str, test: str = "wilcoxon", alternative: str = "greater") -> Paired | None:
    """The comparison ``flat`` wrote under ``key`` (None when the metrics lack it)."""
    if f"{key}_n" not in metrics or f"{key}_p" not in metrics:
        return None

    def number(name):
        value = metrics.get(name)
        return None if value is None or not math.isfinite(float(value)) else float(value)
    lo, hi = number(f"{key}_lo"), number(f"{key}_hi")
    return Paired(int(float(metrics[f"{key}_n"])), float(metrics[key]), lo, hi,
                  float(metrics[f"{key}_p"]), test, alternative, float(metrics.get(f"{key}_min_p", 1.0)))
