"""Sliding-window inference: a model with a fixed input labels a volume (or image) of any
size, window by window, the windows' outputs blended by weights.

The windows and weights are MONAI's ``sliding_window_inference`` (same ``overlap``,
``mode`` and ``sigma_scale``, so the same output for the same predictor):

- windows of the model's input size, ``max(int(size * (1 - overlap)), 1)`` apart along
  each axis (``_get_scan_interval``), the last one flush with the end
  (``dense_patch_slices``); one window along an axis the window covers;
- an input smaller than a window along an axis is padded with zeros there (half before,
  the rest after) and the output cut back;
- ``mode="gaussian"``: each window's output weighted by :func:`gaussian_importance`
  (``compute_importance_map``); ``"constant"``: all weights 1; the output is the weighted
  sum of the windows' outputs over the sum of the weights, per voxel.

Memory is bounded by the window, not by the number of windows: the windows' outputs are
added into one float32 sum of the volume's size and one weight sum of its spatial size as
they come, ``batch_size`` windows at a time; no batch of every window is ever held.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np

from senet.checks import check_choice, check_number, check_positive, fail

__all__ = ["gaussian_importance", "sliding_window_inference", "window_starts"]


def gaussian_importance(patch_size: Sequence[int], sigma_scale: float = 0.125) -> np.ndarray:
    """The weight of each position of a window, as MONAI's ``compute_importance_map(mode=
    "gaussian")``: a separable Gaussian, ``exp(-x^2 / (2 sigma^2))`` along each axis with
    ``x`` the offset from the window's centre and ``sigma = sigma_scale * size``, 1 at the
    centre, clamped below at its smallest value or 1e-3, whichever is larger.

    Args:
        patch_size: The window's spatial size.
        sigma_scale: The Gaussian's sigma as a fraction of the window's size.

    Returns:
        float32 weights of shape ``patch_size``.

    >>> gaussian_importance((5,)).astype(float).round(3).tolist()
    [0.006, 0.278, 1.0, 0.278, 0.006]
    """
    patch = tuple(check_positive("patch_size", s, integer=True) for s in patch_size)
    check_positive("sigma_scale", sigma_scale)
    weights = np.ones((), np.float32)
    for size in patch:
        x = np.arange(-(size - 1) / 2.0, (size - 1) / 2.0 + 1, dtype=np.float32)
        gauss = np.exp(x**2 / np.float32(-2 * (size * sigma_scale) ** 2)).astype(np.float32)
        weights = weights[..., None] * gauss
    return np.maximum(weights, max(float(weights.min()), 1e-3)).astype(np.float32)


def window_starts(size: int, window: int, overlap: float) -> list[int]:
    """Where the windows along one axis of ``size`` start (MONAI's ``dense_patch_slices``).

    >>> window_starts(10, 4, 0.5)
    [0, 2, 4, 6]
    >>> window_starts(10, 4, 0.25)
    [0, 3, 6]
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
    num_outputs: int | None = None,
    sigma_scale: float = 0.125,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Label one case window by window (module docstring).

    Args:
        volume: One case, channels last: ``(*spatial, C)`` (2-D or 3-D).
        patch_size: The window's spatial size (the model's input), one int per axis.
        predict: Takes a float32 batch ``(B, *patch_size, C)`` with ``B <= batch_size``,
            returns ``(B, *patch_size, K)`` (probabilities, or any per-voxel outputs).
        overlap: Fraction of a window its neighbour overlaps, in ``[0, 1)``.
        mode: ``"gaussian"`` (a window's centre counts most) or ``"constant"``.
        batch_size: Windows per call of ``predict``.
        num_outputs: ``K``, checked against ``predict``'s output; None: taken from it.
        sigma_scale: The Gaussian's sigma as a fraction of the window (``"gaussian"``).
        progress: Called with ``(windows done, windows in all)`` after every batch.

    Returns:
        float32 ``(*spatial, K)``: the weighted mean of the windows' outputs.

    Raises:
        ValueError: A bad argument, or ``predict`` returning another shape.
    """
    volume = np.asarray(volume, np.float32)
    patch = tuple(check_positive("patch_size", s, integer=True) for s in patch_size)
    if volume.ndim != len(patch) + 1 or not patch:
        raise fail("volume", f"one case (*spatial, C) with {len(patch)} spatial axes", volume.shape)
    check_number("overlap", overlap, minimum=0, maximum=1)
    if overlap >= 1:
        raise fail("overlap", "a finite number >= 0 and < 1", overlap)
    mode = check_choice("mode", mode, ("gaussian", "constant"))
    batch_size = check_positive("batch_size", batch_size, integer=True)
    num_outputs = check_positive("num_outputs", num_outputs, integer=True, allow_none=True)

    spatial = volume.shape[:-1]
    pads = [
        (max(p - s, 0) // 2, max(p - s, 0) - max(p - s, 0) // 2)
        for s, p in zip(spatial, patch, strict=True)
    ]
    if any(before or after for before, after in pads):
        volume = np.pad(volume, [*pads, (0, 0)])
    padded = volume.shape[:-1]
    if mode == "gaussian":
        weights = gaussian_importance(patch, sigma_scale)[..., None]
    else:
        weights = np.ones((*patch, 1), np.float32)
    starts = list(
        itertools.product(
            *(window_starts(s, p, overlap) for s, p in zip(padded, patch, strict=True))
        )
    )

    total = None if num_outputs is None else np.zeros((*padded, num_outputs), np.float32)
    count = np.zeros((*padded, 1), np.float32)
    for first in range(0, len(starts), batch_size):
        boxes = [
            tuple(slice(s, s + p) for s, p in zip(start, patch, strict=True))
            for start in starts[first : first + batch_size]
        ]
        outputs = np.asarray(predict(np.stack([volume[box] for box in boxes])), np.float32)
        if total is None:
            total = np.zeros((*padded, outputs.shape[-1] if outputs.ndim else 0), np.float32)
        expected = (len(boxes), *patch, total.shape[-1])
        if outputs.shape != expected or not expected[-1]:
            raise fail("predict", f"a function returning a batch {expected}", outputs.shape)
        for box, output in zip(boxes, outputs, strict=True):
            total[box] += output * weights
            count[box] += weights
        if progress is not None:
            progress(first + len(boxes), len(starts))
    np.divide(total, count, out=total)
    if padded == spatial:
        return total
    crop = tuple(slice(before, before + s) for (before, _), s in zip(pads, spatial, strict=True))
    return np.ascontiguousarray(total[crop])
