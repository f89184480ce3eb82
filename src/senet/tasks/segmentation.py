"""Segmentation: a class for every pixel (2-D images) or voxel (3-D volumes).

The readers of :mod:`senet.data.masks` (image/mask folders, ``.npz`` masks, a Decathlon
folder of NIfTI volumes, the synthetic face parts and 3-D phantoms), the U-Net
(:func:`senet.models.unet`, attention after every decoder block: ``--attention
scse|se|sse|none``), Dice + cross-entropy (:class:`senet.layers.DiceCELoss`), image and
mask augmented together, and per-class Dice, IoU and 95th-percentile Hausdorff distance
with 95% intervals over cases (:mod:`senet.segmentation.metrics`). The score is the mean
Dice over the foreground classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from senet.names import SEGMENTATION_MODELS
from senet.tasks.base import Task, number_text

__all__ = ["SegmentationTask"]


class SegmentationTask(Task):
    """Images or volumes -> a label map (see the module docstring)."""

    name = "segmentation"
    score = "dice"
    report_files = ("dice.png",)
    loss_name = "Dice + cross-entropy loss"
    models = SEGMENTATION_MODELS

    # ------------------------------------------------------------------ data
    def load_data(self, config) -> dict[str, Any]:
        from senet.data.masks import load_masks

        return load_masks(
            config.data,
            image_size=config.image_size,
            channels=config.channels,
            skip_bad=config.skip_bad,
            ct_window=config.ct_window,
            **config.split_options(),
        )

    def output_names(self, split) -> list[str]:
        return [str(name) for name in split.class_names]

    def augment(self, x, y, seed):
        """:func:`senet.data.pipeline.augment_with_masks`: image and mask moved together."""
        from senet.data.pipeline import augment_with_masks

        return augment_with_masks(x, y, seed)

    def train_transform(self, config):
        """With ``config.patch_size``: a random patch of every volume
        (:func:`senet.data.pipeline.sample_patches`, foreground-weighted), then the
        augmentation when ``config.augment``; else the augmentation alone."""
        augment = self.augment if config.augment else None
        if config.patch_size is None:
            return augment
        import tensorflow as tf

        from senet.data.pipeline import sample_patches

        patch = int(config.patch_size)

        def transform(x, y, seed):
            keys = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=2)
            x, y = sample_patches(x, y, keys[0], patch)
            return (x, y) if augment is None else augment(x, y, keys[1])

        return transform

    def random_targets(self, output_shape, batch: int, rng):
        """Random label maps of the output's spatial shape."""
        shape = tuple(output_shape)
        return rng.integers(0, int(shape[-1]), size=(batch, *shape[1:-1])).astype(np.int32)

    # ------------------------------------------------------------------ model
    def build_model(self, config, output_names: Sequence[str]):
        from senet.names import build_model

        spatial = (config.image_size,) * self._rank(config)
        channels = 1 if len(spatial) == 3 else config.channels
        if config.patch_size is not None:
            if len(spatial) != 3:
                raise ValueError("`patch_size` is for volumes (phantoms, a Decathlon folder)")
            # trained on patches, it labels whole volumes: any size
            spatial = (None, None, None)
        return build_model(
            config.model,
            input_shape=(*spatial, channels),
            num_classes=len(output_names),
            attention=config.attention,
            reduction=config.reduction,
            **config.model_options,
        )

    @staticmethod
    def _rank(config) -> int:
        """3 for volumes (the phantoms, a Decathlon folder), else 2."""
        from senet.data.masks import is_volume_source

        return 3 if is_volume_source(config.data) else 2

    def model_problem(self, model, config, output_names: Sequence[str]) -> str | None:
        """The model must label every pixel of the data's images with one of its classes."""
        try:
            inputs = tuple(model.inputs[0].shape[1:])
            outputs = tuple(model.outputs[0].shape[1:])
        except (AttributeError, ValueError, TypeError, IndexError):
            return None
        if config.patch_size is not None and any(s is not None for s in inputs[:-1]):
            return f"training on patches needs a model taking any size, this one takes {inputs}"
        if len(outputs) != len(inputs) or outputs[:-1] != inputs[:-1]:
            return (
                f"a segmentation model gives a label map the size of its input; this one "
                f"takes {inputs} and gives {outputs}"
            )
        if outputs[-1] != len(output_names):
            return (
                f"the data has {len(output_names)} classes {list(output_names)}, the model "
                f"gives {outputs[-1]} per pixel"
            )
        return None

    def compile_options(self, config, model) -> dict[str, Any]:
        """:class:`senet.layers.DiceCELoss` and :class:`senet.layers.DiceScore` (``dice``)
        over the model's output classes."""
        from senet.layers.losses import DiceCELoss, DiceScore

        return {"loss": DiceCELoss(), "metrics": [DiceScore(int(model.outputs[0].shape[-1]))]}

    def record(self, config, output_names: Sequence[str]) -> dict[str, Any]:
        """Keys: ``task`` (``"segmentation"``: ``senet evaluate`` and ``senet predict`` read
        it), ``patch_size`` and ``ct_window`` (how ``senet predict`` reads and windows a
        volume), ``dataset`` (``"synthetic"``, ``"phantoms"``, ``"npz"`` or ``"folder"``),
        ``data`` (the source's file or folder name), ``image_size``, ``channels``,
        ``input_range``, ``class_names``, ``init_from``."""
        from senet.layers.info import dataset_kind

        synthetic = config.data in ("synthetic", "phantoms")
        return {
            "task": self.name,
            "dataset": str(config.data) if synthetic else dataset_kind(config.data),
            "data": str(config.data) if synthetic else Path(config.data).name,
            "synthetic_difficulty": config.synthetic_difficulty if synthetic else None,
            "image_size": config.image_size,
            "patch_size": config.patch_size,
            "ct_window": config.ct_window,
            "channels": config.channels,
            "input_range": [0, 1],
            "class_names": [str(name) for name in output_names],
            "init_from": Path(config.init_from).name if config.init_from else None,
        }

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, model, split, *, batch_size: int) -> dict[str, Any]:
        """Per-class Dice, IoU and HD95 with 95% intervals over the split's cases
        (:func:`senet.segmentation.segmentation_metrics`); ``dice`` is their mean Dice
        over the foreground classes."""
        from senet.segmentation import segmentation_metrics

        predicted = predict_labels(model, split.x, batch_size=batch_size)
        metrics = segmentation_metrics(
            predicted,
            split.y,
            split.num_classes,
            list(split.class_names),
            spacing=split.spacing,
        )
        return {
            "dice": metrics["mean_dice"],
            "iou": metrics["mean_iou"],
            **metrics,
            "class_names": list(split.class_names),
            "num_examples": len(split),
        }

    def report(
        self,
        metrics: dict[str, Any],
        out_dir: Path,
        *,
        title: str,
        split: str,
        output_names: Sequence[str],
    ) -> list[str]:
        """``dice.png``: Dice per class with its 95% interval over cases."""
        plot_class_dice(
            metrics,
            Path(out_dir) / "dice.png",
            title=f"Dice per class ({split}): {title}, mean {metrics['dice']:.3f}",
        )
        return ["dice.png"]

    def summary(self, metrics: dict[str, Any]) -> str:
        """The mean Dice, then a table of Dice, IoU and HD95 per class with intervals."""
        split = metrics.get("split", "test")
        hd = metrics.get("mean_hd95")
        lines = [
            f"{split} mean Dice {metrics['dice']:.4f}  mean IoU {metrics['iou']:.4f}  "
            f"mean HD95 {'n/a' if hd is None else f'{hd:.2f}'}  "
            f"({metrics['num_examples']} cases)",
            "",
        ]
        names = list(metrics["per_class"])
        width = max(8, *(len(name) for name in names))
        lines.append(f"{'class':<{width}}  {'Dice (95% CI)':>22}  {'IoU':>6}  {'HD95':>7}")
        for name in names:
            row = metrics["per_class"][name]
            lines.append(
                f"{name:<{width}}  {_with_interval(row['dice']):>22}  "
                f"{number_text(row['iou']['mean']):>6}  {number_text(row['hd95']['mean']):>7}"
            )
        return "\n".join(lines)

    # ------------------------------------------------------------------ prediction
    def predictions(self, outputs, output_names: Sequence[str]) -> list[dict[str, Any]]:
        """Per case: the pixel count and fraction of every class in the predicted map."""
        outputs = np.asarray(outputs)
        if outputs.shape[-1] != len(output_names):
            raise ValueError(
                f"Expected {outputs.shape[-1]} `class_names` (one per output channel), "
                f"got {len(output_names)}: {list(output_names)}"
            )
        rows = []
        for case in outputs:
            labels = np.argmax(case, axis=-1)
            counts = np.bincount(labels.ravel(), minlength=len(output_names))
            rows.append(
                {
                    "shape": list(labels.shape),
                    "pixels": {str(n): int(c) for n, c in zip(output_names, counts, strict=True)},
                    "fraction": {
                        str(n): float(c / labels.size)
                        for n, c in zip(output_names, counts, strict=True)
                    },
                }
            )
        return rows


