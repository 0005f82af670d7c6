"""The capture of a model: its own (``model.attribution_capture(cfg)``, e.g. the joint-attention capture of a
diffusion-transformer adapter) or ``AttributionCapture`` on its cross-attention layers."""
from __future__ import annotations

from i2am.engine.capture import AttributionCapture
from i2am.engine.config import CaptureConfig
from i2am.engine.contract import AttributionAdapter


def capture_for(model, cfg: CaptureConfig):
    """A capture context manager for ``model`` (an adapter or a bare UNet) recording ``cfg``."""
    return model.attribution_capture(cfg) if isinstance(model, AttributionAdapter) else AttributionCapture(model, cfg)
