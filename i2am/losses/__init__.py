"""Attention losses of the paper's custom try-on model (docs/method.md §6.3-§6.4), collapse guards and the toy control.

Plain torch functions, no Lightning and no model code.
"""

from i2am.losses.combined import attention_losses
from i2am.losses.correspondence import correspondence_ce_loss, correspondence_targets
from i2am.losses.geometry import attention_centroids, head_average, query_mask
from i2am.losses.guards import (
    attention_diagnostics,
    cwg_is_active,
    entropy_floor_loss,
    masked_mean,
    query_entropy,
)
from i2am.losses.paper import PAPER_QUERY_GRID, cwg_loss, dcml_loss, raster_pair_masks, tv_loss

__all__ = [
    "PAPER_QUERY_GRID",
    "attention_centroids",
    "attention_diagnostics",
    "attention_losses",
    "correspondence_ce_loss",
    "correspondence_targets",
    "cwg_is_active",
    "cwg_loss",
    "dcml_loss",
    "entropy_floor_loss",
    "head_average",
    "masked_mean",
    "query_entropy",
    "query_mask",
    "raster_pair_masks",
    "tv_loss",
]
