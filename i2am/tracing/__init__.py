"""``i2am.trace(pipe)``: I2AM maps for any diffusers pipeline, UNet (``unet``), joint-attention transformer
(``joint``) or image-to-video transformer (``video``)."""
from __future__ import annotations

from i2am.engine import CaptureConfig
from i2am.tracing.joint import JointPipelineTrace
from i2am.tracing.ltx2 import LTX2_TRANSFORMERS, LTX2PipelineTrace
from i2am.tracing.unet import PipelineTrace, overlay_maps
from i2am.tracing.video import VIDEO_TRANSFORMERS, VideoPipelineTrace

__all__ = ["JointPipelineTrace", "LTX2PipelineTrace", "PipelineTrace", "VideoPipelineTrace", "overlay_maps", "trace"]

# video transformer class -> the trace that reads it
VIDEO_TRACES = {**dict.fromkeys(VIDEO_TRANSFORMERS, VideoPipelineTrace),
                **dict.fromkeys(LTX2_TRANSFORMERS, LTX2PipelineTrace)}


def trace(pipe, capture: CaptureConfig | None = None, *, num_steps: int | None = None, per_token: bool = False):
    """Trace the I2AM maps of ``pipe``'s calls inside a ``with`` block (see ``PipelineTrace``; pipelines whose
    denoiser is a diffusion transformer: ``i2am.tracing.joint.JointPipelineTrace``; image-to-video pipelines of a Wan
    transformer: ``i2am.tracing.video.VideoPipelineTrace``; LTX-2 image-to-video: ``i2am.tracing.ltx2``).

    per_token: also the R2G map of each IP-Adapter image token alone, as relations "image:ip_adapter[t]" (UNet
    pipelines)."""
    trace_class = VIDEO_TRACES.get(type(getattr(pipe, "transformer", None)).__name__)
    if trace_class is not None:
        if per_token:
            raise ValueError(f"trace(per_token=True) is for IP-Adapter tokens of UNet pipelines, not "
                             f"{type(pipe).__name__}")
        return trace_class(pipe, capture, num_steps=num_steps)
    if getattr(pipe, "unet", None) is None and getattr(pipe, "transformer", None) is not None:
        if per_token:
            raise ValueError(f"trace(per_token=True) is for IP-Adapter tokens of UNet pipelines, not "
                             f"{type(pipe).__name__}")
        return JointPipelineTrace(pipe, capture, num_steps=num_steps)
    return PipelineTrace(pipe, capture, num_steps=num_steps, per_token=per_token)
