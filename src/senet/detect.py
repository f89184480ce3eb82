"""Objects in photos and videos with a detector (``senet train --task detection``).

Each image (or video frame) is letterboxed as the detector was trained
(:func:`senet.data.coco.letterbox`: the longer side scaled to the model's input, the rest
padded), run through the model and keras-hub's decoding (anchors, non-maximum
suppression at IoU 0.5), and the boxes are scaled back to the file's pixels. Detections
scoring under ``min_score`` are dropped (0.5 by default, keras-hub's own threshold; COCO
evaluation keeps down to 0.05).

``senet predict DETECTOR PHOTO...`` prints them (``--json``: one JSON object per image or
frame) and ``--annotate DIR`` writes copies with the boxes drawn, named as the face
classifier's (:func:`senet.predict.annotated_names`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from senet.checks import check_number, fail
from senet.data.coco import letterbox
from senet.data.images import load_image, write_image
from senet.predict import (
    VIDEO_EXTENSIONS,
    annotation_targets,
    draw_boxes,
    iter_video,
)

__all__ = [
    "DEFAULT_MIN_SCORE",
    "Detection",
    "DetectionFrame",
    "detect_image",
    "detections_and_best",
    "iter_detections",
]

#: The score a printed or drawn detection needs by default (keras-hub's threshold).
DEFAULT_MIN_SCORE = 0.5


@dataclass(frozen=True)
class Detection:
    """One object: ``box`` ``(x0, y0, x1, y1)`` in the image's pixels, its class, its score."""

    box: tuple[float, float, float, float]
    label: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"box": [round(v, 2) for v in self.box], "class": self.label, "score": self.score}


@dataclass
class DetectionFrame:
    """The detections in one image, or one video frame (``frame``: its index);
    ``best_score``: the highest score of any detection decoded, kept or not (None when
    the decoder kept none), so an empty result can say how far below the bar it was."""

    path: str
    frame: int | None = None
    detections: list[Detection] = field(default_factory=list)
    best_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "frame": self.frame,
            "detections": [item.to_dict() for item in self.detections],
            "best_score": self.best_score,
        }


def detector_input(model) -> tuple[int, int]:
    """``(image_size, channels)`` of a keras-hub detector's square input."""
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) != 3 or shape[0] is None or shape[0] != shape[1]:
        raise ValueError(f"expected a detector of square images of known size, got {shape}")
    return int(shape[0]), int(shape[2])


def detect_image(
    model,
    image_bgr: np.ndarray,
    class_names: Sequence[str],
    *,
    min_score: float = DEFAULT_MIN_SCORE,
    source: str = "image",
) -> list[Detection]:
    """The detections scoring at least ``min_score`` in one decoded (BGR) image, best
    first, boxes in its pixels (clipped to the image; a box wholly outside it is
    dropped)."""
    from senet.tasks.detection import predict_boxes

    size, channels = detector_input(model)
    x, scale = letterbox(image_bgr, size, channels, source=source)
    (boxes,), (scores,), (labels,) = predict_boxes(model, x[None], batch_size=1)
    height, width = image_bgr.shape[:2]
    boxes = np.clip(boxes / np.float32(scale), 0, [width, height, width, height])
    return [
        Detection(tuple(float(v) for v in box), str(class_names[int(label)]), float(score))
        for box, score, label in zip(boxes, scores, labels, strict=True)
        if score >= min_score and box[2] > box[0] and box[3] > box[1]  # not all outside
    ]


def detections_and_best(
    model,
    image_bgr: np.ndarray,
    class_names: Sequence[str],
    *,
    min_score: float = DEFAULT_MIN_SCORE,
    source: str = "image",
) -> tuple[list[Detection], float | None]:
    """:func:`detect_image`'s detections scoring at least ``min_score``, and the best
    score of any it decoded, kept or not (None when it decoded none): what an empty
    result says of how close it came."""
    every_one = detect_image(model, image_bgr, class_names, min_score=0, source=source)
    best = max((item.score for item in every_one), default=None)
    return [item for item in every_one if item.score >= min_score], best


def annotate_detections(image_bgr: np.ndarray, detections: Sequence[Detection]) -> np.ndarray:
    """An 8-bit BGR copy of the image with each box and ``class score`` drawn."""
    boxes = []
    for item in detections:
        x0, y0, x1, y1 = (round(v) for v in item.box)
        boxes.append(((x0, y0, x1 - x0, y1 - y0), f"{item.label} {item.score:.2f}"))
    return draw_boxes(image_bgr, boxes)


def iter_detections(
    model_path: str | os.PathLike,
    paths: Iterable[str | os.PathLike],
    *,
    min_score: float = DEFAULT_MIN_SCORE,
    every: int = 1,
    annotate_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    allow_h5: bool = False,
    model: Any = None,
) -> Iterator[DetectionFrame]:
    """Detections in image files and videos, one image or frame at a time.

    Args:
        model_path: A detector's ``.keras`` file (``RUN_DIR/model.keras``).
        paths: Image files, or videos (``VIDEO_EXTENSIONS``) read frame by frame.
        min_score: The lowest score kept, in ``[0, 1]``.
        every: For videos, look at every ``every``-th frame.
        annotate_dir: Write copies with the boxes drawn here
            (:func:`senet.predict.annotated_names`).
        overwrite: Replace annotated copies that exist (default: refuse before anything
            runs).
        allow_h5: Accept a legacy ``.h5`` file (trusted files only).
        model: The model at ``model_path`` when already loaded.

    Raises:
        FileNotFoundError: A path or the model does not exist.
        FileExistsError: An annotated copy exists and ``overwrite`` is False.
        ValueError: The model is not a Keras detector (an exported one included: its raw
            outputs are decoded as ``docs/detection.md`` shows).
    """
    from senet._files import check_input_file
    from senet.inference import class_names_for, load_classifier, model_record

    min_score = check_number("min_score", min_score, minimum=0, maximum=1)
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise fail("every", "a positive integer", every)
    if not Path(model_path).exists():
        raise FileNotFoundError(f"no such file: {model_path}")
    paths = [check_input_file(path) for path in paths]
    targets = annotation_targets(paths, annotate_dir, overwrite)
    if model is None:
        model = load_classifier(model_path, allow_h5=allow_h5)
    if not hasattr(model, "decode_predictions"):
        raise ValueError(
            f"{model_path} is not a Keras detector: senet predict decodes boxes with the "
            "detector's .keras file (an exported detector gives raw outputs, see "
            "docs/detection.md)"
        )
    names = class_names_for(model_path, int(model.num_classes), model_record(model, model_path))

    def see(image: np.ndarray, source: str = "frame") -> tuple[list[Detection], float | None]:
        return detections_and_best(model, image, names, min_score=min_score, source=source)

    def draw(image: np.ndarray, seen) -> np.ndarray:
        return annotate_detections(image, seen[0])

    for path, target in zip(paths, targets, strict=True):
        if path.suffix.lower() in VIDEO_EXTENSIONS:
            for index, (found, best) in iter_video(path, target, every, see, draw):
                yield DetectionFrame(str(path), index, found, best)
            continue
        image = load_image(path)
        found, best = see(image, str(path))
        if target is not None:
            write_image(target, annotate_detections(image, found))
        yield DetectionFrame(str(path), None, found, best)
