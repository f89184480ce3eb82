"""Segmentation in NumPy and SciPy (no Keras): per-class Dice, IoU and HD95 with MONAI's
conventions (:mod:`senet.segmentation.metrics`) and sliding-window inference over volumes
larger than a model's input (:mod:`senet.segmentation.sliding`), and the colours of masks."""

from senet.segmentation.colours import PALETTE, colour_labels
from senet.segmentation.metrics import aggregate, case_metrics, hd95, segmentation_metrics
from senet.segmentation.sliding import (
    gaussian_importance,
    sliding_window_inference,
    window_starts,
)

__all__ = [
    "PALETTE",
    "colour_labels",
    "aggregate",
    "case_metrics",
    "gaussian_importance",
    "hd95",
    "segmentation_metrics",
    "sliding_window_inference",
    "window_starts",
]
