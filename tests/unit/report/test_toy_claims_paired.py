"""The demo's dataset-level comparisons of two models and of a map with its localisation baselines: paired per
sample, n, effect, an interval only from 10 samples on, the exact p of scipy, "insufficient n" below alpha's reach."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from i2am.measures.stats import flat, paired
from i2am.report.toy_claims import imacs_claim, localised_claim, localises_claim, paired_models


def records(values: dict[str, np.ndarray]) -> dict[str, dict]:
    n = len(next(iter(values.values())))
    return {f"s{i:02d}": {key: float(v[i]) for key, v in values.items()} for i in range(n)}


def imacs_records(n: int, shift: float, seed: int = 0) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    base = {f"imacs_{d}_{p}": rng.normal(size=n) for d in "gr" for p in ("clean", "official")}
    better = {k: v + shift + 0.1 * rng.normal(size=n) for k, v in base.items()}
    return records(base), records(better)


def test_models_are_paired_by_sample_id_with_scipys_exact_p():
    custom, refined = imacs_records(12, 0.3)
    del custom["s03"]                      # a sample only one run holds is not paired
    result = paired_models(refined, custom, "imacs_g_clean")
    ids = sorted(custom)
    d = np.array([refined[i]["imacs_g_clean"] - custom[i]["imacs_g_clean"] for i in ids])
    assert result.n == 11 and result.effect == pytest.approx(d.mean())
    assert result.p == stats.wilcoxon(d, alternative="greater").pvalue
    assert result.lo is not None and result.lo <= result.effect <= result.hi


def test_imacs_claim_decides_in_the_clean_orientation_and_shows_official_beside():
    custom, refined = imacs_records(12, 0.3)
    for record in refined.values():        # official orientation reversed: refined lower there
        record["imacs_g_official"] -= 1.0
    claim = imacs_claim(custom, refined)
    assert claim.held is True and claim.outcome == ""
    assert "IMACS_g clean" in claim.measured and "IMACS_g official" in claim.measured
    worse_custom, worse_refined = imacs_records(12, -0.3)
    assert imacs_claim(worse_custom, worse_refined).held is False


def test_imacs_claim_below_ten_samples_has_no_interval_and_three_samples_are_insufficient():
    custom, refined = imacs_records(3, 1.0)
    claim = imacs_claim(custom, refined)
    assert claim.held is None and claim.outcome == "insufficient n"
    assert "no interval (n < 10)" in claim.measured
    assert imacs_claim(None, refined).held is None and "per-sample" in imacs_claim(None, refined).measured


def test_refined_localised_claim_is_paired_on_the_per_sample_argmax_error():
    rng = np.random.default_rng(1)
    err = rng.uniform(0.2, 0.3, size=12)
    custom, refined = records({"loc_err": err}), records({"loc_err": err - 0.05 + 0.01 * rng.normal(size=12)})
    claim = localised_claim({}, {}, custom, refined)
    d = np.array([custom[i]["loc_err"] - refined[i]["loc_err"] for i in sorted(custom)])
    assert claim.held is True and f"wilcoxon p = {stats.wilcoxon(d, alternative='greater').pvalue:.3g}" in \
        claim.measured
    # a gain below LOC_MARGIN does not hold even when significant
    assert localised_claim({}, {}, custom, records({"loc_err": err - 0.005})).held is False


def localisation_metrics(n: int, gain: float) -> dict:
    rng = np.random.default_rng(2)
    metrics = {"loc_err": 0.05, "loc_err_bbox_baseline": 0.05, "loc_err_centre_prior": 0.18,
               "loc_err_chance_baseline": 0.33, "loc_localizes": 1.0, "loc_bbox_tolerance": 0.05,
               "loc_chance_margin": 0.5}
    for suffix in ("_chance_baseline", "_centre_prior", "_bbox_baseline"):
        metrics |= flat(f"loc_gain{suffix}", paired(gain + 0.01 * rng.normal(size=n)))
    return metrics


def test_localisation_claim_needs_the_paired_test_against_chance_and_the_centre_prior():
    held = localises_claim("control", localisation_metrics(12, 0.1), "control localises")
    assert held.held is True and "vs centre prior: n = 12" in held.baselines
    few = localises_claim("control", localisation_metrics(3, 0.1), "control localises")
    assert few.held is None and few.outcome == "insufficient n" and "no interval (n < 10)" in few.baselines
    no_gain = localises_claim("control", localisation_metrics(12, -0.1), "control localises")
    assert no_gain.held is False
