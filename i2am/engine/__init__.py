"""The attribution engine: scores (pure maths) -> capture (processors, accumulators) -> maps (families, SRAM)
-> render (official / clean post-processing)."""
from i2am.engine.capture import AttributionCapture
from i2am.engine.config import CaptureConfig
from i2am.engine.layers import LayerSpec, SupportsAttribution, discover_cross_attention
from i2am.engine.maps import AttributionMaps, DirectionMaps

__all__ = [
           "AttributionCapture",
           "AttributionMaps",
           "CaptureConfig",
           "DirectionMaps",
           "LayerSpec",
           "SupportsAttribution",
           "discover_cross_attention",
]
