"""Metrics on raw float tensors: IMACS, detection, generation quality, ground-truth localisation, correlation.

Plain torch / torchmetrics code: no Lightning, no model zoo (docs/method.md).
"""
from i2am.evaluation.imacs import IMACS, ImacsEvaluator, attribution_from_image_map, imacs

__all__ = ["IMACS", "ImacsEvaluator", "attribution_from_image_map", "imacs"]
