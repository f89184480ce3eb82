"""Sliding-window inference: a model with a fixed input labels a volume (or image) of any
size, window by window, the windows' outputs blended with Gaussian weights.

The windows and weights are MONAI's ``sliding_window_inference`` (``mode="gaussian"``,
``sigma_scale=0.125``): windows of the model's input size, ``int(size * (1 - overlap))``
apart along each axis, the last one flush with the end; an input smaller than a window is
padded with zeros (half before, half after) and the output cut back. Memory is bounded
by the window, not the volume: the windows' outputs are added into one float32 sum and
one weight sum of the volume's size as they come, ``batch_size`` windows at a time; no
batch of every window is ever held.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np

from senet.checks import check_choice, check_number, check_positive, fail

__all__ = ["gaussian_importance", "sliding_window_inference", "window_starts"]


def gaussian_importance(patch_size: Sequence[int], sigma_scale: float = 0.125) -> np.ndarray:
    """The weight of each position of a window: a separable Gaussian with sigma
    ``sigma_scale * size`` per axis, 1 at the centre, clamped below at its smallest value
    (at least 1e-3), as MONAI's ``compute_importance_map``.

    >>> gaussian_importance((5,)).round(3).tolist()
    [0.001, 0.001, 1.0, 0.001, 0.001]
    """
    weights = np.ones((), np.float32)
    for size in patch_size:
        x = np.arange(-(size - 1) / 2.0, (size - 1) / 2.0 + 1, dtype=np.float32)
        gauss = np.exp(x**2 / np.float32(-2 * (size * sigma_scale) ** 2)).astype(np.float32)
        weights = weights[..., None] * gauss
    return np.maximum(weights, max(float(weights.min()), 1e-3)).astype(np.float32)


def window_starts(size: int, window: int, overlap: float) -> list[int]:
    """Where the windows along one axis start (MONAI's ``dense_patch_slices``), without
    repeats.

    >>> window_starts(10, 4, 0.5)
    [0, 2, 4, 6]
    """
    if window >= size:
        return [0]
    step = max(int(window * (1 - overlap)), 1)
    count = next(i for i in range(math.ceil(size / step)) if i * step + window >= size) + 1
    return sorted({min(i * step, size - window) for i in range(count)})


def sliding_window_inference(
    volume: np.ndarray,
    patch_size: Sequence[int],
    predict: Callable[[np.ndarray], np.ndarray],
    *,
    overlap: float = 0.25,
    mode: str = "gaussian",
    batch_size: int = 4,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Label one case window by window (module docstring).

    Args:
        volume: One case, channels last: ``(*spatial, C)`` (2-D or 3-D).
        patch_size: The window's spatial size (the model's input).
        predict: Takes a float32 batch ``(B, *patch_size, C)``, returns ``(B, *patch_size,
            K)`` (probabilities).
        overlap: Fraction of a window its neighbour overlaps, in ``[0, 1)``.
        mode: ``"gaussian"`` (centre of a window counts most) or ``"constant"``.
        batch_size: Windows per call of ``predict``.
        progress: Called with ``(windows done, windows in all)`` after every batch.

    Returns:
        float32 ``(*spatial, K)``: the weighted mean of the windows' outputs.
    """
    volume = np.asarray(volume, np.float32)
    patch = tuple(int(s) for s in patch_size)
    if volume.ndim != len(patch) + 1:
        raise fail("volume", f"one case (*spatial, C) with {len(patch)} spatial axes", volume.shape)
    for size in patch:
        check_positive("patch_size", size, integer=True)
    check_number("overlap", overlap, minimum=0, maximum=0.99)
    mode = check_choice("mode", mode, ("gaussian", "constant"))
    check_positive("batch_size", batch_size, integer=True)

    spatial = volume.shape[:-1]
    pads = [
        (max(p - s, 0) // 2, max(p - s, 0) - max(p - s, 0) // 2)
        for s, p in zip(spatial, patch, strict=True)
    ]
    if any(before or after for before, after in pads):
        volume = np.pad(volume, [*pads, (0, 0)])
    padded = volume.shape[:-1]
    weights = (gaussian_importance(patch) if mode == "gaussian" else np.ones(patch, np.float32))[
        ..., None
    ]
    starts = list(
        itertools.product(
            *(window_starts(s, p, overlap) for s, p in zip(padded, patch, strict=True))
        )
    )
    total = None
    count = np.zeros((*padded, 1), np.float32)
    for first in range(0, len(starts), batch_size):
        group = starts[first : first + batch_size]
        boxes = [
            tuple(slice(s, s + p) for s, p in zip(start, patch, strict=True)) for start in group
        ]
        outputs = np.asarray(predict(np.stack([volume[box] for box in boxes])), np.float32)
        if total is None:
            total = np.zeros((*padded, outputs.shape[-1]), np.float32)
        for box, output in zip(boxes, outputs, strict=True):
            total[box] += output * weights
            count[box] += weights
        if progress is not None:
            progress(min(first + batch_size, len(starts)), len(starts))
    crop = tuple(slice(before, before + s) for (before, _), s in zip(pads, spatial, strict=True))
    return (total / count)[crop]
