"""Does a heatmap point at the parts that matter? Energy inside part masks.

The energy-based pointing game (Wang et al., Score-CAM, CVPR-W 2020): the share of
a heatmap's total mass that falls inside the annotated region. A map spread evenly
over the image scores the region's area share, so ``area_fraction`` is the chance
level and ``ratio`` says how many times better than chance a model points.
:func:`image_blind_map` is the stronger baseline: where the parts are on average,
for every image alike.
"""

from __future__ import annotations

import numpy as np


def _as_masks(masks) -> np.ndarray:
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"`masks` must have shape (B, H, W), got masks with shape {masks.shape}")
    return masks.astype(bool)


def focus_score(heatmaps, masks) -> dict[str, float]:
    """How much of each heatmap's energy lies inside the mask, averaged over images.

    Args:
        heatmaps: Non-negative maps ``(B, H, W)``, or one map ``(H, W)`` used for
            every image (e.g. :func:`image_blind_map`).
        masks: Boolean part masks ``(B, H, W)``.

    Returns:
        ``{"energy_in_parts", "area_fraction", "ratio"}``: the mean over images of
        ``sum(heatmap * mask) / sum(heatmap)`` (an all-zero heatmap carries no
        location and counts at chance level, its mask's area share), the mean mask
        area share, and their quotient (NaN when the masks are empty).

    Example:
        >>> mask = np.zeros((1, 2, 2), bool); mask[0, 0, 0] = True
        >>> focus_score(np.array([[[3.0, 1.0], [0.0, 0.0]]]), mask)
        {'energy_in_parts': 0.75, 'area_fraction': 0.25, 'ratio': 3.0}
    """
    masks = _as_masks(masks)
    heatmaps = np.asarray(heatmaps, dtype=np.float64)
    if heatmaps.ndim == 2:
        heatmaps = np.broadcast_to(heatmaps, masks.shape)
    if heatmaps.shape != masks.shape:
        raise ValueError(
            f"`heatmaps` must have the masks' shape {masks.shape} (or {masks.shape[1:]}), "
            f"got heatmaps with shape {heatmaps.shape}"
        )
    if heatmaps.size and (np.isnan(heatmaps).any() or heatmaps.min() < 0):
        raise ValueError(
            "`heatmaps` must be non-negative and free of NaN (energies), "
            f"got values in [{np.nanmin(heatmaps)}, {np.nanmax(heatmaps)}]"
        )
    area = masks.mean(axis=(1, 2))
    total = heatmaps.sum(axis=(1, 2))
    inside = (heatmaps * masks).sum(axis=(1, 2))
    energy = np.where(total > 0, inside / np.where(total > 0, total, 1.0), area)
    energy_in_parts = float(energy.mean())
    area_fraction = float(area.mean())
    ratio = energy_in_parts / area_fraction if area_fraction > 0 else float("nan")
    return {"energy_in_parts": energy_in_parts, "area_fraction": area_fraction, "ratio": ratio}


def image_blind_map(train_masks) -> np.ndarray:
    """The mean part mask over a training set, ``(H, W)`` float32 in [0, 1].

    Used as the heatmap for every test image, it scores what knowing only where
    parts usually are (and nothing about the image) achieves.

    Example:
        >>> image_blind_map(np.array([[[1, 0]], [[1, 1]]], bool))
        array([[1. , 0.5]], dtype=float32)
    """
    masks = _as_masks(train_masks)
    if not len(masks):
        raise ValueError("`train_masks` must hold at least one mask, got 0 masks")
    return masks.mean(axis=0, dtype=np.float64).astype(np.float32)
