"""The loss and the metric of segmentation, registered with Keras like the layers, so a
compiled checkpoint of a segmentation run loads (resume) in every backend.

- :class:`DiceCELoss`: soft Dice + cross-entropy on softmax outputs (as MONAI's
  ``DiceCELoss(softmax=True)``: Dice per sample and class, averaged; background included).
- :class:`DiceScore`: the hard Dice of the argmax labels, pooled over every pixel a metric
  sees in an epoch, averaged over the foreground classes present: the ``dice`` that
  ``fit`` logs (``val_dice``). The final metrics (:mod:`senet.segmentation.metrics`) average
  Dice per case instead, as MONAI's ``DiceMetric`` does.
"""

from __future__ import annotations

import keras
from keras import ops

__all__ = ["DiceCELoss", "DiceScore"]


def _one_hot_labels(y_true, num_classes: int, rank: int):
    """Integer labels ``(B, *spatial)`` (or with a trailing axis of 1) one-hot, float32."""
    labels = ops.cast(y_true, "int32")
    if len(labels.shape) == rank + 2:  # (B, *spatial, 1)
        labels = ops.squeeze(labels, -1)
    return ops.one_hot(labels, num_classes, dtype="float32")


@keras.saving.register_keras_serializable(package="senet")
class DiceCELoss(keras.losses.Loss):
    """``dice_weight * (1 - soft Dice) + ce_weight * cross-entropy`` per sample.

    Args:
        dice_weight: Weight of the Dice term.
        ce_weight: Weight of the cross-entropy term.
        smooth: Added to the numerator and denominator of Dice (a class absent from both
            the target and the prediction scores 1, not 0/0).

    ``y_true`` holds class indices ``(B, *spatial)``; ``y_pred`` probabilities
    ``(B, *spatial, K)`` (softmax).
    """

    def __init__(self, dice_weight=1.0, ce_weight=1.0, smooth=1e-5, name="dice_ce", **kwargs):
        super().__init__(name=name, **kwargs)
        self.dice_weight = float(dice_weight)
        self.ce_weight = float(ce_weight)
        self.smooth = float(smooth)

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        rank = len(y_pred.shape) - 2
        target = _one_hot_labels(y_true, y_pred.shape[-1], rank)
        axes = tuple(range(1, rank + 1))
        intersection = ops.sum(y_pred * target, axis=axes)
        total = ops.sum(y_pred, axis=axes) + ops.sum(target, axis=axes)
        dice = (2.0 * intersection + self.smooth) / (total + self.smooth)
        dice_loss = 1.0 - ops.mean(dice, axis=-1)
        log_p = ops.log(ops.clip(y_pred, keras.config.epsilon(), 1.0))
        cross_entropy = ops.mean(-ops.sum(target * log_p, axis=-1), axis=axes)
        return self.dice_weight * dice_loss + self.ce_weight * cross_entropy

    def get_config(self):
        return {
            **super().get_config(),
            "dice_weight": self.dice_weight,
            "ce_weight": self.ce_weight,
            "smooth": self.smooth,
        }


@keras.saving.register_keras_serializable(package="senet")
class DiceScore(keras.metrics.Metric):
    """Hard Dice of ``argmax(y_pred)`` against ``y_true``, pooled over the batches seen.

    Per foreground class ``k`` (1..K-1): ``2 |P_k & T_k| / (|P_k| + |T_k|)`` over every
    pixel seen since the last reset; the result is the mean over the classes that occur in
    the prediction or the target (0 when none does).

    Args:
        num_classes: ``K``, the model's output channels (background included).
        name: The metric's name (``dice``, the segmentation task's score).
    """

    def __init__(self, num_classes, name="dice", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = int(num_classes)
        shape = (self.num_classes,)
        self.intersection = self.add_variable(shape=shape, initializer="zeros", name="inter")
        self.predicted = self.add_variable(shape=shape, initializer="zeros", name="pred")
        self.actual = self.add_variable(shape=shape, initializer="zeros", name="true")

    def update_state(self, y_true, y_pred, sample_weight=None):
        rank = len(y_pred.shape) - 2
        target = _one_hot_labels(y_true, self.num_classes, rank)
        predicted = ops.one_hot(ops.argmax(y_pred, axis=-1), self.num_classes, dtype="float32")
        axes = tuple(range(rank + 1))
        self.intersection.assign_add(ops.sum(predicted * target, axis=axes))
        self.predicted.assign_add(ops.sum(predicted, axis=axes))
        self.actual.assign_add(ops.sum(target, axis=axes))

    def result(self):
        total = (self.predicted + self.actual)[1:]
        dice = 2.0 * self.intersection[1:] / ops.maximum(total, 1.0)
        present = ops.cast(total > 0, "float32")
        return ops.sum(dice * present) / ops.maximum(ops.sum(present), 1.0)

    def reset_state(self):
        for variable in (self.intersection, self.predicted, self.actual):
            variable.assign(ops.zeros(variable.shape, dtype=variable.dtype))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}
