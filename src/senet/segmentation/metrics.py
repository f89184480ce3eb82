"""Segmentation metrics per case and class, with MONAI's conventions, in NumPy and SciPy.

Per case and foreground class ``k`` (``P``, ``T``: the predicted and true masks of ``k``):

- Dice ``2 |P & T| / (|P| + |T|)`` and IoU ``|P & T| / |P | T|``; NaN when ``T`` is empty
  (MONAI's ``DiceMetric`` and ``MeanIoU`` with ``ignore_empty=True``: a class absent from
  the case says nothing), whatever ``P`` is.
- HD95: the 95th percentile Hausdorff distance between the surfaces, MONAI's
  ``HausdorffDistanceMetric(percentile=95)``: a surface is the mask minus its binary
  erosion (SciPy's default cross structure, nothing outside the image); for each surface
  voxel of one mask, the Euclidean distance (in physical units with ``spacing``) to the
  nearest surface voxel of the other; the larger of the two directions' 95th percentiles
  (linear interpolation, as ``torch.quantile``). NaN when either mask is empty (MONAI's
  quantile of infinite distances is NaN too), so a class missed entirely costs Dice, not
  HD95. Distances are computed in the bounding box of ``P | T`` grown by
  one voxel, so a small structure in a large volume costs little.

Over cases (:func:`aggregate`): the mean of each metric per class, with its 95% interval
(Student t over cases: ``mean +- t(0.975, n-1) sd / sqrt(n)``), over the cases where it is
defined; ``n`` counts them. ``mean_dice`` (the
segmentation task's score) is the mean over the foreground classes of their mean Dice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from senet.checks import check_positive, fail

__all__ = ["aggregate", "case_metrics", "hd95", "segmentation_metrics"]

METRICS = ("dice", "iou", "hd95")


def _surface(mask: np.ndarray) -> np.ndarray:
    from scipy.ndimage import binary_erosion

    return mask & ~binary_erosion(mask)


def _crop(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks cut to the bounding box of their union grown by one voxel."""
    union = pred | target
    box = []
    for axis in range(union.ndim):
        others = tuple(a for a in range(union.ndim) if a != axis)
        hits = np.flatnonzero(union.any(axis=others))
        box.append(slice(max(hits[0] - 1, 0), hits[-1] + 2))
    return pred[tuple(box)], target[tuple(box)]


def hd95(pred: np.ndarray, target: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    """The 95th percentile Hausdorff distance between two boolean masks (module docstring:
    NaN when either is empty)."""
    from scipy.spatial import cKDTree

    pred, target = np.asarray(pred, bool), np.asarray(target, bool)
    if not pred.any() or not target.any():
        return math.nan
    pred, target = _crop(pred, target)
    scale = np.ones(pred.ndim) if spacing is None else np.asarray(spacing, np.float64)
    a = np.argwhere(_surface(pred)) * scale
    b = np.argwhere(_surface(target)) * scale
    ab = cKDTree(b).query(a, k=1)[0]
    ba = cKDTree(a).query(b, k=1)[0]
    return float(max(np.percentile(ab, 95), np.percentile(ba, 95)))


def case_metrics(
    pred: np.ndarray,
    target: np.ndarray,
    num_classes: int,
    *,
    spacing: Sequence[float] | None = None,
    include_background: bool = False,
) -> dict[str, np.ndarray]:
    """Dice, IoU and HD95 of one case for each class.

    Args:
        pred: Predicted labels, ``(H, W)`` or ``(D, H, W)`` integers.
        target: True labels, the same shape.
        num_classes: ``K``, background included.
        spacing: The size of a pixel or voxel along each axis (HD95 in those units);
            None: 1.
        include_background: Score class 0 too.

    Returns:
        ``{"dice": (K',), "iou": (K',), "hd95": (K',)}`` float64 arrays over the classes
        scored (``1..K-1``, or ``0..K-1`` with the background).
    """
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise fail("pred", f"a label map of the target's shape {target.shape}", pred.shape)
    if spacing is not None and len(spacing) != pred.ndim:
        raise fail("spacing", f"{pred.ndim} numbers (one per axis)", spacing)
    check_positive("num_classes", num_classes, integer=True)
    classes = range(0 if include_background else 1, num_classes)
    out = {name: np.full(len(classes), math.nan) for name in METRICS}
    for i, k in enumerate(classes):
        p, t = pred == k, target == k
        true_count = int(t.sum())
        if true_count:
            overlap = int((p & t).sum())
            predicted = int(p.sum())
            out["dice"][i] = 2 * overlap / (predicted + true_count)
            out["iou"][i] = overlap / (predicted + true_count - overlap)
        out["hd95"][i] = hd95(p, t, spacing)
    return out


def _summary(values: np.ndarray) -> dict[str, Any]:
    from senet.stats import mean_std, t_quantile

    finite = values[np.isfinite(values)]
    row: dict[str, Any] = {"mean": None, "low": None, "high": None, "n": int(finite.size)}
    if finite.size:
        mean, sd = mean_std([float(v) for v in finite])
        row["mean"] = mean
        if sd is not None:
            half = t_quantile(finite.size - 1) * sd / math.sqrt(finite.size)
            row["low"], row["high"] = mean - half, mean + half
    return row


def aggregate(cases: Sequence[dict[str, np.ndarray]], class_names: Sequence[str]) -> dict:
    """The per-case metrics of :func:`case_metrics` over cases (module docstring).

    Args:
        cases: One :func:`case_metrics` result per case, all for the same classes.
        class_names: A name per scored class, in order.

    Returns:
        ``{"mean_dice", "mean_iou", "mean_hd95", "per_class": {name: {"dice": S,
        "iou": S, "hd95": S}}, "num_cases"}`` with ``S = {"mean", "low", "high", "n"}``;
        None for what no case gives.
    """
    per_class = {}
    for i, name in enumerate(class_names):
        per_class[str(name)] = {
            metric: _summary(np.array([case[metric][i] for case in cases], np.float64))
            for metric in METRICS
        }

    def mean_of(metric):
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
    preds,
    targets,
    num_classes: int,
    class_names: Sequence[str],
    *,
    spacing: Sequence[float] | None = None,
) -> dict:
    """:func:`case_metrics` of every case of ``preds`` against ``targets`` (label maps,
    first axis the cases), then :func:`aggregate` over the foreground classes
    (``class_names[1:]`` name them; ``class_names`` holds every class, background first)."""
    if len(preds) != len(targets):
        raise fail("preds", f"{len(targets)} label maps, one per target", len(preds))
    if len(class_names) != num_classes:
        raise fail("class_names", f"{num_classes} names (background included)", class_names)
    cases = [
        case_metrics(p, t, num_classes, spacing=spacing)
        for p, t in zip(preds, targets, strict=True)
    ]
    return aggregate(cases, list(class_names)[1:])
