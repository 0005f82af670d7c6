"""Pipelines ``i2am.trace`` refuses by class, with the reason: their reference reaches the generation through a path
no capture of i2am reads yet. ``i2am.trace`` raises the reason; the coverage table (docs/pipeline_coverage.md)
prints the same text."""
from __future__ import annotations

HUNYUAN_VIDEO15_REFERENCE = ("video: the reference's SigLIP tokens lead the joint-attention context (keys right after "
                             "the video tokens), but the byT5 and text tokens follow at per-sample positions (each "
                             "sample's valid tokens packed first, padding after, masked out of keys and queries); "
                             "i2am's joint-attention capture (i2am.engine.joint) has no layout reader for "
                             "HunyuanVideo15Transformer3DModel nor its attention processor, and gives image maps "
                             "without the latent-frame axis video maps need; its VAE latent enters through the input "
                             "channels, which no map sees")

REFUSED_PIPELINES = {"HunyuanVideo15ImageToVideoPipeline": HUNYUAN_VIDEO15_REFERENCE}


def refuse_untraceable(pipe) -> None:
    """Raise ``REFUSED_PIPELINES``' reason for ``pipe``'s class, if it has one."""
    name = type(pipe).__name__
    if name in REFUSED_PIPELINES:
        raise ValueError(f"i2am.trace: {name} is not traced ({REFUSED_PIPELINES[name]}); "
                         f"docs/pipeline_coverage.md lists the pipelines i2am.trace supports")
