"""Segmentation metrics per case and class, with MONAI's conventions, in NumPy and SciPy.

Per case and class ``k`` (``P``, ``T``: the predicted and true masks of ``k``):

- Dice ``2 |P & T| / (|P| + |T|)`` and IoU ``|P & T| / |P | T|``; NaN when ``T`` is empty,
  whatever ``P`` is (MONAI's ``DiceMetric`` and ``MeanIoU`` with their default
  ``ignore_empty=True``: a class absent from the case says nothing about it, and the mean
  over cases leaves it out).
- HD95: the 95th percentile Hausdorff distance between the surfaces, as MONAI's
  ``HausdorffDistanceMetric(percentile=95)`` computes it (``get_mask_edges`` and
  ``get_surface_distance``, ``distance_metric="euclidean"``): a surface is the mask minus
  its binary erosion (SciPy's default cross, nothing outside the image, so a mask touching
  the border has a surface there); for every surface voxel of one mask, the Euclidean
  distance (in physical units with ``spacing``) to the nearest surface voxel of the other
  (``scipy.ndimage.distance_transform_edt`` with ``sampling=spacing``: exact); the larger
  of the two directions' 95th percentiles (linear interpolation, ``torch.quantile``'s and
  ``np.percentile``'s default).
- HD95 when ``P`` or ``T`` is empty: NaN. MONAI 1.6 gives every surface voxel of the other
  mask the distance ``inf``, and the quantile of infinities is NaN (the plain maximum,
  ``percentile=None``, would be ``inf``); both empty: no distances at all, NaN too. So a
  class missed entirely costs Dice (0), not HD95, and the mean over cases leaves it out.

Distances are computed in the bounding box of ``P | T`` grown by one voxel (MONAI crops
the same way): the distance transforms cost the size of the structure, not of the volume,
and the numbers are those of the whole volume (a surface's nearest point lies in the box).

Over cases (:func:`aggregate`): the mean of each metric per class over the cases where it
is defined (``n`` counts them), with its 95% interval over cases, ``mean +- t(0.975, n-1)
sd / sqrt(n)`` (:func:`senet.stats.t_quantile`, :func:`senet.stats.mean_std`). ``mean_dice``
(the segmentation task's score) is the mean over the scored classes of their mean Dice.

Example:
    >>> target = np.array([[0, 1, 1], [0, 1, 2], [2, 2, 0]])
    >>> pred = np.array([[0, 1, 0], [1, 1, 2], [2, 0, 0]])
    >>> case_metrics(pred, target, 3)["dice"].round(3).tolist()
    [0.667, 0.8]
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from senet.checks import check_positive, fail

__all__ = ["METRICS", "aggregate", "case_metrics", "hd95", "segmentation_metrics"]

#: The metrics of every case and class, in the order of the results.
METRICS = ("dice", "iou", "hd95")


def _spacing(spacing: Any, ndim: int) -> tuple[float, ...] | None:
    """``spacing`` as one positive number per axis (a single number: the same on all)."""
    if spacing is None:
        return None
    if isinstance(spacing, numbers.Real) and not isinstance(spacing, bool):
        spacing = (spacing,) * ndim
    try:
        values = tuple(float(check_positive("spacing", s)) for s in spacing)
    except (TypeError, ValueError):
        raise fail("spacing", f"{ndim} positive numbers (one per axis)", spacing) from None
    if len(values) != ndim:
        raise fail("spacing", f"{ndim} positive numbers (one per axis)", spacing)
    return values


def _labels(argument: str, labels: Any, num_classes: int) -> np.ndarray:
    """An integer label map with every label in ``[0, num_classes)``."""
    labels = np.asarray(labels)
    if labels.dtype == bool:
        labels = labels.astype(np.uint8)
    elif not np.issubdtype(labels.dtype, np.integer):
        if not np.issubdtype(labels.dtype, np.floating) or not np.all(labels == np.round(labels)):
            raise fail(argument, "a label map of integers", labels.dtype)
        labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        low, high = labels.min(), labels.max()
        raise fail(argument, f"labels in [0, {num_classes})", f"labels from {low} to {high}")
    return labels


def _box(union: np.ndarray) -> tuple[slice, ...]:
    """The bounding box of a non-empty mask grown by one voxel (within the array)."""
    box = []
    for axis in range(union.ndim):
        others = tuple(a for a in range(union.ndim) if a != axis)
        hits = np.flatnonzero(union.any(axis=others))
        box.append(slice(max(int(hits[0]) - 1, 0), int(hits[-1]) + 2))
    return tuple(box)


def _surface(mask: np.ndarray) -> np.ndarray:
    """The voxels of ``mask`` its binary erosion removes (MONAI's ``get_mask_edges``)."""
    from scipy.ndimage import binary_erosion

    return mask & ~binary_erosion(mask)


def _hd95(
    pred: np.ndarray, target: np.ndarray, spacing: tuple[float, ...] | None, *, crop: bool = True
) -> float:
    """:func:`hd95` of two boolean masks; ``crop=False`` works on the whole arrays."""
    from scipy.ndimage import distance_transform_edt

    if not pred.any() or not target.any():
        return math.nan
    if crop:
        box = _box(pred | target)
        pred, target = pred[box], target[box]
    surface_pred, surface_target = _surface(pred), _surface(target)
    # distance of every voxel to the nearest surface voxel of the other mask, read on the
    # surface of the one; one transform at a time, so at most one is held
    to_target = distance_transform_edt(~surface_target, sampling=spacing)[surface_pred]
    to_pred = distance_transform_edt(~surface_pred, sampling=spacing)[surface_target]
    return float(max(np.percentile(to_target, 95), np.percentile(to_pred, 95)))


def hd95(pred: Any, target: Any, spacing: float | Sequence[float] | None = None) -> float:
    """The 95th percentile Hausdorff distance between the surfaces of two masks.

    Args:
        pred: Predicted mask, any number of axes (non-zero: inside).
        target: True mask, the same shape.
        spacing: The size of a voxel along each axis (one number: all axes); the distance
            is in those units. None: 1.

    Returns:
        The distance (module docstring); NaN when either mask is empty (MONAI 1.6).

    >>> a = np.zeros((4, 5), bool); b = a.copy(); a[0, 0] = b[3, 4] = True
    >>> hd95(a, b)
    5.0
    """
    pred, target = np.asarray(pred, bool), np.asarray(target, bool)
    if pred.shape != target.shape:
        raise fail("pred", f"a mask of the target's shape {target.shape}", pred.shape)
    return _hd95(pred, target, _spacing(spacing, pred.ndim))


def case_metrics(
    pred: Any,
    target: Any,
    num_classes: int,
    *,
    spacing: float | Sequence[float] | None = None,
    include_background: bool = False,
) -> dict[str, np.ndarray]:
    """Dice, IoU and HD95 of one case for each class (module docstring).

    Args:
        pred: Predicted labels, ``(H, W)`` or ``(D, H, W)`` integers in ``[0, K)``.
        target: True labels, the same shape.
        num_classes: ``K``, background included.
        spacing: The size of a pixel or voxel along each axis (HD95 in those units; one
            number: all axes); None: 1.
        include_background: Score class 0 too.

    Returns:
        ``{"dice": (K',), "iou": (K',), "hd95": (K',)}`` float64 arrays over the classes
        scored (``1..K-1``, or ``0..K-1`` with the background); NaN where a metric is not
        defined for the case.

    Raises:
        ValueError: Shapes that differ, labels outside ``[0, K)``, a bad ``spacing``.
    """
    num_classes = check_positive("num_classes", num_classes, integer=True)
    pred = _labels("pred", pred, num_classes)
    target = _labels("target", target, num_classes)
    if pred.shape != target.shape:
        raise fail("pred", f"a label map of the target's shape {target.shape}", pred.shape)
    spacing = _spacing(spacing, pred.ndim)
    # one pass for every count: confusion[t, p] voxels of true class t labelled p
    confusion = np.bincount(
        (target.astype(np.int64) * num_classes + pred).ravel(), minlength=num_classes**2
    ).reshape(num_classes, num_classes)
    overlap = np.diag(confusion).astype(np.float64)
    true_counts = confusion.sum(axis=1).astype(np.float64)
    pred_counts = confusion.sum(axis=0).astype(np.float64)
    classes = list(range(0 if include_background else 1, num_classes))
    out = {name: np.full(len(classes), math.nan) for name in METRICS}
    for i, k in enumerate(classes):
        if not true_counts[k]:
            continue  # Dice, IoU and HD95 all NaN
        total = true_counts[k] + pred_counts[k]
        out["dice"][i] = 2 * overlap[k] / total
        out["iou"][i] = overlap[k] / (total - overlap[k])
        if pred_counts[k]:
            out["hd95"][i] = _hd95(pred == k, target == k, spacing)
    return out


def _summary(values: np.ndarray) -> dict[str, Any]:
    """``{"mean", "low", "high", "n"}`` of the finite ``values`` (None where undefined)."""
    from senet.stats import mean_std, t_quantile

    finite = [float(v) for v in values if math.isfinite(v)]
    row: dict[str, Any] = {"mean": None, "low": None, "high": None, "n": len(finite)}
    if finite:
        mean, sd = mean_std(finite)
        row["mean"] = float(mean)
        if sd is not None:
            half = t_quantile(len(finite) - 1) * sd / math.sqrt(len(finite))
            row["low"], row["high"] = float(mean - half), float(mean + half)
    return row


def aggregate(cases: Sequence[dict[str, Any]], class_names: Sequence[str]) -> dict[str, Any]:
    """The per-case metrics of :func:`case_metrics` over cases (module docstring).

    Args:
        cases: One :func:`case_metrics` result per case, all for the same classes.
        class_names: A name per scored class, in the order of the results.

    Returns:
        ``{"mean_dice", "mean_iou", "mean_hd95", "per_class": {name: {"dice": S,
        "iou": S, "hd95": S}}, "num_cases"}`` with ``S = {"mean", "low", "high", "n"}``:
        plain floats and ints (JSON), None for what no case defines (``low`` and
        ``high`` need two cases). ``mean_*`` are means over the classes with a mean.

    >>> cases = [{"dice": [0.8], "iou": [0.6], "hd95": [2.0]},
    ...          {"dice": [0.6], "iou": [0.4], "hd95": [float("nan")]}]
    >>> out = aggregate(cases, ["liver"])
    >>> round(out["mean_dice"], 6), out["per_class"]["liver"]["hd95"]["n"]
    (0.7, 1)
    """
    names = [str(name) for name in class_names]
    columns = {}
    for metric in METRICS:
        rows = [np.asarray(case[metric], np.float64).ravel() for case in cases]
        for row in rows:
            if row.shape != (len(names),):
                raise fail("class_names", f"a name per scored class ({row.size})", names)
        columns[metric] = np.stack(rows) if rows else np.empty((0, len(names)))
    per_class = {
        name: {metric: _summary(columns[metric][:, i]) for metric in METRICS}
        for i, name in enumerate(names)
    }

    def mean_of(metric: str) -> float | None:
        means = [row[metric]["mean"] for row in per_class.values()]
        means = [m for m in means if m is not None]
        return float(np.mean(means)) if means else None

    return {
        "mean_dice": mean_of("dice"),
        "mean_iou": mean_of("iou"),
        "mean_hd95": mean_of("hd95"),
        "per_class": per_class,
        "num_cases": len(cases),
    }


def segmentation_metrics(
    preds: Any,
    targets: Any,
    num_classes: int,
    class_names: Sequence[str],
    *,
    spacing: float | Sequence[float] | None = None,
) -> dict[str, Any]:
    """:func:`case_metrics` of every case, then :func:`aggregate` over the foreground.

    Args:
        preds: Predicted label maps, one per case: an array whose first axis is the cases,
            or a list (cases may differ in shape).
        targets: True label maps, the same cases.
        num_classes: ``K``, background included.
        class_names: A name for every class, background first (``class_names[1:]`` name
            the scored classes).
        spacing: Voxel size per axis, the same for every case (:func:`case_metrics`).

    Returns:
        :func:`aggregate`'s dictionary; ``mean_dice`` is the task's score.
    """
    num_classes = check_positive("num_classes", num_classes, integer=True)
    if len(preds) != len(targets):
        raise fail("preds", f"{len(targets)} label maps, one per target", len(preds))
    if len(class_names) != num_classes:
        raise fail("class_names", f"{num_classes} names (background included)", class_names)
    cases = [
        case_metrics(p, t, num_classes, spacing=spacing)
        for p, t in zip(preds, targets, strict=True)
    ]
    return aggregate(cases, list(class_names)[1:])
