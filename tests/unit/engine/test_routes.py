"""Indirect routes (i2am.engine.routes) in the joint attention: the chunked two-hop and rollout scores against the
full float64 [L, L] matrices, and the constructed text-routing transformer's known answer (the two-hop map finds the
planted reference cells, the direct map cannot; cutting reference -> text changes the output, reference -> image not).
"""
from __future__ import annotations

import contextlib

import pytest
import torch

from i2am.adapters.text_routing import (
    GRID,
    TextRouting,
    build_text_routing,
    generated_output,
    planted_patches,
    routing_inputs,
)
from i2am.engine import CaptureConfig
from i2am.engine.hooks import Hooks
from i2am.engine.joint import JointAttentionCapture, find_blocks, intercept_blocks
from i2am.engine.joint_knockout import JointTokenKnockout
from i2am.engine.kernel_stats import KERNEL_LSE, RECOMPUTED
from i2am.engine.routes import route_share

SAMPLES = 3
LG = GRID[0] * GRID[1]
REF = "image:reference"


class _Recorder:
    """The float64 q, k (and mask) every block's attention backend receives, in call order."""

    def __init__(self):
        self._current, self.calls = None, []

    def seen(self, query, key, args, kwargs, heads_first):
        if self._current is not None:
            if not heads_first:
                query, key = query.transpose(1, 2), key.transpose(1, 2)
            self.calls.append((query.double(), key.double(), kwargs.get("attn_mask", args[0] if args else None)))
            self._current = None
        return args, kwargs


def _naive(calls, text, gen, ref):
    """Per block, full [L, L] probabilities -> (two-hop, rollout) [B, heads, Lg, Lr] by the definitions."""
    out, rollout = [], None
    for q, k, mask in calls:
        logits = q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5
        if mask is not None:
            logits = logits.masked_fill(~mask, float("-inf"))
        a = logits.softmax(-1)
        eye = torch.eye(a.shape[-1], dtype=a.dtype)
        rollout = eye.expand_as(a[:, 0]) if rollout is None else rollout
        per_head = (0.5 * a + 0.5 * eye) @ rollout[:, None]
        two_hop = a[:, :, gen, text] @ a[:, :, text, ref]
        out.append((two_hop, per_head[:, :, gen, ref]))
        rollout = per_head.mean(1)
    return out


def _run(model, inputs, context, region=None):
    """A route capture (small chunks) of one call with ``context()`` entered inside it, and the recorded q/k."""
    blocks = [b.name for b in find_blocks(model)]
    capture = JointAttentionCapture(model, CaptureConfig(num_steps=1, chunk_budget=3000, one_pass_budget=3000,
                                                         sram_layers=[blocks[1]]),
                                    normalisations=("share",), routes=("twohop", "rollout"))
    capture.set_region_mask(region)
    recorder, hooks = _Recorder(), Hooks("test")
    # interceptions entered first see the masks of those entered inside them
    hooks.activate(lambda h: intercept_blocks(h, recorder, find_blocks(model), recorder.seen))
    try:
        with torch.no_grad(), capture, context():
            output = generated_output(model, inputs)
    finally:
        hooks.restore()
    return dict(model=model, inputs=inputs, maps=capture.maps(), calls=recorder.calls, blocks=blocks, output=output,
                layout=capture.layout)


@pytest.fixture(scope="module")
def routed():
    """The constructed model under its masks."""
    model, inputs, planted = build_text_routing(), routing_inputs(SAMPLES), planted_patches(SAMPLES)
    return {**_run(model, inputs, lambda: TextRouting(model, planted)), "planted": planted}


@pytest.fixture(scope="module", params=["masked", "unmasked"])
def any_mask(request, routed):
    """The masked run and an unmasked one of the same model (no attention mask reaches the backend)."""
    if request.param == "masked":
        return routed
    return _run(routed["model"], routed["inputs"], contextlib.nullcontext)


