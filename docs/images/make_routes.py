"""How routes_constructed.png and routes_toy_kontext.png of docs/dit_editors.md ("Indirect routes") and the causal-check
figures printed there were made: the routes (``JointAttentionCapture(routes=...)``) of one transformer call and their
causal check (``i2am.evaluation.routes_check``) on the constructed text-routing transformer and on the shipped toy
Kontext model, n samples each.

    python docs/images/make_routes.py docs/images --pairs 12 --data /tmp/routes_data

Prints the figures as JSON; writes the two PNGs into the given folder (CPU, about a minute).
"""
from __future__ import annotations

import argparse
import json
from contextlib import nullcontext

import torch

from i2am.adapters import text_routing
from i2am.adapters.toy_kontext import TOKEN_GRID, velocity
from i2am.data import schema
from i2am.engine import CaptureConfig
from i2am.engine.joint import JointAttentionCapture
from i2am.engine.routes import route_share
from i2am.evaluation.routes_check import route_check
from i2am.measures.curves import topk_overlap
from i2am.pretrained import TOY_KONTEXT
from i2am.training.toy_kontext_check import load_toy_kontext
from i2am.training.toy_kontext_train import load_toy_pairs, toy_dataset
from i2am.viz.plot import draw_maps, save_figures

REF = "image:reference"
ROUTES = ("share", "twohop", "rollout")
LABELS = {"share": "direct (share)", "twohop": "two-hop via text", "rollout": "rollout"}


def text(result) -> str:
    """A Paired result with three significant digits (the constructed model's output changes are ~1e-4)."""
    interval = "no interval" if result.lo is None else f"[{result.lo:+.3g}, {result.hi:+.3g}]"
    return f"n = {result.n}, effect {result.effect:+.3g} {interval}, {result.test} p = {result.p:.3g}"


def capture_routes(model, forward, context=nullcontext):
    """The share and route maps of one ``forward()`` call (``context()`` entered inside the capture)."""
    capture = JointAttentionCapture(model, CaptureConfig(num_steps=1, time_groups=1), normalisations=("share",),
                                    routes=("twohop", "rollout"))
    with torch.no_grad(), capture, context():
        forward()
    return capture.maps()


def g2r_maps(maps, sample: int) -> torch.Tensor:
    """[3, h, w] per-step G2R distributions of the direct, two-hop and rollout relations for one sample."""
    return torch.stack([maps.relation(f"{route}:{REF}").g2r.distribution("ulam")[sample] for route in ROUTES])


def constructed(count: int) -> tuple[dict, object]:
    model = text_routing.build_text_routing()
    inputs = text_routing.routing_inputs(count)
    planted = text_routing.planted_patches(count)

    def routed():
        return text_routing.TextRouting(model, planted)

    def forward():
        return text_routing.generated_output(model, inputs)

    maps = capture_routes(model, forward, routed)
    with routed():
        check = route_check(model, forward, maps, fraction=4 / planted.shape[1])
    found = {route: [topk_overlap(maps.relation(f"{route}:{REF}").g2r.ulam[i], planted[i].float(), 4 / 36)
                     for i in range(count)] for route in ROUTES}
    figures = {"n": count, "route_share_min": float(route_share(maps).min()),
               "planted_found_top4": {r: sum(v) / count for r, v in found.items()},
               **{k: text(v) for k, v in check.items()}}
    stack = torch.cat([planted[:1].float().reshape(1, *text_routing.GRID), g2r_maps(maps, 0)])
    figure = draw_maps(stack, ["planted cells", *(LABELS[r] for r in ROUTES)], normalize="minmax",
                       title="constructed text-routing transformer: G2R on the reference grid")
    return figures, figure


def toy_kontext(count: int, data_dir: str) -> tuple[dict, object]:
    model = load_toy_kontext(TOY_KONTEXT).eval()
    pairs = load_toy_pairs(data_dir, "test", limit=count, world={"n_train": 4, "n_test": count, "seed": 0})
    generator = torch.Generator().manual_seed(0)
    s = torch.full((count,), 0.5)
    x_s = 0.5 * pairs.x0 + 0.5 * torch.randn(pairs.x0.shape, generator=generator)

    def forward():
        return velocity(model, x_s, pairs, s)

    maps = capture_routes(model, forward)
    check = route_check(model, forward, maps)
    share = route_share(maps)
    figures = {"n": count, "route_share_mean": float(share.mean()), "route_share_min": float(share.min()),
               "route_share_max": float(share.max()), **{k: text(v) for k, v in check.items()}}
    reference = toy_dataset(data_dir, "test", world={"n_train": 4, "n_test": count, "seed": 0})[0][schema.REFERENCE]
    figure = draw_maps(g2r_maps(maps, 0), [LABELS[r] for r in ROUTES], reference, normalize="minmax",
                       title=f"toy Kontext (s = 0.5): G2R on the {TOKEN_GRID[0]}x{TOKEN_GRID[1]} reference grid")
    return figures, figure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--pairs", type=int, default=12)
    parser.add_argument("--data", default="/tmp/routes_data")
    args = parser.parse_args()
    built, built_figure = constructed(args.pairs)
    toy, toy_figure = toy_kontext(args.pairs, args.data)
    save_figures({"routes_constructed": built_figure, "routes_toy_kontext": toy_figure}, args.out)
    print(json.dumps({"constructed": built, "toy_kontext": toy}, indent=2))


if __name__ == "__main__":
    main()
