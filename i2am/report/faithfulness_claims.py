"""The demo's faithfulness and sanity claims, each with its rule fixed in config before any run (``demo.claims`` in
conf/demo.yaml: alpha, the test, the minimum effect, the baseline each claim must beat) and reported whichever way it
falls. Inputs are the flat metrics.json maps of the demo's attribute runs by label ("custom" = MSE only, "refined",
"control" = the correspondence-supervised positive control); numbers are those of the faithfulness and
randomization evaluators (docs/faithfulness.md). Every claim row shows n, the effect, the interval (from 10 samples
on) and the exact p; a claim whose n cannot reach alpha reads "insufficient n"."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields

from i2am.measures.stats import HELD, INSUFFICIENT, NOT_HELD, NOT_TESTED, Paired, decide, from_flat
from i2am.measures.trivial_orders import TRIVIAL_ORDERS
from i2am.report.claims import Claim

BASELINES = ("best_trivial", "random", "inverse")
_GAP_KEY = {"best_trivial": "gap_trivial", "random": "gap", "inverse": "gap_inverse"}


@dataclass(frozen=True)
class ClaimRules:
    """The rules of the faithfulness claims (``demo.claims``)."""

    alpha: float = 0.05
    test: str = "wilcoxon"          # the evaluator's paired test (faithfulness.test): wilcoxon | sign
    mode: str = "full"              # deletion curves read: full regeneration | proxy
    space: str = "pixel"            # latent | pixel
    baseline: str = "best_trivial"  # what a deletion claim must beat: best_trivial | random | inverse
    min_effect: float = 0.0         # the mean AUC gap the map must exceed
    counterfactual_min_spearman: float = 0.1

    @classmethod
    def of(cls, config: Mapping | None) -> ClaimRules:
        config = dict(config or {})
        unknown = sorted(set(config) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"demo.claims has unknown keys {unknown}; known: {[f.name for f in fields(cls)]}")
        rules = cls(**config)
        if rules.baseline not in BASELINES:
            raise ValueError(f"demo.claims.baseline={rules.baseline!r}: choose from {list(BASELINES)}")
        return rules


def _f(m: Mapping, key: str) -> float:
    value = m.get(key)
    return math.nan if value is None else float(value)


def _held(outcome: str) -> bool | None:
    return {HELD: True, NOT_HELD: False}.get(outcome)


def _best_trivial(m: Mapping, prefix: str) -> str:
    index = _f(m, f"{prefix}_best_trivial")
    return "none" if math.isnan(index) else TRIVIAL_ORDERS[int(index)]


def deletion_claim(label: str, m: Mapping, claim: str, rules: ClaimRules = ClaimRules()) -> Claim:
    p = f"faith_{rules.mode}_{rules.space}_del"
    tested: Paired | None = from_flat(m, f"{p}_{_GAP_KEY[rules.baseline]}", rules.test)
    outcome = NOT_TESTED if tested is None else decide(tested, rules.alpha, rules.min_effect)
    others = {name: from_flat(m, f"{p}_{key}", rules.test) for name, key in _GAP_KEY.items() if name != rules.baseline}
    best = _best_trivial(m, p)
    proxy = _f(m, f"faith_proxy_{rules.space}_del_gap_trivial")
    out_of_range = _f(m, f"faith_{rules.mode}_{rules.space}_out_of_range")
    return Claim(claim=claim,
                 measured=(f"{label}: deletion AUC {_f(m, f'{p}_auc'):.3f}; gap to {rules.baseline.replace('_', ' ')} "
                           f"({best if rules.baseline == 'best_trivial' else rules.baseline}): "
                           f"{tested.text() if tested else 'n = 0'}"),
                 baselines=(f"best trivial order {best} {_f(m, f'{p}_auc_best_trivial'):.3f}, random order "
                            f"{_f(m, f'{p}_auc_random'):.3f} ± {_f(m, f'{p}_auc_random_std'):.3f}, inverse order "
                            f"{_f(m, f'{p}_auc_inverse'):.3f}; "
                            + "; ".join(f"gap to {k.replace('_', ' ')}: {v.text()}" for k, v in others.items() if v)),
                 entropy=f"H {_f(m, 'attn_entropy'):.2f} nats, max p {_f(m, 'attn_max_prob'):.2f}",
                 held=_held(outcome), outcome=outcome if outcome == INSUFFICIENT else "",
                 rule=(f"paired over samples: deletion AUC of the map below the {rules.baseline.replace('_', ' ')} "
                       f"order's, {rules.test} p <= {rules.alpha} and mean gap > {rules.min_effect} "
                       f"({rules.mode}, {rules.space})"),
                 note="; ".join(filter(None, [
                     "" if math.isnan(proxy) else f"teacher-forced proxy gap to the best trivial order {proxy:+.3f}",
                     f"curves left [0, 1] on {out_of_range:.0%} of samples (bounded normaliser)"
                     if out_of_range > 0 else ""])))


def randomization_claim(label: str, m: Mapping, rules: ClaimRules = ClaimRules()) -> Claim:
    """Held when, over samples, each direction's fully randomised map is no closer to the original than two
    randomised models are to each other (+ the evaluator's null margin): ``rand_{d}_margin`` > 0, paired test."""
    tested = {d: from_flat(m, f"rand_{d}_margin", rules.test) for d in ("r2g", "g2r")}
    tested = {d: t for d, t in tested.items() if t is not None and t.n > 0}
    outcomes = {d: decide(t, rules.alpha) for d, t in tested.items()}
    if not outcomes:
        outcome = NOT_TESTED
    elif INSUFFICIENT in outcomes.values():
        outcome = INSUFFICIENT
    else:
        outcome = HELD if all(o == HELD for o in outcomes.values()) else NOT_HELD

    def levels(d: str, level: str) -> str:
        return (f"Spearman {_f(m, f'rand_{d}_spearman_{level}'):.2f} "
                f"(|.| {_f(m, f'rand_{d}_spearman_abs_{level}'):.2f}, SSIM {_f(m, f'rand_{d}_ssim_{level}'):.2f}, "
                f"HOG {_f(m, f'rand_{d}_hog_{level}'):.2f})")
    measured = "; ".join(f"{d.upper()} after the whole cascade {levels(d, 'cascade_final')}, margin to the null: "
                         f"{t.text()}" for d, t in tested.items())
    baselines = "; ".join(f"{d.upper()} randomised vs randomised {levels(d, 'null_random')}; input-only map (mask) "
                          f"{levels(d, 'null_input')}; two noise seeds (ceiling) {levels(d, 'noise')}"
                          for d in tested)
    return Claim(claim=f"{label}: the maps fail to survive model-parameter randomisation (sanity check)",
                 measured=f"{label}: {measured or 'not run'}", baselines=baselines or "–", entropy="–",
                 held=_held(outcome), outcome=outcome if outcome == INSUFFICIENT else "",
                 rule=(f"every learned part re-initialised (cascading, >= 3 seeds); per sample and direction the "
                       f"fully randomised Spearman <= the randomised-vs-randomised null + margin; paired over "
                       f"samples, {rules.test} p <= {rules.alpha}, for R2G and G2R"),
                 note="a map that resembles the input-only map as much as the original does carries the inputs, "
                      "not the model")


def counterfactual_claim(label: str, m: Mapping, rules: ClaimRules = ClaimRules()) -> Claim:
    rho, topk, base = (_f(m, k) for k in ("r2g_cf_swap_spearman", "r2g_cf_swap_topk", "r2g_cf_topk_baseline"))
    tested = from_flat(m, "r2g_cf_swap_spearman_vs_mask", rules.test)
    if tested is None:
        outcome, held = NOT_TESTED, None
    else:
        outcome = decide(tested, rules.alpha)
        held = _held(outcome)
        if held:
            held = bool(rho > rules.counterfactual_min_spearman and topk > base)
    return Claim(claim=f"{label}: the R2G map shows where the output changes when the reference is swapped",
                 measured=(f"{label}: Spearman {rho:+.3f}, top-20 % overlap {topk:.3f} inside the try-on region; "
                           f"whole image, map - inpaint-mask map Spearman: "
                           f"{tested.text() if tested else 'n = 0'}; null reference: Spearman "
                           f"{_f(m, 'r2g_cf_null_spearman'):+.3f}"),
                 baselines=(f"inpaint-mask map (whole image) Spearman {_f(m, 'r2g_cf_swap_mask_spearman_image'):+.3f};"
                            f" uniform map inside the region: Spearman 0, top-20 % overlap {base:.3f}"),
                 entropy="–", held=held, outcome=outcome if outcome == INSUFFICIENT else "",
                 rule=(f"paired over samples: the map predicts the change better than the inpaint mask "
                       f"({rules.test} p <= {rules.alpha}), Spearman in region > {rules.counterfactual_min_spearman} "
                       f"and top-k overlap above the uniform map (swap = another sample's reference, same noise)"))


def faithfulness_claims(runs: Mapping[str, Mapping], rules: Mapping | ClaimRules | None = None) -> list[Claim]:
    """The claims for whichever of the labelled runs carry faithfulness / randomization numbers."""
    rules = rules if isinstance(rules, ClaimRules) else ClaimRules.of(rules)
    key = f"faith_{rules.mode}_{rules.space}_del_{_GAP_KEY[rules.baseline]}"
    claims = []
    names = {"control": "The positive control's G2R map is faithful: deleting its top reference tokens changes "
                        "the output sooner than the best order computed from the inputs alone",
             "custom": "The MSE-only model's G2R map beats the best trivial order in deletion",
             "refined": "The refined (paper-loss) model's G2R map beats the best trivial order in deletion"}
    for label, claim in names.items():
        if label in runs and f"{key}_n" in runs[label]:
            claims.append(deletion_claim(label, runs[label], claim, rules))
    for label in ("custom", "refined", "control"):
        if label in runs and any(f"rand_{d}_margin_n" in runs[label] for d in ("r2g", "g2r")):
            claims.append(randomization_claim(label, runs[label], rules))
    if "control" in runs and "r2g_cf_swap_spearman" in runs["control"]:
        claims.append(counterfactual_claim("control", runs["control"], rules))
    return claims
