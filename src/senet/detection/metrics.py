"""COCO box metrics through pycocotools: mAP@[.5:.95], mAP@.5, mAP@.75 and per-class AP.

The ground truth is a :class:`~senet.data.coco.DetectionSet` (boxes in the pixels of its
stored images); the predictions are, per image, ``xyxy`` boxes in the same pixels, their
scores and their class indices. Both are handed to pycocotools' ``COCOeval`` in memory
(image ids 1..N, category ids 1..K), so the numbers are COCO's own: 101-point interpolated
precision, IoU thresholds 0.50:0.05:0.95, at most ``max_detections`` detections an image,
all object sizes.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np

__all__ = ["coco_metrics"]

_MEANS = ("map", "map_50", "map_75", "map_agnostic", "map_50_agnostic")


def coco_metrics(
    truth,
    boxes: Sequence[np.ndarray],
    scores: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    *,
    max_detections: int = 100,
) -> dict:
    """COCO average precision of detections on a :class:`~senet.data.coco.DetectionSet`.

    Args:
        truth: The images' true boxes and classes.
        boxes: Per image, ``(K, 4)`` predicted ``x0, y0, x1, y1`` in ``truth``'s pixels.
        scores: Per image, ``(K,)`` confidences.
        labels: Per image, ``(K,)`` class indices (``truth.class_names``).
        max_detections: Detections counted an image, the highest scores first.

    Returns:
        ``{"map", "map_50", "map_75", "map_agnostic", "map_50_agnostic", "per_class":
        {name: {"ap", "ap_50"}}, "num_images", "num_boxes", "num_detections"}``. A class
        without a true box has ``None`` APs and is left out of the means (COCO's
        convention); with no detections at all every AP is 0. The ``_agnostic`` pair is
        COCO's evaluation with the classes ignored (``useCats = 0``: a detection matches a
        true box of any class): how well the objects are found, whatever they are called.

    Example:
        >>> from senet.data.coco import DetectionSet
        >>> truth = DetectionSet(np.zeros((1, 32, 32, 1)), [[[2, 2, 20, 20]]], [[0]], ("face",))
        >>> found = coco_metrics(truth, [np.array([[2, 2, 20, 20]])], [np.ones(1)], [np.zeros(1)])
        >>> round(found["map"], 6), found["per_class"]["face"]["ap_50"] > 0.999999
        (1.0, True)
    """
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as error:
        raise ImportError("COCO mAP needs pycocotools: pip install 'senet[detection]'") from error

    if not len(boxes) == len(scores) == len(labels) == len(truth):
        raise ValueError(
            f"predictions for {len(boxes)}/{len(scores)}/{len(labels)} images, truth for "
            f"{len(truth)}"
        )
    height, width = truth.x.shape[1:3]
    images, annotations, detections = [], [], []
    for index in range(len(truth)):
        images.append({"id": index + 1, "width": int(width), "height": int(height)})
        for box, label in zip(*truth.image_boxes(index), strict=True):
            x0, y0, x1, y1 = (float(v) for v in box)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index + 1,
                    "category_id": int(label) + 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": 0,
                }
            )
        image_boxes = np.asarray(boxes[index], np.float64).reshape(-1, 4)
        image_scores = np.asarray(scores[index], np.float64).reshape(-1)
        image_labels = np.asarray(labels[index]).reshape(-1)
        for box, score, label in zip(image_boxes, image_scores, image_labels, strict=True):
            if label < 0:  # padding of a dense prediction
                continue
            x0, y0, x1, y1 = (float(v) for v in box)
            detections.append(
                {
                    "image_id": index + 1,
                    "category_id": int(label) + 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "score": float(score),
                }
            )
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(truth.class_names)]
    result = {
        "num_images": len(truth),
        "num_boxes": len(annotations),
        "num_detections": len(detections),
    }
    present = {a["category_id"] - 1 for a in annotations}
    if not detections or not annotations:
        result.update(dict.fromkeys(_MEANS, 0.0))
        result["per_class"] = {
            name: {"ap": 0.0 if k in present else None, "ap_50": 0.0 if k in present else None}
            for k, name in enumerate(truth.class_names)
        }
        return result
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints as it goes
        ground = COCO()
        ground.dataset = {"images": images, "annotations": annotations, "categories": categories}
        ground.createIndex()
        found = ground.loadRes(detections)
        runs = []
        for by_class in (True, False):
            evaluation = COCOeval(ground, found, "bbox")
            evaluation.params.maxDets = [1, 10, max_detections]
            evaluation.params.useCats = int(by_class)
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
            runs.append(evaluation)
    evaluation, agnostic = runs
    stats = evaluation.stats
    result.update({"map": float(stats[0]), "map_50": float(stats[1]), "map_75": float(stats[2])})
    result.update(
        {"map_agnostic": float(agnostic.stats[0]), "map_50_agnostic": float(agnostic.stats[1])}
    )
    # precision: [IoU threshold, recall point, class, area range (0: all), max detections]
    precision = evaluation.eval["precision"][:, :, :, 0, -1]
    per_class = {}
    for k, name in enumerate(truth.class_names):
        if k not in present:
            per_class[name] = {"ap": None, "ap_50": None}
            continue
        every, first = precision[:, :, k], precision[0, :, k]
        per_class[name] = {
            "ap": float(every[every > -1].mean()),
            "ap_50": float(first[first > -1].mean()),
        }
    result["per_class"] = per_class
    return result
