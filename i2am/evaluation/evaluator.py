"""The contract between the attribution loop and its evaluators.

Per sample the loop calls ``reset()``, ``update(ctx)`` and ``compute()`` (the sample's own values) and saves
``state()``; the dataset values are the ``merge(state)`` of every finished sample, in sorted sample-id order, then
``compute()``. So one process, N processes and a killed-and-restarted run end with the same numbers.

A new evaluator is one class deriving from :class:`Evaluator` and one YAML in ``conf/evaluator/`` naming it by
``_target_``; the loop knows none by name.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric


@dataclass(frozen=True)
class SampleContext:
    """Everything an evaluator may read about one finished sample."""

    sample_id: str
    sample: Mapping[str, Any]          # the batch restricted to this sample (batch dimension 1)
    maps: Any                          # the sample's i2am.engine.AttributionMaps
    rendered: Mapping[str, Tensor]     # "r2g" / "g2r": ULAMs at image resolution, rendered with the run's preset
    generated: Tensor                  # [1, 3, H, W] generated image in [-1, 1] (the decoder's range), on the CPU
    adapter: Any = None                # the model adapter, for evaluators that re-run the model
    sampler: Any = None                # the run's sampler (the same noise for the same sample id)
    sample_dir: Path | None = None     # a folder for this sample's own files (e.g. curves), created on demand
    dataset: Any = None                # the run's dataset (items by index), for evaluators that need another sample


class Evaluator(torch.nn.Module):
    """Base class: subclasses hold torchmetrics ``Metric`` children for their running state and implement
    ``update`` and ``compute``; reset, state and merge work on those children."""

    def update(self, ctx: SampleContext) -> None:
        raise NotImplementedError

    def compute(self) -> dict[str, float]:
        raise NotImplementedError

    def _metrics(self) -> dict[str, Metric]:
        return {name: m for name, m in self.named_modules() if isinstance(m, Metric)}

    def reset(self) -> None:
        for metric in self._metrics().values():
            metric.reset()

    def state(self) -> dict[str, dict[str, Any]]:
        """The running state of every Metric child, on the CPU (what a per-sample state file holds)."""
        def cpu(value):
            return [v.detach().cpu() for v in value] if isinstance(value, list) else value.detach().cpu()
        return {name: {k: cpu(v) for k, v in m.metric_state.items()} for name, m in self._metrics().items()}

    def merge(self, state: Mapping[str, Mapping[str, Any]]) -> None:
        metrics = self._metrics()
        for name, values in state.items():
            target = metrics[name]
            target.merge_state({k: [t.to(target.device) for t in v] if isinstance(v, list) else v.to(target.device)
                                for k, v in values.items()})

    def local_only(self) -> None:
        """No cross-rank sync in compute(): per-sample values are local and the dataset values are merged from
        the per-sample states on rank 0."""
        for metric in self._metrics().values():
            metric.sync_on_compute = False
            metric._to_sync = False
