"""Classification metrics: the one metrics path of training and `senet evaluate`.

:func:`classification_metrics` turns labels and predicted probabilities into accuracy,
loss, per-class precision/recall/F1 and the confusion matrix; :func:`evaluate_model` runs a
model (Keras or exported) on an :class:`~senet.data.ImageSet` and returns them. A saved
model on a data source is :func:`senet.evaluation.evaluate` (``senet evaluate``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from senet import distributed
from senet.data import ImageSet
from senet.inference import ExportedModel

__all__ = ["classification_metrics", "evaluate_model"]


def classification_metrics(
    labels: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, mean cross-entropy, per-class precision/recall/F1 and the confusion matrix.

    Args:
        labels: True class indices ``(N,)``.
        probabilities: Predicted class probabilities ``(N, K)`` (softmax outputs).
        class_names: ``K`` class names.

    Returns:
        ``{"accuracy", "loss", "macro_f1", "num_examples", "class_names",
        "confusion_matrix" (K x K, rows true, columns predicted), "per_class": {name:
        {"precision", "recall", "f1", "support"}}}``. A class never predicted has
        precision 0, one absent from ``labels`` recall 0 (as scikit-learn's zero_division=0).
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    num_classes = len(class_names)
    if probabilities.ndim != 2 or probabilities.shape != (labels.shape[0], num_classes):
        raise ValueError(
            f"`probabilities` must be of shape ({labels.shape[0]}, {num_classes}) for "
            f"{labels.shape[0]} labels and {num_classes} classes, "
            f"got shape {probabilities.shape}"
        )
    predicted = probabilities.argmax(axis=1)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    true_positives = np.diag(confusion).astype(np.float64)
    predicted_counts = confusion.sum(axis=0)
    support = confusion.sum(axis=1)
    precision = np.divide(
        true_positives, predicted_counts, out=np.zeros(num_classes), where=predicted_counts > 0
    )
    recall = np.divide(true_positives, support, out=np.zeros(num_classes), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(
        2 * precision * recall, denominator, out=np.zeros(num_classes), where=denominator > 0
    )
    # the loss Keras reports: clip like keras' crossentropy so a hard 0 is finite
    epsilon = keras.config.epsilon()
    picked = np.clip(probabilities[np.arange(labels.shape[0]), labels], epsilon, 1.0)
    count = max(labels.shape[0], 1)
    return {
        "accuracy": float(true_positives.sum() / count),
        "loss": float(-np.log(picked).sum() / count),
        "macro_f1": float(f1.mean()) if num_classes else 0.0,
        "num_examples": int(labels.shape[0]),
        "class_names": list(class_names),
        "confusion_matrix": confusion.tolist(),
        "per_class": {
            name: {
                "precision": float(precision[k]),
                "recall": float(recall[k]),
                "f1": float(f1[k]),
                "support": int(support[k]),
            }
            for k, name in enumerate(class_names)
        },
    }


def evaluate_model(
    model: keras.Model | ExportedModel, images: ImageSet, *, batch_size: int = 64
) -> dict[str, Any]:
    """:func:`classification_metrics` of ``model`` on ``images`` (the one metrics path).

    ``model`` is a Keras model or an exported one (:func:`senet.export.load_exported`), which
    runs batch by batch with its own runtime.
    """
    if len(images) == 0:
        raise ValueError("Cannot evaluate on an empty split (0 images).")
    if isinstance(model, ExportedModel):
        probabilities = np.concatenate(
            [
                model(images.x[start : start + batch_size])
                for start in range(0, len(images), batch_size)
            ]
        )
        return classification_metrics(images.y, probabilities, images.class_names)
    import tensorflow as tf

    if distributed.model_replicas(model) > 1:
        # a distributed predict() hands a replica an empty shard when the last batch is
        # smaller than the replica count; metrics need every image, so call the model
        # directly (it reads the mirrored weights) batch by batch
        probabilities = np.concatenate(
            [
                keras.ops.convert_to_numpy(model(images.x[start : start + batch_size]))
                for start in range(0, len(images), batch_size)
            ]
        )
        return classification_metrics(images.y, probabilities, images.class_names)
    # a plain batched dataset: Keras' own numpy adapter logs a spurious TF error here
    inputs = tf.data.Dataset.from_tensor_slices(images.x).batch(batch_size)
    probabilities = model.predict(inputs, verbose=0)
    return classification_metrics(images.y, probabilities, images.class_names)
