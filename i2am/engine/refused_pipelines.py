"""Pipelines ``i2am.trace`` refuses by class, with the reason: their reference reaches the generation through a path
no capture of i2am reads yet. ``i2am.trace`` raises the reason; the coverage table (docs/pipeline_coverage.md)
prints the same text."""
from __future__ import annotations

LTX2_REFERENCE = ("video: the reference is no separate conditioning: its latent replaces the first latent frame of "
                  "the video tokens (kept clean by the conditioning mask, which zeroes that frame's timestep) and "
                  "reaches the other frames through the video stream's self-attention (attn1), beside the audio "
                  "stream; i2am captures no self-attention from later frames to the first yet")
REFUSED_PIPELINES = {"LTX2ImageToVideoPipeline": LTX2_REFERENCE}


def refuse_untraceable(pipe) -> None:
    """Raise ``REFUSED_PIPELINES``' reason for ``pipe``'s class, if it has one."""
    name = type(pipe).__name__
    if name in REFUSED_PIPELINES:
        raise ValueError(f"i2am.trace: {name} is not traced ({REFUSED_PIPELINES[name]}); "
                         f"docs/pipeline_coverage.md lists the pipelines i2am.trace supports")
