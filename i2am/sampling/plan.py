"""The sampling plan of a run: steps, guidance (per step), CFG batch layout and time groups, resolved once.

``SamplingPlan.resolve(sampler, adapter)`` fills the sampler's unset settings from the adapter's defaults; the run
then hands the plan to both sides of the capture: ``plan.pin(sampler)`` is the sampler the loop runs (its settings
are the plan's), and ``plan.capture_config(template)`` is the capture's step count, time groups and per-step CFG
layout. Guidance may change from step to step (a list, one value per step); the CFG layout of step s follows the
guidance of step s. See docs/method.md ("Sampling and CFG").
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, replace

from i2am.engine import CaptureConfig
from i2am.engine.cfg_rows import layout_for, uses_cfg
from i2am.engine.config import DEFAULT_TIME_GROUPS
from i2am.errors import UserError

__all__ = ["PlanError", "SamplingPlan", "guidance_at", "uses_cfg"]


class PlanError(UserError, ValueError):
    """Sampler and capture settings that cannot make one run (e.g. more time groups than steps)."""


def guidance_at(guidance, step: int):
    """The guidance of one step: ``guidance`` is a number, None, or a per-step sequence."""
    if isinstance(guidance, Sequence) and not isinstance(guidance, str):
        return guidance[step]
    return guidance


@dataclass(frozen=True)
class SamplingPlan:
    scheduler: str
    num_steps: int
    guidance: tuple            # one value (float or None) per step
    eta: float
    start_code: str
    cfg_order: str             # the adapter's batch order when CFG is on: "uncond_cond" | "cond_uncond"
    time_groups: int
    paste: bool = False        # the custom DDIM's re-noised paste outside the generation mask

    def __post_init__(self):
        if self.num_steps < 1:
            raise PlanError(f"sampler.num_steps={self.num_steps} is out of range: it must be an integer >= 1, e.g. "
                            f"sampler.num_steps=50")
        if len(self.guidance) != self.num_steps:
            raise ValueError(f"sampler.guidance has {len(self.guidance)} values for {self.num_steps} steps; give one "
                             f"number or one value per step")
        if not 1 <= self.time_groups <= self.num_steps:
            raise ValueError(f"time_groups={self.time_groups} must be in [1, num_steps={self.num_steps}]")

    @classmethod
    def resolve(cls, sampler, adapter, time_groups: int | None = None) -> SamplingPlan:
        """The plan of ``sampler`` on ``adapter`` (``Sampler.settings`` with the adapter's defaults filled in);
        ``time_groups`` None is ``min(5, steps)``, a number above the steps is an error naming the keys."""
        s = sampler.settings(adapter)
        steps = int(s["num_steps"])
        if time_groups is None:
            time_groups = min(DEFAULT_TIME_GROUPS, steps)
        elif time_groups > steps >= 1:
            raise PlanError(f"capture.time_groups={time_groups} is more than the {steps} denoising steps of this run "
                            f"(sampler.num_steps, here the model's default): set capture.time_groups to at most "
                            f"{steps}, or to null for min(5, steps).")
        guidance = s["guidance"]
        per_step = tuple(guidance) if isinstance(guidance, Sequence) and not isinstance(guidance, str) \
            else (guidance,) * steps
        return cls(scheduler=s["scheduler"], num_steps=steps, guidance=per_step, eta=s["eta"],
                   start_code=s["start_code"], cfg_order=adapter.cfg_order,
                   time_groups=int(time_groups), paste=bool(s.get("paste", False)))

    def config_values(self) -> dict:
        """The plan as config keys (dotted), for the run's saved config: what ran, not the nulls that chose it."""
        return {"sampler.scheduler": self.scheduler, "sampler.num_steps": self.num_steps,
                "sampler.guidance": self.sampler_guidance, "sampler.eta": self.eta,
                "sampler.start_code": self.start_code, "sampler.paste": self.paste,
                "capture.num_steps": self.num_steps, "capture.time_groups": self.time_groups}

    def layout_at(self, step: int) -> str:
        return layout_for(self.cfg_order, self.guidance[step])

    @property
    def cfg_layouts(self) -> tuple[str, ...]:
        return tuple(self.layout_at(s) for s in range(self.num_steps))

    @property
    def sampler_guidance(self):
        """The guidance as a sampler setting: one number when it is constant, else the per-step list."""
        return self.guidance[0] if len(set(self.guidance)) == 1 else list(self.guidance)

    def pin(self, sampler):
        """A copy of ``sampler`` whose every setting is the plan's (so its loop cannot differ from the capture)."""
        pinned = copy.copy(sampler)
        pinned.scheduler, pinned.num_steps, pinned.guidance = self.scheduler, self.num_steps, self.sampler_guidance
        pinned.eta, pinned.start_code, pinned.paste = self.eta, self.start_code, self.paste
        return pinned

    def capture_config(self, template: CaptureConfig) -> CaptureConfig:
        """``template`` with the plan's step count and time groups, and (unless the template names a layout) the
        plan's CFG layout: one string, or one entry per step when the guidance changes during the run."""
        layout = template.cfg_layout
        if layout == "auto":
            layouts = self.cfg_layouts
            layout = layouts[0] if len(set(layouts)) == 1 else layouts
        return replace(template, num_steps=self.num_steps, time_groups=self.time_groups,
                       cfg_layout=layout)
