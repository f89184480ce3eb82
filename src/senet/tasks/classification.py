"""Classification, senet's built-in task: images with one integer label each.

The data readers of :mod:`senet.data` (FER2013, class folders, ``.npz``, the synthetic
faces), the networks of :data:`senet.names.MODEL_NAMES` with their softmax head, sparse
categorical cross-entropy, accuracy and :func:`senet.metrics.classification_metrics`, the
confusion matrix figure, and a label with every class's probability for a prediction.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from senet.names import CLASSIFICATION_MODELS
from senet.tasks.base import Task

__all__ = ["ClassificationTask"]


class ClassificationTask(Task):
    """Images -> one of ``K`` classes (see the module docstring)."""

    name = "classification"
    score = "accuracy"
    report_files = ("confusion.png",)
    loss_name = "cross-entropy loss"
    models = CLASSIFICATION_MODELS

    def load_data(self, config) -> dict[str, Any]:
        from senet.data import load_dataset

        return load_dataset(
            config.data,
            image_size=config.image_size,
            channels=config.channels,
            skip_bad=config.skip_bad,
            **config.split_options(),
        )

    def output_names(self, split) -> list[str]:
        return [str(name) for name in split.class_names]

    def sample_weights(self, split, config) -> np.ndarray | None:
        """Inverse class frequency (``config.class_weights``), else None."""
        if not config.class_weights:
            return None
        from senet.data import class_weights

        table = class_weights(split.y, split.num_classes)
        return np.asarray([table[k] for k in range(split.num_classes)], np.float32)[split.y]

    def random_targets(self, output_shape, batch: int, rng):
        """Random class indices, one per image."""
        return rng.integers(0, int(output_shape[-1]), size=(batch,))

    def augment(self, x, y, seed):
        """:func:`senet.data.augment_batch` on the images (flips, shifts, rotation, zoom,
        brightness, contrast); labels unchanged."""
        from senet.data import augment_batch

        return augment_batch(x, seed=seed), y

    def build_model(self, config, output_names: Sequence[str]):
        from senet.names import build_model

        return build_model(
            config.model,
            input_shape=(config.image_size, config.image_size, config.channels),
            num_classes=len(output_names),
            attention=config.attention,
            reduction=config.reduction,
            **config.model_options,
        )

    def model_problem(self, model, config, output_names: Sequence[str]) -> str | None:
        """The input must be ``image_size x image_size x channels``, one output per class."""
        try:
            shape = tuple(model.inputs[0].shape[1:])
            outputs = int(model.outputs[0].shape[-1])
        except (AttributeError, ValueError, TypeError, IndexError):
            return None
        expected = (config.image_size, config.image_size, config.channels)
        if shape != expected:
            return (
                f"images are {'x'.join(map(str, expected))} (image_size {config.image_size}, "
                f"channels {config.channels}), the model takes {'x'.join(map(str, shape))}"
            )
        if outputs != len(output_names):
            return (
                f"the data has {len(output_names)} classes {list(output_names)}, the model "
                f"gives {outputs} outputs"
            )
        return None

    def compile_options(self, config, model) -> dict[str, Any]:
        return {"loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]}

    def record(self, config, output_names: Sequence[str]) -> dict[str, Any]:
        """Keys: ``dataset`` (:func:`senet.layers.info.dataset_kind`), ``data`` (the
        source's file or folder name, no directories), ``synthetic_difficulty``,
        ``image_size``, ``channels``, ``input_range`` (``[0, 1]``: every image goes through
        :func:`senet.data.images.to_model_input`), ``class_names`` and ``init_from`` (the
        file name training started from, or None)."""
        from senet.layers.info import dataset_kind

        synthetic = config.data == "synthetic"
        return {
            "dataset": dataset_kind(config.data),
            "data": "synthetic" if synthetic else Path(config.data).name,
            "synthetic_difficulty": config.synthetic_difficulty if synthetic else None,
            "image_size": config.image_size,
            "channels": config.channels,
            "input_range": [0, 1],
            "class_names": [str(name) for name in output_names],
            "init_from": Path(config.init_from).name if config.init_from else None,
        }

    def evaluate(self, model, split, *, batch_size: int) -> dict[str, Any]:
        """:func:`senet.metrics.evaluate_model`: accuracy, loss, macro F1, per-class
        precision/recall/F1 and the confusion matrix."""
        from senet.metrics import evaluate_model

        return evaluate_model(model, split, batch_size=batch_size)

    def report(
        self,
        metrics: dict[str, Any],
        out_dir: Path,
        *,
        title: str,
        split: str,
        output_names: Sequence[str],
    ) -> list[str]:
        """``confusion.png``."""
        from senet.report import plot_confusion

        plot_confusion(
            metrics["confusion_matrix"],
            list(output_names),
            Path(out_dir) / "confusion.png",
            title=f"Confusion matrix ({split}): {title}, accuracy {metrics['accuracy']:.3f}",
        )
        return ["confusion.png"]

    def summary(self, metrics: dict[str, Any]) -> str:
        """Accuracy line, a per-class table and the confusion matrix, as plain text."""
        names = metrics["class_names"]
        width = max(8, *(len(name) for name in names))
        split = metrics.get("split", "test")
        lines = [
            f"{split} accuracy {metrics['accuracy']:.4f}  loss {metrics['loss']:.4f}  "
            f"macro F1 {metrics['macro_f1']:.4f}  ({metrics['num_examples']} images)",
            "",
            f"{'class':<{width}}  precision  recall     f1  support",
        ]
        for name in names:
            row = metrics["per_class"][name]
            lines.append(
                f"{name:<{width}}  {row['precision']:9.3f}  {row['recall']:6.3f}  "
                f"{row['f1']:5.3f}  {row['support']:7d}"
            )
        lines += ["", "confusion matrix (rows: true, columns: predicted)"]
        cell = max(5, *(len(name[:7]) for name in names))
        lines.append(" " * width + "".join(f"{name[:7]:>{cell + 1}}" for name in names))
        for name, row in zip(names, metrics["confusion_matrix"], strict=True):
            lines.append(f"{name:<{width}}" + "".join(f"{count:>{cell + 1}d}" for count in row))
        return "\n".join(lines)

    def predictions(self, outputs, output_names: Sequence[str]) -> list[dict[str, Any]]:
        """``{"label": the most probable class, "probabilities": {class: p}}`` per row."""
        outputs = np.asarray(outputs)
        if outputs.ndim != 2 or outputs.shape[-1] != len(output_names):
            raise ValueError(
                f"Expected {outputs.shape[-1]} `class_names` (one per model output), "
                f"got {len(output_names)}: {list(output_names)}"
            )
        return [
            {
                "label": str(output_names[int(np.argmax(row))]),
                "probabilities": {
                    str(name): float(p) for name, p in zip(output_names, row, strict=True)
                },
            }
            for row in outputs
        ]
