"""The demo's faithfulness and sanity claims, each with its rule fixed before any run and reported whichever way it
falls. Inputs are the flat metrics.json maps of the demo's attribute runs by label ("custom" = MSE only, "refined",
"control" = the correspondence-supervised positive control); numbers are those of the faithfulness and
randomization evaluators (docs/faithfulness.md)."""
from __future__ import annotations

import math
from collections.abc import Mapping

from i2am.report.claims import Claim

SPACE = "pixel"               # the deletion claims read the full-regeneration curves in pixels
PASS_FRACTION_TEXT = "fully randomised Spearman <= 0.5 x the two-noise-seed level"
CF_MIN_SPEARMAN = 0.1         # the R2G map must rank the changed cells (mask-only baseline: 0)


def _f(m: Mapping, key: str) -> float:
    value = m.get(key)
    return math.nan if value is None else float(value)


def _interval(m: Mapping, key: str) -> str:
    return f"{_f(m, key):+.3f} [{_f(m, key + '_lo'):+.3f}, {_f(m, key + '_hi'):+.3f}]"


def deletion_claim(label: str, m: Mapping, claim: str, space: str = SPACE) -> Claim:
    p = f"faith_full_{space}_del"
    lo = _f(m, f"{p}_gap_lo")
    held = None if math.isnan(lo) else lo > 0
    proxy = _f(m, f"faith_proxy_{space}_del_gap")
    return Claim(claim=claim,
                 measured=(f"{label}: deletion AUC {_f(m, f'{p}_auc'):.3f}, gap to random {_interval(m, f'{p}_gap')} "
                           f"(n = {_f(m, 'faith_n_samples'):.0f})"),
                 baselines=(f"random order {_f(m, f'{p}_auc_random'):.3f} ± {_f(m, f'{p}_auc_random_std'):.3f}, "
                            f"inverse order {_f(m, f'{p}_auc_inverse'):.3f}"),
                 entropy=f"H {_f(m, 'attn_entropy'):.2f} nats, max p {_f(m, 'attn_max_prob'):.2f}",
                 held=held, rule="the 95 % bootstrap interval (over samples) of random AUC - attribution AUC "
                                 "excludes 0 (full regeneration, knockout, pixels)",
                 note=f"teacher-forced proxy gap {proxy:+.3f}" if not math.isnan(proxy) else "")


def randomization_claim(label: str, m: Mapping) -> Claim:
    passes = {d: _f(m, f"rand_{d}_pass") for d in ("r2g", "g2r")}
    tested = [v for v in passes.values() if not math.isnan(v)]
    held = None if not tested else all(v == 1.0 for v in tested)
    measured = "; ".join(f"{d.upper()} Spearman {_f(m, f'rand_{d}_spearman_cascade_final'):.2f} (SSIM "
                         f"{_f(m, f'rand_{d}_ssim_cascade_final'):.2f}) after the last cascading stage"
                         for d in passes if not math.isnan(passes[d]))
    reference = "; ".join(f"{d.upper()} Spearman {_f(m, f'rand_{d}_spearman_noise'):.2f} (SSIM "
                          f"{_f(m, f'rand_{d}_ssim_noise'):.2f})" for d in passes if not math.isnan(passes[d]))
    return Claim(claim=f"{label}: the maps fail to survive model-parameter randomisation (sanity check)",
                 measured=f"{label}: {measured}", baselines=f"two noise seeds of the original: {reference}",
                 entropy="–", held=held, rule=f"{PASS_FRACTION_TEXT}, for R2G and G2R, on every evaluated sample")


def counterfactual_claim(label: str, m: Mapping) -> Claim:
    rho, topk, base = (_f(m, k) for k in ("r2g_cf_swap_spearman", "r2g_cf_swap_topk", "r2g_cf_topk_baseline"))
    held = None if math.isnan(rho) else bool(rho > CF_MIN_SPEARMAN and topk > base)
    return Claim(claim=f"{label}: the R2G map shows where the output changes when the reference is swapped",
                 measured=(f"{label}: Spearman {rho:+.3f}, top-20 % overlap {topk:.3f} inside the try-on region; "
                           f"null reference: Spearman {_f(m, 'r2g_cf_null_spearman'):+.3f}"),
                 baselines=f"mask-only map: Spearman 0, top-20 % overlap {base:.3f}",
                 entropy="–", held=held,
                 rule=f"Spearman > {CF_MIN_SPEARMAN} and top-k overlap above the mask-only baseline (swap = another "
                      f"sample's reference, drawn by seed, same noise)")


def faithfulness_claims(runs: Mapping[str, Mapping]) -> list[Claim]:
    """The claims for whichever of the labelled runs carry faithfulness / randomization numbers."""
    claims = []
    names = {"control": "The positive control's G2R map is faithful: deleting its top reference tokens changes "
                        "the output sooner than random order",
             "custom": "The MSE-only model's G2R map beats random order in deletion",
             "refined": "The refined (paper-loss) model's G2R map beats random order in deletion"}
    for label, claim in names.items():
        if label in runs and "faith_full_pixel_del_gap" in runs[label]:
            claims.append(deletion_claim(label, runs[label], claim))
    for label in ("custom", "refined", "control"):
        if label in runs and "rand_r2g_pass" in runs[label]:
            claims.append(randomization_claim(label, runs[label]))
    if "control" in runs and "r2g_cf_swap_spearman" in runs["control"]:
        claims.append(counterfactual_claim("control", runs["control"]))
    return claims
