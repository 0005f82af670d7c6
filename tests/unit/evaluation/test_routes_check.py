"""The causal check of the routes (i2am.evaluation.routes_check) on the constructed text-routing transformer, whose
answer is known: the reference reaches the output only through the text, from the planted cells."""
from __future__ import annotations

import torch

from i2am.adapters import text_routing
from i2am.engine import CaptureConfig
from i2am.engine.joint import JointAttentionCapture
from i2am.evaluation.routes_check import route_check

SAMPLES = 3


def test_route_check_finds_the_text_route_on_the_constructed_model():
    model = text_routing.build_text_routing()
    inputs, planted = text_routing.routing_inputs(SAMPLES), text_routing.planted_patches(SAMPLES)

    def forward():
        return text_routing.generated_output(model, inputs)

    capture = JointAttentionCapture(model, CaptureConfig(num_steps=1), normalisations=("share",),
                                    routes=("twohop",))
    with torch.no_grad(), capture, text_routing.TextRouting(model, planted):
        forward()
    with text_routing.TextRouting(model, planted):
        check = route_check(model, forward, capture.maps(), routes=("twohop",), fraction=4 / planted.shape[1],
                            random_orders=2)
    assert check["route_cut"].n == SAMPLES and check["route_cut"].lo is None   # no interval below n = 10
    assert check["route_cut"].effect > 0          # the reference -> image cut changes nothing here
    assert check["where_twohop"].effect > 0       # the direct map is zero: its Spearman is 0
    assert check["which_twohop"].effect > 0       # the top-4 two-hop cells are the planted ones