def test_chunked_routes_match_the_full_matrices(any_mask):
    routed = any_mask
    maps, layout = routed["maps"], routed["layout"]
    text, gen, ref = (slice(s.start, s.stop) for s in layout.segments)
    assert [s.kind for s in layout.segments] == ["text", "generated", "reference"]
    for block, (two_hop, rollout) in zip(routed["blocks"], _naive(routed["calls"], text, gen, ref), strict=True):
        for route, expected in (("twohop", two_hop), ("rollout", rollout)):
            r2g = maps.raw[f"r2g/{route}:{REF}/{block}"][:, 0].flatten(-2)
            g2r = maps.raw[f"g2r/{route}:{REF}/{block}"][:, 0].flatten(-2) * LG   # maps() stores the mean over Lg
            # float32 chunked softmax vs float64: a few ulps of values up to 1
            torch.testing.assert_close(r2g.double(), expected.sum(-1), rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(g2r.double(), expected.sum(-2), rtol=1e-5, atol=1e-6)
    two_hop, rollout = _naive(routed["calls"], text, gen, ref)[1]
    sram = routed["maps"].raw[f"sram/twohop:{REF}/{routed['blocks'][1]}"]
    torch.testing.assert_close(sram.double(), two_hop.mean(1), rtol=1e-5, atol=1e-7)
    sram = routed["maps"].raw[f"sram/rollout:{REF}/{routed['blocks'][1]}"]
    torch.testing.assert_close(sram.double(), rollout.mean(1), rtol=1e-5, atol=1e-7)


def test_route_g2r_sums_over_the_region_mask_only(routed):
    region = (torch.rand(SAMPLES, 1, *GRID, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    run = _run(routed["model"], routed["inputs"], contextlib.nullcontext, region=region)
    text, gen, ref = (slice(s.start, s.stop) for s in run["layout"].segments)
    weight = region.flatten(1)[:, None, :, None].double()
    for block, routes in zip(run["blocks"], _naive(run["calls"], text, gen, ref), strict=True):
        for route, expected in zip(("twohop", "rollout"), routes, strict=True):
            g2r = run["maps"].raw[f"g2r/{route}:{REF}/{block}"][:, 0].flatten(-2) * LG
            torch.testing.assert_close(g2r.double(), (weight * expected).sum(-2), rtol=1e-5, atol=1e-6)


def test_routes_of_two_references_match_the_full_matrices(routed):
    inputs = dict(routed["inputs"])
    second = inputs["img_ids"][LG:].clone()
    second[:, 0] = 2                                   # a second reference run, as FLUX.2 numbers them
    inputs["img_ids"] = torch.cat([inputs["img_ids"], second])
    inputs["hidden_states"] = torch.cat([inputs["hidden_states"], inputs["hidden_states"][:, LG:].flip(1)], dim=1)
    run = _run(routed["model"], inputs, contextlib.nullcontext)
    segments = run["layout"].segments
    assert [s.relation for s in segments] == ["text", "generated", REF, f"{REF}.1"]
    text, gen = slice(segments[0].start, segments[0].stop), slice(segments[1].start, segments[1].stop)
    both = slice(segments[2].start, segments[3].stop)
    for block, routes in zip(run["blocks"], _naive(run["calls"], text, gen, both), strict=True):
        for route, expected in zip(("twohop", "rollout"), routes, strict=True):
            for index, relation in enumerate((REF, f"{REF}.1")):
                part = expected[..., index * LG:(index + 1) * LG]
                r2g = run["maps"].raw[f"r2g/{route}:{relation}/{block}"][:, 0].flatten(-2)
                g2r = run["maps"].raw[f"g2r/{route}:{relation}/{block}"][:, 0].flatten(-2) * LG
                torch.testing.assert_close(r2g.double(), part.sum(-1), rtol=1e-5, atol=1e-6)
                torch.testing.assert_close(g2r.double(), part.sum(-2), rtol=1e-5, atol=1e-6)


def test_two_hop_map_finds_the_planted_cells_the_direct_map_cannot(routed):
    maps, planted = routed["maps"], routed["planted"]
    direct = maps.relation(f"share:{REF}").g2r.ulam.flatten(1)
    two_hop = maps.relation(f"twohop:{REF}").g2r.ulam.flatten(1)
    rollout = maps.relation(f"rollout:{REF}").g2r.ulam.flatten(1)
    assert bool((direct == 0).all())                      # generated queries never see reference keys
    assert bool((two_hop[~planted] == 0).all()) and bool((two_hop[planted] > 0).all())
    assert bool(planted.gather(1, rollout.argmax(1, keepdim=True)).all())
    torch.testing.assert_close(route_share(maps), torch.ones(SAMPLES))
    for family in ("tlam", "hlam", "llam"):              # every family is defined on the route relations
        assert getattr(maps.relation(f"twohop:{REF}").r2g, family) is not None


def test_knockout_rows_cut_one_route_at_a_time(routed):
    model, inputs, planted = routed["model"], routed["inputs"], routed["planted"]
    changes = {}
    with torch.no_grad(), TextRouting(model, planted):
        for rows in ("text", "generated"):
            with JointTokenKnockout(model, rows=(rows,)) as knockout:
                knockout.set_keep(lambda grid: torch.zeros_like(planted))
                changes[rows] = (generated_output(model, inputs) - routed["output"]).abs().amax()
    assert changes["generated"] == 0                      # that route is cut already: the same mask, the same call
    assert changes["text"] > 1e-5                         # the only route the reference has


def test_routes_need_text_and_reference_tokens():
    model = build_text_routing()
    inputs = routing_inputs(1)
    inputs["hidden_states"] = inputs["hidden_states"][:, :LG]
    inputs["img_ids"] = inputs["img_ids"][:LG]
    with pytest.raises(ValueError, match="routes"), JointAttentionCapture(model, CaptureConfig(num_steps=1),
                                                                         routes=("twohop",)):
        generated_output(model, inputs)
    with pytest.raises(ValueError, match="choose one or more"):
        JointTokenKnockout(model, rows=("image",))


@pytest.mark.parametrize("chunk_budget", [2**26, 3000])
def test_routes_from_the_kernels_log_sum_exp_equal_the_recomputed(chunk_budget):
    """Routes and both normalisations normalised by the attention kernel's log-sum-exp (only the blocks a route
    reads are formed) against the recomputed softmaxes: equal maps (rtol 1e-5: fp32 sums in different orders), the
    model's output bit for bit, the path reported; one chunk and many."""
    model, inputs = build_text_routing(), routing_inputs(SAMPLES)
    sram = [find_blocks(model)[1].name]
    with torch.no_grad():
        plain = generated_output(model, inputs)
    maps, paths = {}, {}
    for kernel in (True, False):
        cfg = CaptureConfig(num_steps=1, chunk_budget=chunk_budget, one_pass_budget=chunk_budget, kernel_stats=kernel,
                            sram_layers=sram)
        capture = JointAttentionCapture(model, cfg, routes=("twohop", "rollout"))
        with torch.no_grad(), capture:
            assert torch.equal(generated_output(model, inputs), plain)
        maps[kernel], paths[kernel] = capture.maps(), capture.stats_path
    assert paths == {True: KERNEL_LSE, False: RECOMPUTED}
    assert set(maps[True].raw) == set(maps[False].raw)
    assert {key.split("/")[1].split(":")[0] for key in maps[True].raw} >= {"twohop", "rollout", "share", "image"}
    for key, value in maps[False].raw.items():
        torch.testing.assert_close(maps[True].raw[key], value, rtol=1e-5, atol=1e-7, msg=key)
