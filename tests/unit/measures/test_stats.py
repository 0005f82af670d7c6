"""Paired per-sample statistics: scipy's p-values, no interval below 10 samples, a bootstrap over samples."""
import numpy as np
import pytest
from scipy import stats

from i2am.measures.stats import (
    HELD,
    INSUFFICIENT,
    MIN_INTERVAL_N,
    NOT_HELD,
    decide,
    min_p_value,
    paired,
    permutation_correlation,
)


def _values(n, shift, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=n)
    return base + shift + rng.normal(scale=0.3, size=n), base


@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
def test_p_values_equal_scipys(alternative):
    a, b = _values(12, 0.2)
    d = a - b
    assert paired(a, b, test="wilcoxon", alternative=alternative).p == stats.wilcoxon(d, alternative=alternative).pvalue
    expected = stats.binomtest(int((d > 0).sum()), d.size, 0.5, alternative=alternative).pvalue
    assert paired(a, b, test="sign", alternative=alternative).p == expected


def test_no_interval_below_ten_samples():
    a, b = _values(MIN_INTERVAL_N - 1, 1.0)
    result = paired(a, b)
    assert result.lo is None and result.hi is None
    assert "no interval" in result.text()
    a, b = _values(MIN_INTERVAL_N, 1.0)
    result = paired(a, b)
    assert result.lo is not None and result.lo <= result.effect <= result.hi


def test_bootstrap_resamples_samples():
    """The interval is scipy's percentile bootstrap of the per-sample differences' mean: resampling samples (so it
    narrows as samples are added, whatever happens inside one sample)."""
    a, b = _values(20, 0.5)
    result = paired(a, b, n_bootstrap=500, seed=3)
    ref = stats.bootstrap((a - b,), np.mean, n_resamples=500, method="percentile",
                          random_state=np.random.default_rng(3)).confidence_interval
    assert (result.lo, result.hi) == (ref.low, ref.high)
    a4, b4 = np.tile(a, 4), np.tile(b, 4)
    wide = paired(a4, b4, n_bootstrap=500, seed=3)
    assert wide.hi - wide.lo < result.hi - result.lo


def test_three_samples_cannot_reach_alpha():
    result = paired([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    assert result.min_p == min_p_value(3) == 0.125
    assert decide(result, alpha=0.05) == INSUFFICIENT


def test_decide_held_and_not_held():
    a, b = _values(16, 1.0)
    assert decide(paired(a, b), alpha=0.01) == HELD
    assert decide(paired(b, a), alpha=0.01) == NOT_HELD
    assert decide(paired(a, b), alpha=0.01, min_effect=10.0) == NOT_HELD


def test_nan_samples_dropped():
    result = paired([1.0, float("nan"), 2.0], [0.0, 0.0, float("nan")])
    assert result.n == 1


def test_permutation_correlation_matches_scipy_rho():
    rng = np.random.default_rng(0)
    x = rng.normal(size=12)
    y = x + rng.normal(scale=0.2, size=12)
    rho, p = permutation_correlation(x, y, n_permutations=999)
    assert rho == pytest.approx(stats.spearmanr(x, y).statistic)
    assert p < 0.01
    _, p_null = permutation_correlation(x, rng.normal(size=12), n_permutations=999)
    assert p_null > p


def test_permutation_correlation_is_exact_over_every_pairing_when_they_fit_in_the_resamples():
    from itertools import permutations

    rng = np.random.default_rng(3)
    x, y = rng.normal(size=5), rng.normal(size=5)
    rho, p = permutation_correlation(x, y, n_permutations=1000)      # 5! = 120 pairings <= 1000: enumerated
    null = np.array([stats.spearmanr(np.array(perm), y).statistic for perm in permutations(x)])
    eps = 1e-14 * max(1.0, abs(rho))      # scipy's tolerance for ties with the observed statistic
    exact = min(1.0, 2 * min(np.mean(null >= rho - eps), np.mean(null <= rho + eps)))
    assert p == pytest.approx(exact, rel=1e-12)
