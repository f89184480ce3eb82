"""Training runs that survive being killed, and the metrics shared by training and evaluation.

:func:`train` fits a model from a :class:`TrainConfig` into a run directory::

    RUN_DIR/config.json          the TrainConfig (what `--resume` reads back)
    RUN_DIR/state.json           last finished epoch, history rows, the checkpoints kept
    RUN_DIR/checkpoints/         epoch-0001.keras, epoch-0002.keras, ... (the last 2 kept)
    RUN_DIR/history.csv          one row per finished epoch
    RUN_DIR/model.keras          the final model (with its optimizer state)
    RUN_DIR/metrics.json         test metrics (see :func:`classification_metrics`), params,
                                 epochs run and ``class_names`` (predict reads them here)
    RUN_DIR/curves.png, confusion.png
    RUN_DIR/logs/                TensorBoard logs (``tensorboard=True``)

Fault tolerance: at every epoch end the full model (weights and optimizer state) is written
to a temporary file in ``checkpoints/``, fsynced and renamed over its final name, and only then
``state.json`` (written the same way) names it, together with the state of the model's random
seed generators (dropout), which ``.keras`` files do not hold. The data order and the
augmentation of epoch ``e`` are functions of ``(seed, e)`` alone. So a run killed at any moment
(``kill -9`` included) and resumed with ``train(..., resume=True)`` reloads its last finished
epoch and ends with the same weights as an uninterrupted run (exactly, on the TensorFlow CPU
backend with ``deterministic=True``, the default).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
import os
import re
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from senet._files import TEMP_PREFIX, atomic_write, atomic_write_text
from senet.data import ImageSet, load_dataset
from senet.layers import kinds, load_model
from senet.report import plot_confusion, plot_curves

__all__ = [
    "MODEL_NAMES",
    "RunResult",
    "TrainConfig",
    "TrainingDiverged",
    "build_model",
    "classification_metrics",
    "evaluate",
    "evaluate_model",
    "load_run_data",
    "train",
]

# CIFAR-style (6n+2) and ImageNet depths resnet() builds; "resnet<depth>" names them.
_RESNET_DEPTHS = (20, 32, 44, 56, 110, 18, 34, 50, 101, 152)
MODEL_NAMES = ("emotion_cnn", *(f"resnet{depth}" for depth in _RESNET_DEPTHS))
_OPTIMIZERS = ("adam", "adamw", "sgd")
_DISTRIBUTE = ("none", "mirrored", "multiworker")
LR_SCHEDULES = ("constant", "cosine")
_CHECKPOINT_RE = re.compile(r"^epoch-(\d{4,})\.keras$")
_HISTORY_KEYS = (
    "epoch",
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "learning_rate",
    "seconds",
)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the run directory keeps its last good checkpoint."""

    exit_status = 1  # the `senet` command's exit status for it

    def __init__(self, message: str, *, epoch: int, checkpoint: Path | None):
        super().__init__(message)
        self.epoch = epoch
        self.checkpoint = checkpoint


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved as ``RUN_DIR/config.json``.

    Attributes:
        data: A FER2013 csv, an image folder, an ``.npz`` (``x``, ``y``) or ``"synthetic"``.
        model: ``"emotion_cnn"`` or ``"resnet<depth>"`` (see ``MODEL_NAMES``).
        attention: An attention kind (``"se"``, ``"eca"``, ``"sse"``, ``"scse"``, ``"cbam"``)
            or ``"none"``.
        reduction: Bottleneck reduction ratio of the attention layers.
        epochs: Total epochs of the run (a resumed run ends at the same count).
        batch_size: Global batch size (split across replicas when distributed).
        learning_rate: Learning rate of the optimizer (the start of the schedule).
        lr_schedule: ``"constant"`` or ``"cosine"`` (decays from ``learning_rate`` to 0 over
            the run's steps, so the last epochs settle instead of jumping around; the step
            counter is in the optimizer's state, so a resumed run follows the same curve).
        optimizer: ``"adam"``, ``"adamw"`` (weight decay 1e-4) or ``"sgd"`` (Nesterov, 0.9).
        seed: Seeds weights, dropout, the data order and augmentation.
        split_seed: Seeds the train/val/test split (and synthetic data), kept apart from
            ``seed`` so runs with different seeds are tested on the same images.
        image_size: Side of the square images fed to the model.
        channels: 1 (grey) or 3 (RGB).
        val_fraction: Fraction of the data held out for validation.
        test_fraction: Fraction held out for the final test metrics.
        synthetic_size: Number of images when ``data="synthetic"``.
        skip_bad: Skip unreadable samples instead of failing (with a warning).
        augment: Random flips, shifts and brightness/contrast changes of training images.
        class_weights: Weight the loss by inverse class frequency (FER2013 is imbalanced).
        tensorboard: Write TensorBoard logs to ``RUN_DIR/logs``.
        distribute: ``"none"``, ``"mirrored"`` (all local devices) or ``"multiworker"``
            (``TF_CONFIG``); on the JAX backend both mean ``keras.distribution.DataParallel``.
        mixed_precision: ``mixed_float16`` on a GPU, else ``mixed_bfloat16``.
        deterministic: TensorFlow op determinism (turns XLA off), so a seed repeats a run.
        keep_checkpoints: How many epoch checkpoints to keep (at least 1).
    """

    data: str = "synthetic"
    model: str = "emotion_cnn"
    attention: str = "se"
    reduction: float = 8
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    lr_schedule: str = "constant"
    optimizer: str = "adam"
    seed: int = 0
    split_seed: int = 0
    image_size: int = 48
    channels: int = 1
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    synthetic_size: int = 7000
    skip_bad: bool = False
    augment: bool = True
    class_weights: bool = False
    tensorboard: bool = False
    distribute: str = "none"
    mixed_precision: bool = False
    deterministic: bool = True
    keep_checkpoints: int = 2

    def __post_init__(self):
        self.data = os.fspath(self.data)
        self.attention = "none" if self.attention is None else self.attention
        _check_choice("model", self.model, MODEL_NAMES)
        _check_choice("attention", self.attention, (*kinds(), "none"))
        _check_choice("optimizer", self.optimizer, _OPTIMIZERS)
        _check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _check_choice("distribute", self.distribute, _DISTRIBUTE)
        for name in ("epochs", "batch_size", "image_size", "synthetic_size", "keep_checkpoints"):
            _check_number(name, getattr(self, name), integer=True, minimum=1)
        for name in ("seed", "split_seed"):
            _check_number(name, getattr(self, name), integer=True, minimum=0)
        _check_number("reduction", self.reduction, minimum=1)
        _check_number("learning_rate", self.learning_rate, minimum=0, open_minimum=True)
        _check_choice("channels", self.channels, (1, 3))
        for name in ("val_fraction", "test_fraction"):
            _check_number(name, getattr(self, name), minimum=0, maximum=0.9)
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError(
                "Expected `val_fraction + test_fraction` to be below 1. Received: "
                f"val_fraction={self.val_fraction}, test_fraction={self.test_fraction}"
            )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build a config from a dict (e.g. ``config.json``); unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown TrainConfig field(s) {unknown}. Allowed: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class RunResult:
    """What :func:`train` returns.

    Attributes:
        out_dir: The run directory.
        model: The trained model.
        history: One dict per finished epoch (the rows of ``history.csv``).
        metrics: The contents of ``metrics.json``.
        epochs_run: Finished epochs in total (those before a resume included).
        resumed_from: Finished epochs found when the run was resumed (0 for a new run).
        replicas: Devices the model was trained on in sync (1 unless distributed).
        config: The run's config.
    """

    out_dir: Path
    model: Any
    history: list[dict[str, float]]
    metrics: dict[str, Any]
    epochs_run: int
    resumed_from: int = 0
    replicas: int = 1
    config: TrainConfig = field(default_factory=TrainConfig)


def _check_choice(name: str, value, allowed: Sequence) -> None:
    if value not in allowed:
        raise ValueError(
            f"Expected `{name}` to be one of {tuple(allowed)}. Received: {name}={value!r}"
        )


def _check_number(
    name: str,
    value,
    *,
    integer: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
    open_minimum: bool = False,
) -> None:
    kind = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    ok = isinstance(value, kind) and not isinstance(value, bool) and math.isfinite(value)
    if ok and minimum is not None:
        ok = value > minimum if open_minimum else value >= minimum
    if ok and maximum is not None:
        ok = value <= maximum
    if not ok:
        what = "an integer" if integer else "a number"
        bounds = []
        if minimum is not None:
            bounds.append(f"{'>' if open_minimum else '>='} {minimum}")
        if maximum is not None:
            bounds.append(f"<= {maximum}")
        allowed = f"{what} {' and '.join(bounds)}".strip()
        raise ValueError(f"Expected `{name}` to be {allowed}. Received: {name}={value!r}")


# --------------------------------------------------------------------------- models


def build_model(
    name: str,
    *,
    input_shape: Sequence[int],
    num_classes: int,
    attention: str | None = "se",
    reduction: float = 8,
) -> keras.Model:
    """Build a network by name: ``"emotion_cnn"`` or ``"resnet<depth>"`` (``MODEL_NAMES``)."""
    from senet import models

    _check_choice("model", name, MODEL_NAMES)
    if name == "emotion_cnn":
        from senet.models.emotion import emotion_cnn

        return emotion_cnn(
            tuple(input_shape), num_classes, attention=attention, reduction=reduction
        )
    return models.resnet(
        int(name.removeprefix("resnet")),
        input_shape=tuple(input_shape),
        num_classes=num_classes,
        attention=attention,
        reduction=reduction,
    )


def load_run_data(config: TrainConfig) -> dict[str, ImageSet]:
    """The ``{"train", "val", "test"}`` splits a run with ``config`` trains and tests on.

    The one place a run's settings turn into data, so code that inspects a run afterwards
    (the demo's explanations, for example) sees exactly the images the run saw.
    """
    return load_dataset(
        config.data,
        image_size=config.image_size,
        channels=config.channels,
        val_fraction=config.val_fraction,
        test_fraction=config.test_fraction,
        seed=config.split_seed,
        skip_bad=config.skip_bad,
        synthetic_size=config.synthetic_size,
    )


def _optimizer(name: str, learning_rate) -> keras.optimizers.Optimizer:
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=True)
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate, weight_decay=1e-4)
    return keras.optimizers.Adam(learning_rate)


def _learning_rate(config: TrainConfig, steps_per_epoch: int):
    if config.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            config.learning_rate, decay_steps=max(1, config.epochs * steps_per_epoch)
        )
    return config.learning_rate


def _compile(model: keras.Model, config: TrainConfig, steps_per_epoch: int = 1) -> None:
    model.compile(
        optimizer=_optimizer(config.optimizer, _learning_rate(config, steps_per_epoch)),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


# --------------------------------------------------------------------------- metrics


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
            f"Expected `probabilities` of shape ({labels.shape[0]}, {num_classes}) for "
            f"{labels.shape[0]} labels and {num_classes} classes. "
            f"Received shape {probabilities.shape}"
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


def evaluate_model(model: keras.Model, images: ImageSet, *, batch_size: int = 64) -> dict[str, Any]:
    """:func:`classification_metrics` of ``model`` on ``images`` (the one metrics path)."""
    if len(images) == 0:
        raise ValueError("Cannot evaluate on an empty split (0 images).")
    import tensorflow as tf

    if _replicas_of(model) > 1:
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


def evaluate(
    model_path: str | os.PathLike,
    data: str | os.PathLike,
    *,
    split: str = "test",
    out_dir: str | os.PathLike | None = None,
    batch_size: int = 64,
    skip_bad: bool = False,
) -> dict[str, Any]:
    """Evaluate a saved model on one split of a data source.

    Image size and channels come from the model's input. When ``config.json`` of the run
    sits beside the model (or one level up, for a checkpoint), its split settings are used,
    so ``split="test"`` is the same held-out set the run was tested on.

    Args:
        model_path: A ``.keras`` file.
        data: Any source :func:`senet.data.load_dataset` reads.
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"`` (every image).
        out_dir: Where to write ``metrics.json`` and ``confusion.png`` (None: nothing).
        batch_size: Inference batch size.
        skip_bad: Skip unreadable samples instead of failing.

    Returns:
        The metrics dict (as in training's ``metrics.json``), plus ``split`` and ``model``.
    """
    _check_choice("split", split, ("train", "val", "test", "all"))
    model_path = Path(model_path)
    if not model_path.is_file():
        raise FileNotFoundError(f"model file not found: {model_path}")
    model = load_model(model_path)
    _, height, width, channels = model.input_shape
    if height != width or height is None:
        raise ValueError(
            f"Expected a model with a square, known input size. Received {model.input_shape}"
        )
    split_options = {"val_fraction": 0.1, "test_fraction": 0.1, "seed": 0, "synthetic_size": 7000}
    run_config = _run_config_near(model_path)
    if run_config is not None:
        split_options.update(
            val_fraction=run_config.val_fraction,
            test_fraction=run_config.test_fraction,
            seed=run_config.split_seed,
            synthetic_size=run_config.synthetic_size,
        )
    sets = load_dataset(
        data, image_size=int(height), channels=int(channels), skip_bad=skip_bad, **split_options
    )
    if split == "all":
        images = _concatenate([sets["train"], sets["val"], sets["test"]])
    else:
        images = sets[split]
    outputs = model.output_shape[-1]
    if outputs != images.num_classes:
        raise ValueError(
            f"The model has {outputs} outputs but the data has {images.num_classes} classes "
            f"{list(images.class_names)}."
        )
    metrics = evaluate_model(model, images, batch_size=batch_size)
    metrics.update(split=split, model=str(model_path), params=int(model.count_params()))
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / "metrics.json", json.dumps(metrics, indent=2))
        plot_confusion(
            metrics["confusion_matrix"],
            metrics["class_names"],
            out_dir / "confusion.png",
            title=f"Confusion matrix ({split}, accuracy {metrics['accuracy']:.3f})",
        )
    return metrics


def _concatenate(sets: list[ImageSet]) -> ImageSet:
    sets = [images for images in sets if len(images)]
    return ImageSet(
        np.concatenate([s.x for s in sets]),
        np.concatenate([s.y for s in sets]),
        sets[0].class_names,
    )


def _run_config_near(model_path: Path) -> TrainConfig | None:
    for directory in (model_path.parent, model_path.parent.parent):
        path = directory / "config.json"
        if path.is_file():
            with contextlib.suppress(OSError, ValueError, TypeError):
                return TrainConfig.from_dict(json.loads(path.read_text()))
    return None


# --------------------------------------------------------------------------- run files


def _write_history_csv(path: Path, rows: list[dict[str, float]]) -> None:
    keys = [key for key in _HISTORY_KEYS if any(key in row for row in rows)]
    keys += sorted({key for row in rows for key in row} - set(keys))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


# --------------------------------------------------------------------------- run state


def _seed_states(model: keras.Model) -> list:
    """The model's random seed generator states (dropout): ``.keras`` files do not save them."""
    weights = {id(variable) for variable in model.weights}
    return [variable for variable in model.variables if id(variable) not in weights]


def _get_seed_states(model: keras.Model) -> list[list[int]]:
    # in model order; variable paths are no key (they carry global name counters)
    return [
        np.asarray(keras.ops.convert_to_numpy(variable)).tolist()
        for variable in _seed_states(model)
    ]


def _set_seed_states(model: keras.Model, states: list[list[int]]) -> None:
    variables = _seed_states(model)
    if len(variables) != len(states):
        warnings.warn(
            f"The checkpoint holds {len(states)} random seed states, the model has "
            f"{len(variables)}; dropout masks after the resume will differ from those of an "
            "uninterrupted run.",
            stacklevel=3,
        )
        return
    for variable, value in zip(variables, states, strict=True):
        dtype = keras.backend.standardize_dtype(variable.dtype)
        variable.assign(np.asarray(value, dtype=dtype))


def _read_state(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "state.json"
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        warnings.warn(f"Ignoring unreadable {path}: {error}", stacklevel=3)
        return None
    if not isinstance(state, dict) or not isinstance(state.get("checkpoints"), list):
        warnings.warn(f"Ignoring malformed {path}", stacklevel=3)
        return None
    return state


def _remove_temporary_files(run_dir: Path) -> None:
    """Leftovers of a write that was killed half-way; never read, safe to delete."""
    for directory in (run_dir, run_dir / "checkpoints"):
        if directory.is_dir():
            for path in directory.glob(f"{TEMP_PREFIX}*"):
                with contextlib.suppress(OSError):
                    path.unlink()


def _restore(run_dir: Path, state: dict[str, Any] | None):
    """Load the newest readable checkpoint named in ``state``: (model, entry) or (None, None)."""
    if state is None:
        return None, None
    for entry in sorted(state["checkpoints"], key=lambda e: e.get("epoch", -1), reverse=True):
        path = run_dir / "checkpoints" / str(entry.get("file", ""))
        try:
            model = load_model(path)
        except Exception as error:  # noqa: BLE001 - any unreadable file means: try an older one
            warnings.warn(f"Skipping unreadable checkpoint {path}: {error}", stacklevel=3)
            continue
        _set_seed_states(model, entry.get("rng", []))
        return model, entry
    return None, None


class _RunCheckpoint(keras.callbacks.Callback):
    """Saves the model at each epoch end (atomically), then records it in ``state.json``.

    Stops training on a non-finite loss and then writes nothing for that epoch.
    """

    def __init__(
        self,
        run_dir: Path,
        rows: list[dict[str, float]],
        entries: list[dict[str, Any]],
        *,
        keep: int,
        class_names: Sequence[str],
        write: bool = True,
    ):
        super().__init__()
        self.run_dir = run_dir
        self.rows = rows
        self.entries = entries
        self.keep = keep
        self.class_names = list(class_names)
        self.write = write
        self.diverged: tuple[int, int | None] | None = None
        self._started = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if self.diverged is None and loss is not None and not np.isfinite(float(loss)):
            self.diverged = (self._epoch_index, batch)
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if self.diverged is None:
            bad = [k for k in ("loss", "val_loss") if k in logs and not np.isfinite(logs[k])]
            if bad:
                self.diverged = (epoch, None)
                self.model.stop_training = True
        if self.diverged is not None:
            return
        row = {"epoch": epoch + 1}
        row.update({key: float(value) for key, value in logs.items()})
        with contextlib.suppress(AttributeError, TypeError, ValueError):
            row["learning_rate"] = float(
                keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
            )
        row["seconds"] = round(time.perf_counter() - self._started, 3)
        self.rows.append(row)
        if not self.write:
            return
        name = f"epoch-{epoch + 1:04d}.keras"
        atomic_write(self.run_dir / "checkpoints" / name, self.model.save)
        self.entries.append({"epoch": epoch + 1, "file": name, "rng": _get_seed_states(self.model)})
        kept, dropped = self.entries[-self.keep :], self.entries[: -self.keep]
        self.entries[:] = kept
        _write_state(self.run_dir, self.rows, self.entries, self.class_names)
        _write_history_csv(self.run_dir / "history.csv", self.rows)
        # delete only after the state no longer names them
        for entry in dropped:
            with contextlib.suppress(OSError):
                (self.run_dir / "checkpoints" / entry["file"]).unlink()

    # Keras does not pass the epoch to batch hooks
    @property
    def _epoch_index(self) -> int:
        return len(self.rows)


class _EpochScalarLogs(keras.callbacks.Callback):
    """Epoch metrics as TensorBoard event files in ``log_dir/train`` and ``log_dir/validation``
    (tags ``epoch_loss``, ``epoch_accuracy``, ..., as Keras' TensorBoard callback names them).

    Keras' callback needs the ``tensorboard`` package, which tensorflow-cpu 2.21 no longer
    installs (``TBNotInstalledError`` at the first epoch end); TensorFlow's own summary writer
    does not, so the package is only needed to view the logs.
    """

    def __init__(self, log_dir: Path):
        super().__init__()
        self.log_dir = Path(log_dir)
        self._writers: dict[str, Any] = {}

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        # the metadata tensorboard.summary.scalar attaches: TensorBoard shows them as scalars
        metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
        )
        for name, value in (logs or {}).items():
            split, key = ("validation", name[4:]) if name.startswith("val_") else ("train", name)
            if split not in self._writers:
                self._writers[split] = tf.summary.create_file_writer(str(self.log_dir / split))
            with self._writers[split].as_default():
                tf.summary.write(
                    f"epoch_{key}", tf.constant(float(value)), step=epoch, metadata=metadata
                )
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


def _write_state(run_dir: Path, rows, entries, class_names) -> None:
    state = {
        "epochs_done": rows[-1]["epoch"] if rows else 0,
        "checkpoint": entries[-1]["file"] if entries else None,
        "checkpoints": entries,
        "class_names": list(class_names),
        "history": rows,
    }
    atomic_write_text(run_dir / "state.json", json.dumps(state, indent=1))


# --------------------------------------------------------------------------- data


def _train_dataset(
    images: ImageSet,
    *,
    batch_size: int,
    seed: int,
    first_epoch: int,
    epochs: int,
    augment: bool,
    sample_weights: np.ndarray | None,
    replicas: int = 1,
):
    """Batches of epochs ``first_epoch .. epochs-1``, each epoch's order and augmentation a
    function of ``(seed, epoch)`` only, so a resumed run sees exactly the batches it would
    have seen had it not stopped. Fit it with ``steps_per_epoch=ceil(N / batch_size)``.
    """
    import tensorflow as tf

    from senet.data import augment_batch

    count = len(images)
    x = tf.constant(images.x)
    y = tf.constant(images.y)
    weights = None if sample_weights is None else tf.constant(sample_weights, tf.float32)

    def epoch_batches(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(count), seed=tf.stack([tf.constant(seed, tf.int64), epoch])
        )
        # different images left out every epoch: the order is shuffled
        order = order[: _replica_multiple(count, replicas)]
        batches = tf.data.Dataset.from_tensor_slices(order).batch(batch_size).enumerate()
        return batches.map(lambda step, index: (epoch, step, index))

    def gather(epoch, step, index):
        batch_x = tf.gather(x, index)
        if augment:
            batch_x = augment_batch(batch_x, seed=tf.stack([seed * 1_000_003 + epoch, step]))
        batch_y = tf.gather(y, index)
        if weights is None:
            return batch_x, batch_y
        return batch_x, batch_y, tf.gather(weights, index)

    dataset = tf.data.Dataset.range(first_epoch, epochs).flat_map(epoch_batches)
    dataset = dataset.map(gather)
    options = tf.data.Options()
    # in-memory data: shard by batch, not by file, across workers
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def _replicas_of(model) -> int:
    strategy = getattr(model, "distribute_strategy", None)
    if strategy is not None:
        return int(getattr(strategy, "num_replicas_in_sync", 1) or 1)
    # JAX: a keras.distribution in scope splits every batch predict() sees over its batch axis
    distribution = keras.distribution.distribution()
    mesh = getattr(distribution, "device_mesh", None)
    if mesh is None or getattr(distribution, "batch_dim_name", None) not in mesh.axis_names:
        return 1
    return int(mesh.shape[mesh.axis_names.index(distribution.batch_dim_name)])


def _replica_multiple(count: int, replicas: int) -> int:
    """How many of ``count`` images a distributed step can use: a multiple of ``replicas``.

    An empty shard breaks a distributed step (a last batch smaller than the replica count
    gives some replica nothing), so distributed training and validation leave out up to
    ``replicas - 1`` images per pass; metrics on the test split use every image.
    """
    if replicas <= 1 or count < replicas:
        return count
    return count - count % replicas


def _even_batch_size(batch_size: int, count: int, replicas: int) -> int:
    """A batch size whose first batch splits evenly over ``replicas``.

    Keras' TF trainer reduces the first batch across replicas to build the model, which fails
    when a short split (fewer images than a batch) gives replicas batches of unequal size.
    """
    if replicas <= 1 or count < replicas:
        return batch_size
    return max(replicas, min(batch_size, count) // replicas * replicas)


def _eval_dataset(images: ImageSet, batch_size: int, replicas: int = 1):
    import tensorflow as tf

    batch_size = _even_batch_size(batch_size, len(images), replicas)
    dataset = tf.data.Dataset.from_tensor_slices((images.x, images.y))
    dataset = dataset.take(_replica_multiple(len(images), replicas)).batch(batch_size)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


# --------------------------------------------------------------------------- environment


@contextlib.contextmanager
def _dtype_policy(mixed_precision: bool):
    previous = keras.config.dtype_policy()
    if mixed_precision:
        keras.config.set_dtype_policy("mixed_float16" if _has_gpu() else "mixed_bfloat16")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _has_gpu() -> bool:
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return any(device.platform == "gpu" for device in jax.devices())
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    return False


def _distribution_scope(kind: str):
    """``(scope, is_chief, replicas)`` for ``kind``: build and compile inside ``scope``."""
    if kind == "none":
        return contextlib.nullcontext(), True, 1
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if kind == "mirrored":
            # MirroredStrategy() alone takes the GPUs or else CPU:0 only; without GPUs use
            # every logical CPU device (tf.config.set_logical_device_configuration)
            devices = None
            if not tf.config.list_logical_devices("GPU"):
                devices = [device.name for device in tf.config.list_logical_devices("CPU")]
            strategy = tf.distribute.MirroredStrategy(devices)
        else:
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        return strategy.scope(), _is_chief(), int(strategy.num_replicas_in_sync)
    if backend == "jax":
        if kind == "multiworker":
            keras.distribution.initialize()
        import jax

        distribution = keras.distribution.DataParallel()
        return distribution.scope(), jax.process_index() == 0, len(jax.devices())
    raise ValueError(
        f"Expected `distribute` to be 'none' on the {backend} backend (mirrored and "
        f"multiworker need tensorflow or jax). Received: distribute={kind!r}"
    )


def _is_chief() -> bool:
    """Whether this worker writes the run directory (TF_CONFIG's chief, else worker 0)."""
    try:
        tf_config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    except ValueError:
        return True
    task = tf_config.get("task", {})
    if task.get("type") in (None, "chief"):
        return True
    has_chief = "chief" in tf_config.get("cluster", {})
    return task.get("type") == "worker" and task.get("index", 0) == 0 and not has_chief


def _seed_everything(seed: int, deterministic: bool) -> None:
    keras.utils.set_random_seed(seed)
    if deterministic and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


# --------------------------------------------------------------------------- train


def _resolve_config(config, run_dir: Path, resume: bool) -> TrainConfig:
    config_path = run_dir / "config.json"
    if resume:
        if not config_path.is_file():
            raise FileNotFoundError(
                f"cannot resume: {config_path} not found (is {run_dir} a run directory?)"
            )
        try:
            saved = TrainConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as error:
            raise ValueError(
                f"cannot resume: {config_path} is not a valid config: {error}"
            ) from None
        if config is None:
            return saved
        given = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
        differ = sorted(
            key
            for key, value in given.to_dict().items()
            if value != getattr(saved, key) and key not in ("tensorboard",)
        )
        if differ:
            raise ValueError(
                f"cannot resume {run_dir} with a different config: {differ} differ from "
                f"{config_path}; resume with config=None to use the saved one"
            )
        return saved
    if config is None:
        raise ValueError("Expected a TrainConfig or dict for `config` (None only with resume=True)")
    config = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(dict(config))
    if (run_dir / "config.json").exists() or (run_dir / "state.json").exists():
        raise ValueError(
            f"{run_dir} already holds a run; resume it (resume=True, `--resume`) or choose "
            "another output directory"
        )
    return config


def _model_for_run(
    config: TrainConfig, run_dir: Path, state, *, num_classes: int, steps_per_epoch: int
):
    """The resumed model (newest readable checkpoint) or a new compiled one, with
    ``(epochs_done, history rows, checkpoint entries)``."""
    with _dtype_policy(config.mixed_precision):
        model, entry = _restore(run_dir, state)
        if model is not None:
            epochs_done = int(entry["epoch"])
            rows = [row for row in state.get("history", []) if row.get("epoch", 0) <= epochs_done]
            entries = [e for e in state["checkpoints"] if e["epoch"] <= epochs_done]
            return model, epochs_done, rows, entries
        if state is not None and state["checkpoints"]:
            warnings.warn(
                f"No readable checkpoint in {run_dir / 'checkpoints'}; starting over.",
                stacklevel=3,
            )
        model = build_model(
            config.model,
            input_shape=(config.image_size, config.image_size, config.channels),
            num_classes=num_classes,
            attention=config.attention,
            reduction=config.reduction,
        )
        _compile(model, config, steps_per_epoch)
    return model, 0, [], []


def _sample_weights(images: ImageSet, balanced: bool) -> np.ndarray | None:
    if not balanced:
        return None
    from senet.data import class_weights

    table = class_weights(images.y, images.num_classes)
    return np.asarray([table[k] for k in range(images.num_classes)], np.float32)[images.y]


def train(
    config: TrainConfig | dict[str, Any] | None,
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    callbacks: Iterable[keras.callbacks.Callback] | None = None,
    verbose: int | str = "auto",
) -> RunResult:
    """Train a model into a run directory, resumable after any interruption.

    Args:
        config: A :class:`TrainConfig` or a dict of its fields. With ``resume=True`` it may
            be None (the run's ``config.json`` is used); otherwise it must match it.
        out_dir: The run directory (created). A new run refuses a directory that already
            holds one, so nothing written before is overwritten.
        resume: Continue the run in ``out_dir`` from its last finished epoch (or start it
            if it never finished one). A finished run just rewrites its final artefacts.
        callbacks: Extra Keras callbacks (run after the checkpoint callback).
        verbose: Keras ``fit`` verbosity (1: a progress bar per epoch).

    Returns:
        A :class:`RunResult`.

    Raises:
        TrainingDiverged: The loss became NaN/inf; the last good checkpoint is kept.
        ValueError: Bad config values (the message names the field), or a data error
            (``senet.data.DataError``).

    Example:
        >>> result = train({"data": "synthetic", "synthetic_size": 210, "image_size": 24,
        ...                 "epochs": 2}, "runs/tiny", verbose=0)  # doctest: +SKIP
        >>> sorted(result.metrics)[:3]  # doctest: +SKIP
        ['accuracy', 'attention', 'class_names']
    """
    run_dir = Path(out_dir)
    config = _resolve_config(config, run_dir, resume)

    sets = load_run_data(config)
    train_set, val_set, test_set = sets["train"], sets["val"], sets["test"]
    if len(train_set) == 0:
        raise ValueError(f"No training images in {config.data!r} after the split.")
    class_names = train_set.class_names
    # only now, so bad data leaves no half-made run behind
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    if not resume or not (run_dir / "config.json").exists():
        atomic_write_text(run_dir / "config.json", json.dumps(config.to_dict(), indent=2))
    _remove_temporary_files(run_dir)

    _seed_everything(config.seed, config.deterministic)
    scope, is_chief, replicas = _distribution_scope(config.distribute)
    state = _read_state(run_dir) if resume else None
    if replicas > 1 and config.batch_size % replicas:
        raise ValueError(
            f"Expected `batch_size` to be a multiple of the {replicas} replicas. "
            f"Received: batch_size={config.batch_size}"
        )
    # JAX's DataParallel shards the batches fit() sees, so fit runs inside the scope too
    # the batches _train_dataset makes per epoch (a distributed run drops < replicas images)
    steps_per_epoch = math.ceil(_replica_multiple(len(train_set), replicas) / config.batch_size)
    with scope:
        model, epochs_done, rows, entries = _model_for_run(
            config,
            run_dir,
            state,
            num_classes=len(class_names),
            steps_per_epoch=steps_per_epoch,
        )
        checkpoint = _RunCheckpoint(
            run_dir,
            rows,
            entries,
            keep=config.keep_checkpoints,
            class_names=class_names,
            write=is_chief,
        )
        all_callbacks: list[keras.callbacks.Callback] = [checkpoint]
        if config.tensorboard:
            all_callbacks.append(_EpochScalarLogs(run_dir / "logs"))
        all_callbacks.extend(callbacks or ())
        if epochs_done < config.epochs:
            model.fit(
                _train_dataset(
                    train_set,
                    batch_size=config.batch_size,
                    seed=config.seed,
                    first_epoch=epochs_done,
                    epochs=config.epochs,
                    augment=config.augment,
                    sample_weights=_sample_weights(train_set, config.class_weights),
                    replicas=replicas,
                ),
                epochs=config.epochs,
                initial_epoch=epochs_done,
                steps_per_epoch=steps_per_epoch,
                validation_data=(
                    _eval_dataset(val_set, config.batch_size, replicas) if len(val_set) else None
                ),
                callbacks=all_callbacks,
                shuffle=False,  # the dataset is already ordered by (seed, epoch)
                verbose=verbose,
            )
        if checkpoint.diverged is not None:
            epoch, batch = checkpoint.diverged
            last = run_dir / "checkpoints" / entries[-1]["file"] if entries else None
            where = f"epoch {epoch + 1}" + (f", batch {batch + 1}" if batch is not None else "")
            kept = f"last good checkpoint: {last}" if last else "no good checkpoint was written"
            raise TrainingDiverged(
                f"training stopped: the loss became NaN/inf at {where} "
                f"(learning_rate={config.learning_rate}); {kept}",
                epoch=epoch + 1,
                checkpoint=last,
            )
        metrics = _finish(model, config, run_dir, rows, class_names, test_set, val_set, is_chief)
    return RunResult(
        out_dir=run_dir,
        model=model,
        history=list(rows),
        metrics=metrics,
        epochs_run=len(rows),
        resumed_from=epochs_done,
        replicas=replicas,
        config=config,
    )


def _finish(model, config, run_dir, rows, class_names, test_set, val_set, is_chief):
    """Final model, history.csv, metrics.json and figures."""
    split, images = ("test", test_set) if len(test_set) else ("val", val_set)
    if len(images) == 0:
        raise ValueError("No test or validation images to compute the final metrics on.")
    metrics = evaluate_model(model, images, batch_size=config.batch_size)
    metrics = {
        "test_accuracy" if split == "test" else "val_accuracy": metrics["accuracy"],
        **metrics,
        "split": split,
        "model": config.model,
        "attention": config.attention,
        "params": int(model.count_params()),
        "epochs_run": len(rows),
        "best_val_accuracy": max(
            (row["val_accuracy"] for row in rows if "val_accuracy" in row), default=None
        ),
        "train_seconds": round(sum(row.get("seconds", 0.0) for row in rows), 3),
    }
    if not is_chief:
        return metrics
    atomic_write(run_dir / "model.keras", model.save)
    _write_history_csv(run_dir / "history.csv", rows)
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))
    title = f"{config.model} ({config.attention})"
    plot_curves(rows, run_dir / "curves.png", title=f"Training curves: {title}")
    plot_confusion(
        metrics["confusion_matrix"],
        list(class_names),
        run_dir / "confusion.png",
        title=f"Confusion matrix ({split}): {title}, accuracy {metrics['accuracy']:.3f}",
    )
    return metrics
