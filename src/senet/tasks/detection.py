"""Detection: boxes and a class for every object in an image.

The readers of :mod:`senet.data.coco` (a COCO instances file with its images, or the
synthetic face scenes: faces to find and expressions to name), keras-hub's RetinaNet on
a senet ResNet (:func:`senet.models.retinanet`: ``--backbone resnet18|resnet50|FILE.keras``
with ``--attention``), its own focal and Huber losses, images and boxes moved together by
Keras' box-aware preprocessing layers (:func:`senet.data.pipeline.augment_with_boxes`),
and COCO average precision through pycocotools (:func:`senet.detection.coco_metrics`).
The score is mAP@[.5:.95].
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from senet.names import DEFAULT_ANCHOR_SIZE, DEFAULT_BACKBONE, DETECTION_MODELS
from senet.tasks.base import Task, number_text

__all__ = ["DetectionTask", "anchor_coverage", "predict_boxes"]

#: The box layout of senet's detection data and models: corners in pixels.
BOX_FORMAT = "xyxy"


class DetectionTask(Task):
    """Images -> boxes with classes and scores (see the module docstring)."""

    name = "detection"
    score = "map"
    report_files = ("ap.png",)
    loss_name = "focal + Huber loss"
    models = DETECTION_MODELS

    # ------------------------------------------------------------------ data
    def load_data(self, config) -> dict[str, Any]:
        """The splits (:func:`senet.data.coco.load_detection`), and a one-line warning when
        fewer than 90% of the training boxes match an anchor (:func:`anchor_coverage`)."""
        from senet.data.coco import load_detection

        sets = load_detection(
            config.data,
            image_size=config.image_size,
            channels=config.channels,
            skip_bad=config.skip_bad,
            **config.split_options(),
        )
        size = config.model_options.get("anchor_size", DEFAULT_ANCHOR_SIZE)
        share = anchor_coverage(sets["train"], config.image_size, size)
        if share < 0.9:
            warnings.warn(
                f"only {share:.0%} of the training boxes match an anchor at IoU 0.5 "
                f"(anchor_size {size}: {8 * size:g} pixels at P3); the rest train as "
                'background: give a smaller one, --model-options \'{"anchor_size": '
                f"{size / 2:g}}}'",
                UserWarning,
                stacklevel=2,
            )
        return sets

    def output_names(self, split) -> list[str]:
        return [str(name) for name in split.class_names]

    def train_transform(self, config):
        """:func:`senet.data.pipeline.augment_with_boxes` when ``config.augment``: one set
        of layers and one seed generator for the run, reset from every batch's seed."""
        if not config.augment:
            return None
        import keras

        from senet.data.pipeline import augment_with_boxes, box_augmentation

        layers, generator = box_augmentation(BOX_FORMAT), keras.random.SeedGenerator(0)

        def transform(x, y, seed):
            return augment_with_boxes(x, y, seed, layers, generator)

        return transform

    # ------------------------------------------------------------------ model
    def build_model(self, config, output_names: Sequence[str]):
        from senet.names import build_model

        return build_model(
            config.model,
            input_shape=(config.image_size, config.image_size, config.channels),
            num_classes=len(output_names),
            attention=config.attention,
            reduction=config.reduction,
            backbone=config.backbone or DEFAULT_BACKBONE,
            bounding_box_format=BOX_FORMAT,
            **config.model_options,
        )

    def model_problem(self, model, config, output_names: Sequence[str]) -> str | None:
        """The model must be a detector for the data's classes and image size."""
        classes = getattr(model, "num_classes", None)
        if classes is None:
            return "a detection run needs a detector (keras-hub's RetinaNet), not this model"
        if classes != len(output_names):
            return (
                f"the data has {len(output_names)} classes {list(output_names)}, the "
                f"detector names {classes}"
            )
        inputs = tuple(model.inputs[0].shape[1:])
        wanted = (config.image_size, config.image_size, config.channels)
        if inputs != wanted:
            return f"the detector takes {inputs}, the data gives {wanted}"
        return None

    def random_targets(self, output_shape, batch: int, rng):
        """Four random boxes of 8-32 pixels an image, of class 0, inside its top-left
        64x64 corner (``output_shape``, a head's, gives neither the image size nor the
        classes)."""
        corner = rng.uniform(0, 32, size=(batch, 4, 2))
        size = rng.uniform(8, 32, size=(batch, 4, 2))
        boxes = np.concatenate([corner, corner + size], axis=-1).astype(np.float32)
        return {"boxes": boxes, "labels": np.zeros((batch, 4), np.int32)}

    def compile_options(self, config, model) -> dict[str, Any]:
        """Nothing: keras-hub's detector brings its losses (focal loss for the classes,
        Huber for the boxes); mAP is measured on whole splits, not per batch."""
        return {}

    def record(self, config, output_names: Sequence[str]) -> dict[str, Any]:
        """Keys: ``task`` (``"detection"``), ``dataset``, ``data``, ``synthetic_difficulty``,
        ``image_size``, ``channels``, ``input_range``, ``class_names``, ``backbone``,
        ``bounding_box_format``, ``init_from``."""
        from senet.layers.info import dataset_kind

        synthetic = config.data == "synthetic"
        return {
            "task": self.name,
            "dataset": "synthetic" if synthetic else dataset_kind(config.data),
            "data": "synthetic" if synthetic else Path(config.data).name,
            "synthetic_difficulty": config.synthetic_difficulty if synthetic else None,
            "image_size": config.image_size,
            "channels": config.channels,
            "input_range": [0, 1],
            "class_names": [str(name) for name in output_names],
            "backbone": Path(config.backbone).name if config.backbone else DEFAULT_BACKBONE,
            "bounding_box_format": BOX_FORMAT,
            "init_from": Path(config.init_from).name if config.init_from else None,
        }

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, model, split, *, batch_size: int) -> dict[str, Any]:
        """COCO mAP@[.5:.95] (``map``), mAP@.5, mAP@.75 and per-class AP of ``model``'s
        decoded detections on ``split`` (:func:`senet.detection.coco_metrics`)."""
        from senet.detection import coco_metrics

        boxes, scores, labels = predict_boxes(model, split.x, batch_size=batch_size)
        metrics = coco_metrics(split, boxes, scores, labels)
        return {**metrics, "class_names": list(split.class_names), "num_examples": len(split)}

    def report(
        self,
        metrics: dict[str, Any],
        out_dir: Path,
        *,
        title: str,
        split: str,
        output_names: Sequence[str],
    ) -> list[str]:
        """``ap.png``: AP@[.5:.95] and AP@.5 per class."""
        plot_class_ap(
            metrics,
            Path(out_dir) / "ap.png",
            title=f"AP per class ({split}): {title}, mAP {metrics['map']:.3f}",
        )
        return ["ap.png"]

    def summary(self, metrics: dict[str, Any]) -> str:
        """mAP, mAP@.5 and mAP@.75, the same with the classes ignored, then AP per class."""
        split = metrics.get("split", "test")
        lines = [
            f"{split} mAP@[.5:.95] {metrics['map']:.4f}  mAP@.5 {metrics['map_50']:.4f}  "
            f"mAP@.75 {metrics['map_75']:.4f}  ({metrics['num_examples']} images, "
            f"{metrics['num_boxes']} boxes, {metrics['num_detections']} detections)",
        ]
        if "map_agnostic" in metrics:  # written before it was measured: absent
            lines.append(
                f"classes ignored: mAP@[.5:.95] {metrics['map_agnostic']:.4f}  mAP@.5 "
                f"{metrics['map_50_agnostic']:.4f}"
            )
        lines.append("")
        names = list(metrics["per_class"])
        width = max(8, *(len(name) for name in names))
        lines.append(f"{'class':<{width}}  {'AP':>6}  {'AP@.5':>6}")
        for name in names:
            row = metrics["per_class"][name]
            lines.append(
                f"{name:<{width}}  {number_text(row['ap']):>6}  {number_text(row['ap_50']):>6}"
            )
        return "\n".join(lines)

    # ------------------------------------------------------------------ prediction
    def predictions(self, outputs, output_names: Sequence[str]) -> list[dict[str, Any]]:
        """Per image: its detections (box ``xyxy`` in pixels, class, score), best first."""
        rows = []
        for index in range(len(outputs["boxes"])):
            count = int(outputs["num_detections"][index])
            rows.append(
                {
                    "detections": [
                        {
                            "box": [float(v) for v in outputs["boxes"][index][k]],
                            "class": str(output_names[int(outputs["labels"][index][k])]),
                            "score": float(outputs["confidence"][index][k]),
                        }
                        for k in range(count)
                    ]
                }
            )
        return rows


