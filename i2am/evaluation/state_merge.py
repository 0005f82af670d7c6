"""A run's dataset values from its per-sample evaluator states (``metrics/<id>.states.pt``, read through ``RunDir``).

Each evaluator ``merge``s every finished sample's state in sorted sample-id order, then ``compute``s: the same numbers
for one process, N processes and a killed-and-restarted run, because nothing is accumulated in memory.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping

from i2am.evaluation.evaluator import Evaluator
from i2am.runs import RunDir


def merge_run_states(run: RunDir, evaluators: Mapping[str, Evaluator]) -> dict:
    """Dataset values of ``run``: each evaluator's merge of every finished sample's state, then its ``compute``;
    with ``n_samples``. The evaluators are reset before and after."""
    states = list(run.done_states())
    metrics: dict = {"n_samples": len(states)}
    for name, evaluator in evaluators.items():
        evaluator.reset()
        for state in states:
            if name in state:
                evaluator.merge(state[name])
        if states:
            with warnings.catch_warnings():   # merged states count as no update() call for torchmetrics
                warnings.filterwarnings("ignore", message=".*compute.*before the ``update``")
                metrics.update({k: float(v) for k, v in evaluator.compute().items()})
        evaluator.reset()
    return metrics
