"""The attribution engine: scores (pure maths) -> capture (processors, accumulators) -> maps (families, SRAM)
-> render (official / clean post-processing)."""
from .capture import AttributionCapture
from .config import CaptureConfig
from .layers import LayerSpec, SupportsAttribution, discover_cross_attention
from .maps import AttributionMaps, DirectionMaps

__all__ = [
           "AttributionCapture",
           "AttributionMaps",
           "CaptureConfig",
           "DirectionMaps",
           "LayerSpec",
           "SupportsAttribution",
           "discover_cross_attention",
]