def anchor_coverage(split, image_size: int, anchor_size: float = DEFAULT_ANCHOR_SIZE) -> float:
    """The share of ``split``'s boxes that match one of a RetinaNet's anchors at IoU 0.5 or
    more (keras-hub's positive threshold: the others are its background): anchors of
    levels P3-P7, three scales and three aspect ratios, ``anchor_size`` strides a side.
    1.0 for a split without boxes."""
    from senet.models.retinanet import anchor_generator

    levels = anchor_generator(BOX_FORMAT, anchor_size)(
        np.zeros((1, image_size, image_size, 1), np.float32)
    )
    anchors = np.concatenate([np.asarray(level) for level in levels.values()])
    area = (anchors[:, 2] - anchors[:, 0]) * (anchors[:, 3] - anchors[:, 1])
    matched = total = 0
    for index in range(len(split)):
        boxes, _ = split.image_boxes(index)
        if not len(boxes):
            continue
        low = np.maximum(boxes[:, None, :2], anchors[None, :, :2])
        high = np.minimum(boxes[:, None, 2:], anchors[None, :, 2:])
        inter = np.prod(np.clip(high - low, 0, None), axis=-1)
        own = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        iou = inter / (own[:, None] + area[None] - inter)
        matched += int((iou.max(axis=1) >= 0.5).sum())
        total += len(boxes)
    return matched / total if total else 1.0


