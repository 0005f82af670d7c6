"""The faithfulness and randomisation checks re-run the model through the run's sampler
(``sampler(adapter, inputs)``, with the noise fixed by the sample id). That reproduces the attributed run only for
adapters whose sampling *is* that loop; an adapter with its own loop is refused with the reason, rather than
compared against a trajectory it never took (docs/faithfulness.md, "Models")."""
from __future__ import annotations

# the start codes the sampler's own loop implements (i2am.models.sampler.START_CODES; metrics cannot import models)
SAMPLER_START_CODES = ("noise", "q_sample")


def require_sampler_loop(adapter, sampler, check: str) -> None:
    """Raise when ``adapter`` samples with a start code the sampler's loop does not implement (e.g. PASD)."""
    start = sampler.settings(adapter).get("start_code", "noise")
    if start in SAMPLER_START_CODES:
        return
    raise ValueError(
        f"{check}: {type(adapter).__name__} samples with its own loop (start_code={start!r}; PASD starts from a "
        f"re-noised VAE sample of the LR image and colour-fixes the decoded output), which the check's re-runs "
        f"through the sampler ({type(sampler).__name__}, start codes {SAMPLER_START_CODES}) do not reproduce: the "
        f"perturbed runs would be compared with a trajectory the attributed run never took. This model is not "
        f"supported by the faithfulness and randomisation checks (its PACA layers do support TokenKnockout); see "
        f"docs/faithfulness.md")
