"""Causal check of the routes of a joint-attention editor (docs/dit_editors.md, "Indirect routes"): cut one route with
``JointTokenKnockout(rows=...)`` and ask whether the route maps predict where and how much the output changes.

One transformer call (``forward() -> [B, Lg, C]`` the output on the generated tokens, same inputs every time) is
compared with itself under the cuts; every measure is per sample, so a batch of n samples gives paired statistics
(``i2am.measures.stats.paired``: effect, bootstrap interval for n >= 10, Wilcoxon p):

- ``route_cut``: the mean output change when reference -> text edges are cut minus when reference -> image edges are
  cut (two-sided: which route carries more);
- ``where_<route>``: Spearman of the route's R2G map with the per-token output change of the reference -> text cut,
  minus the same for the direct (``share``) map (the direct map is the baseline a route map must beat);
- ``which_<route>``: the output change when the top ``fraction`` of reference tokens by the route's G2R map lose
  their edges into the text, minus the mean change for ``random_orders`` random token sets of the same size (the
  faithfulness evaluators' random-order baseline).
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from i2am.engine.joint_knockout import JointTokenKnockout
from i2am.engine.knockout import rank_keep_mask
from i2am.engine.maps import AttributionMaps
from i2am.measures.curves import spearman
from i2am.measures.stats import Paired, paired


def _change(output: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """[B, Lg] mean absolute change per generated token."""
    return (output.float() - base.float()).abs().mean(-1)


def cut_output(model, forward: Callable[[], torch.Tensor], rows: tuple[str, ...], keep: Callable, *,
               relation: str = "image:reference") -> torch.Tensor:
    """``forward()`` with the ``relation`` tokens that ``keep(grid)`` ([B, cells] bool) drops cut from ``rows``."""
    with torch.no_grad(), JointTokenKnockout(model, relation, rows=rows) as knockout:
        knockout.set_keep(keep)
        return forward()


def route_check(model, forward: Callable[[], torch.Tensor], maps: AttributionMaps, *,
                relation: str = "image:reference", routes=("twohop", "rollout"), fraction: float = 0.1,
                random_orders: int = 5, seed: int = 0) -> dict[str, Paired]:
    """The paired measures of the module docstring for the samples of ``maps`` (captured on the same ``forward``)."""
    with torch.no_grad():
        base = forward()
    batch = base.shape[0]

    def none(grid):
        return torch.zeros(batch, grid[0] * grid[1], dtype=torch.bool)

    via_text = _change(cut_output(model, forward, ("text",), none, relation=relation), base)
    via_image = _change(cut_output(model, forward, ("generated",), none, relation=relation), base)
    results = {"route_cut": paired(via_text.mean(1).tolist(), via_image.mean(1).tolist(), alternative="two-sided")}

    def rho(route_maps) -> list[float]:
        return [spearman(route_maps.r2g.ulam[i].flatten(), via_text[i]) for i in range(batch)]

    direct = maps.relation(f"share:{relation}")
    direct_rho = rho(direct)
    generator = torch.Generator().manual_seed(seed)
    random_change = 0
    for _ in range(random_orders):
        scores = torch.rand(direct.g2r.ulam.shape, generator=generator)
        random_change = random_change + _change(
            cut_output(model, forward, ("text",), lambda grid, s=scores: rank_keep_mask(s, grid, fraction, False),
                       relation=relation), base).mean(1) / random_orders
    for route in routes:
        route_maps = maps.relation(f"{route}:{relation}")
        results[f"where_{route}"] = paired(rho(route_maps), direct_rho)
        top = route_maps.g2r.ulam
        top_change = _change(cut_output(model, forward, ("text",),
                                        lambda grid, s=top: rank_keep_mask(s, grid, fraction, False),
                                        relation=relation), base).mean(1)
        results[f"which_{route}"] = paired(top_change.tolist(), random_change.tolist())
    return results