def predict_boxes(
    model, x: np.ndarray, *, batch_size: int
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """A detector's decoded detections for every image of ``x``, batch by batch:
    ``(boxes, scores, labels)``, a list entry per image (``(K, 4)`` xyxy pixels, ``(K,)``,
    ``(K,)``), best first, without the padding of keras-hub's fixed-size output."""
    import keras

    boxes, scores, labels = [], [], []
    for start in range(0, len(x), batch_size):
        chunk = np.asarray(x[start : start + batch_size], np.float32)
        # called directly, then decoded (anchors, non-maximum suppression): keras-hub's
        # predict_on_batch hands its decoder a one-element tuple it cannot unpack, and a
        # distributed predict would split the batch over replicas
        out = model.decode_predictions(model(chunk, training=False), chunk)
        out = keras.tree.map_structure(keras.ops.convert_to_numpy, out)
        for index in range(len(out["boxes"])):
            count = int(out["num_detections"][index])
            boxes.append(np.asarray(out["boxes"][index][:count], np.float32))
            scores.append(np.asarray(out["confidence"][index][:count], np.float32))
            labels.append(np.asarray(out["labels"][index][:count], np.int64))
    return boxes, scores, labels


def plot_class_ap(metrics: dict[str, Any], path: Path, *, title: str) -> None:
    """Bars of AP@[.5:.95] and AP@.5 per class (a class without true boxes: none)."""
    from matplotlib.figure import Figure

    from senet._files import save_figure

    names = list(metrics["per_class"])
    ap = [metrics["per_class"][n]["ap"] or 0.0 for n in names]
    ap50 = [metrics["per_class"][n]["ap_50"] or 0.0 for n in names]
    figure = Figure(figsize=(max(4.0, 1.1 * len(names) + 1.5), 3.6), layout="constrained")
    axis = figure.subplots()
    where = np.arange(len(names))
    axis.bar(where - 0.2, ap, 0.4, label="AP@[.5:.95]", color="#4c72b0")
    axis.bar(where + 0.2, ap50, 0.4, label="AP@.5", color="#dd8452")
    axis.set_xticks(where, names, rotation=30, ha="right")
    axis.set_ylim(0, 1)
    axis.set_ylabel("average precision")
    axis.legend(fontsize=8)
    axis.set_title(title, fontsize=9)
    save_figure(figure, path, dpi=120)