def predict_labels(model, x: np.ndarray, *, batch_size: int) -> np.ndarray:
    """The argmax label map of ``model`` (Keras or exported) for every case of ``x``,
    batch by batch: the probabilities of one batch at a time are held, never the whole
    split's. A Keras model is called directly, which reads mirrored weights too (a
    distributed ``predict`` would hand every replica a share of the batch)."""
    from senet.inference import ExportedModel

    out = []
    for start in range(0, len(x), batch_size):
        chunk = x[start : start + batch_size]
        if isinstance(model, ExportedModel):
            probabilities = model(chunk)
        else:
            import keras

            probabilities = keras.ops.convert_to_numpy(model(chunk, training=False))
        out.append(np.argmax(np.asarray(probabilities), axis=-1).astype(np.uint8))
    return np.concatenate(out) if out else np.zeros((0, *x.shape[1:-1]), np.uint8)


def _with_interval(stat: dict[str, Any]) -> str:
    if stat["mean"] is None:
        return "n/a"
    if stat.get("low") is None:
        return f"{stat['mean']:.3f}"
    return f"{stat['mean']:.3f} ({stat['low']:.3f}-{stat['high']:.3f})"


def plot_class_dice(metrics: dict[str, Any], path: Path, *, title: str) -> None:
    """A bar of Dice per class with its 95% interval over cases."""
    from matplotlib.figure import Figure

    from senet._files import save_figure

    names = list(metrics["per_class"])
    means = [metrics["per_class"][n]["dice"]["mean"] or 0.0 for n in names]
    lows = [metrics["per_class"][n]["dice"].get("low") for n in names]
    highs = [metrics["per_class"][n]["dice"].get("high") for n in names]
    errors = np.array(
        [
            [m - (lo if lo is not None else m) for m, lo in zip(means, lows, strict=True)],
            [(hi if hi is not None else m) - m for m, hi in zip(means, highs, strict=True)],
        ]
    )
    figure = Figure(figsize=(max(4.0, 1.1 * len(names) + 1.5), 3.6), layout="constrained")
    axis = figure.subplots()
    axis.bar(names, means, yerr=errors, capsize=4, color="#4c72b0")
    axis.set_ylim(0, 1)
    axis.set_ylabel("Dice")
    axis.set_title(title, fontsize=9)
    save_figure(figure, path, dpi=120)
