"""``senet evaluate``: a saved classifier's metrics on one split of a data source.

:func:`evaluate` loads a ``.keras`` file, or one exported by ``senet export`` (``.tflite``,
``.onnx``, a SavedModel directory), through :func:`senet.inference.load_classifier`, reads the
data with the split its run used (its ``config.json``, when one sits beside the model), checks
that the classes line up, and gives :func:`senet.metrics.evaluate_model`'s metrics, so an
exported file is checked with the same command and the same metrics as the model it came from.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from senet._files import atomic_write_text
from senet.checks import check_choice
from senet.config import TrainConfig
from senet.data import ImageSet, load_dataset
from senet.inference import ExportedModel
from senet.metrics import evaluate_model
from senet.report import plot_confusion
from senet.runs import METRICS_FILE, find_run_config, holds_run, run_class_names

__all__ = ["evaluate"]


def evaluate(
    model_path: str | os.PathLike,
    data: str | os.PathLike,
    *,
    split: str = "test",
    out_dir: str | os.PathLike | None = None,
    batch_size: int = 64,
    skip_bad: bool = False,
    overwrite: bool = False,
    allow_h5: bool = False,
    allow_savedmodel: bool = False,
    class_names: Sequence[str] | None = None,
    input_range: str | Sequence[float] | None = None,
    colour: str | None = None,
) -> dict[str, Any]:
    """Evaluate a saved model on one split of a data source.

    Image size and channels come from the model's input. When ``config.json`` of the run
    sits beside the model (an exported file or SavedModel directory written into the run
    directory counts as beside it) (or one level up, for a checkpoint), its split settings are used,
    so ``split="test"`` is the same held-out set the run was tested on, and the class names
    the run was trained on (its ``metrics.json`` or ``state.json``) must be the data's.

    Args:
        model_path: A ``.keras`` file (loaded by :func:`senet.layers.load_model`: safe mode),
            or an exported model: a ``.tflite`` or ``.onnx`` file or a SavedModel directory
            (run by :func:`senet.export.load_exported`).
        data: Any source :func:`senet.data.load_dataset` reads.
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"`` (every image).
        out_dir: Where to write ``metrics.json`` and ``confusion.png`` (None: nothing). Never
            a run directory (its own metrics stay as training wrote them); files already
            there are replaced only with ``overwrite``.
        batch_size: Inference batch size.
        skip_bad: Skip unreadable samples instead of failing.
        overwrite: Replace ``metrics.json``/``confusion.png`` already in ``out_dir``.
        allow_h5: Accept a legacy ``.h5`` model (trusted files only: no safe mode there),
            loaded for inference only (its training configuration is not read).
        allow_savedmodel: Accept a SavedModel directory (trusted ones only: its graph can
            run any TensorFlow op); see :func:`senet.export.load_exported`.
        class_names: The model's output names, for a model without a run: they must be
            the data's classes, in the data's order (compared without regard to case).
        input_range: The values the model takes, ``"0,1"`` or ``"-1,1"`` (default: the
            model's record, else ``"0,1"``); see :func:`senet.predict.input_format`.
        colour: ``"grey"`` (repeated over a 3-channel input) or ``"rgb"``; default from
            the model's input channels.

    Returns:
        The metrics dict (as in training's ``metrics.json``), plus ``split``, ``model``,
        ``format`` (``"keras"``, ``"tflite"``, ``"onnx"`` or ``"savedmodel"``) and, for a
        Keras model, ``params``.

    Raises:
        FileNotFoundError: No model file.
        FileExistsError: ``out_dir`` is a run directory or a file, or its outputs exist.
        ValueError: A model that cannot be loaded (:class:`senet.layers.ModelLoadError`,
            :class:`senet.export.ExportError`), or whose classes are not the data's.
        senet.export.MissingDependencyError: An ``.onnx`` model without ``onnxruntime``; the
            message names ``pip install "senet[export]"``.
    """
    split = check_choice("split", split, ("train", "val", "test", "all"))
    model_path = Path(model_path)
    out_files = _out_files(out_dir, overwrite)
    from senet.inference import load_classifier

    model = load_classifier(model_path, allow_h5=allow_h5, allow_savedmodel=allow_savedmodel)
    from senet.inference import model_record

    # what the model was trained on, read once: its task, its input format
    record = model_record(model, model_path)
    task = (record or {}).get("task") or "classification"
    if task == "detection":
        return _evaluate_boxes(
            model, model_path, data, split, out_files, batch_size=batch_size, skip_bad=skip_bad
        )
    if task == "segmentation":
        return _evaluate_masks(
            model,
            model_path,
            record or {},
            data,
            split,
            out_files,
            batch_size=batch_size,
            skip_bad=skip_bad,
        )
    if len(model.input_shape) != 4:
        raise ValueError(f"Expected a model taking (B, H, W, C) images, got {model.input_shape}")
    _, height, width, channels = model.input_shape
    if height != width or height is None:
        raise ValueError(
            f"Expected a model with a square, known input size, got {model.input_shape}"
        )
    from senet.inference import input_format, to_input_range

    inputs = input_format(model, record=record, input_range=input_range, colour=colour)
    split_options = _split_options(find_run_config(model_path))
    sets = load_dataset(
        data,
        image_size=int(height),
        channels=1 if inputs.grey else int(channels),
        skip_bad=skip_bad,
        **split_options,
    )
    if split == "all":
        images = _concatenate([sets["train"], sets["val"], sets["test"]])
    else:
        images = sets[split]
    _check_classes(model_path, int(model.output_shape[-1]), images.class_names, data)
    if class_names is not None:
        _check_given_classes(class_names, images.class_names, data)
    x = images.x if images.x.shape[-1] == channels else np.repeat(images.x, channels, axis=-1)
    images = ImageSet(to_input_range(x, inputs.input_range), images.y, images.class_names)
    metrics = evaluate_model(model, images, batch_size=batch_size)
    metrics.update(split=split, model=str(model_path), **_model_facts(model))
    if out_files is not None:
        metrics_file, confusion_file = out_files
        metrics_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(metrics_file, json.dumps(metrics, indent=2))
        plot_confusion(
            metrics["confusion_matrix"],
            metrics["class_names"],
            confusion_file,
            title=f"Confusion matrix ({split}, accuracy {metrics['accuracy']:.3f})",
        )
    return metrics


def _model_facts(model) -> dict[str, Any]:
    """``format`` (``"keras"`` or the export's) and, for a Keras model, ``params``."""
    if isinstance(model, ExportedModel):
        return {"format": model.format}
    return {"format": "keras", "params": int(model.count_params())}


def _evaluate_masks(
    model,
    model_path: Path,
    record: dict[str, Any],
    data,
    split: str,
    out_files,
    *,
    batch_size: int,
    skip_bad: bool,
) -> dict[str, Any]:
    """``evaluate`` for a segmentation model (``record``: what it was trained on): the split
    of its run (or the defaults), :meth:`senet.tasks.segmentation.SegmentationTask.evaluate`'s
    Dice, IoU and HD95."""
    from senet.data.masks import MaskSet, load_masks
    from senet.tasks import get_task

    task = get_task("segmentation")
    shape = tuple(model.input_shape[1:])
    side = shape[0]
    if side is None:  # trained on patches, it labels volumes of the size it was trained on
        side = record.get("image_size")
        if not isinstance(side, int):
            raise ValueError(f"{model_path} takes any size and records no image size")
    options = _split_options(find_run_config(model_path))
    sets = load_masks(
        data,
        image_size=int(side),
        channels=int(shape[-1]) if len(shape) == 3 else 1,
        skip_bad=skip_bad,
        ct_window=record.get("ct_window"),
        **options,
    )
    if split == "all":
        parts = [sets[name] for name in ("train", "val", "test") if len(sets[name])]
        cases = MaskSet(
            np.concatenate([p.x for p in parts]),
            np.concatenate([p.y for p in parts]),
            parts[0].class_names,
            spacing=parts[0].spacing,
        )
    else:
        cases = sets[split]
    return _score_cases(
        task,
        model,
        model_path,
        cases,
        int(model.output_shape[-1]),
        data,
        split,
        out_files,
        batch_size=batch_size,
        what="cases",
    )


def _evaluate_boxes(
    model, model_path: Path, data, split: str, out_files, *, batch_size: int, skip_bad: bool
) -> dict[str, Any]:
    """``evaluate`` for a detector: the split of its run (or the defaults),
    :meth:`senet.tasks.detection.DetectionTask.evaluate`'s COCO mAP and per-class AP."""
    from senet.data.coco import DetectionSet, load_detection, pad_boxes
    from senet.models.retinanet import is_detector
    from senet.tasks import get_task

    if not is_detector(model):
        raise ValueError(
            f"{model_path} is not a Keras detector: evaluate a detector's .keras file (an "
            "exported one gives raw outputs, see docs/detection.md)"
        )
    task = get_task("detection")
    side, _, channels = tuple(model.inputs[0].shape[1:])
    sets = load_detection(
        data,
        image_size=int(side),
        channels=int(channels),
        skip_bad=skip_bad,
        **_split_options(find_run_config(model_path)),
    )
    if split == "all":
        parts = [sets[name] for name in ("train", "val", "test") if len(sets[name])]
        lists = [part.image_boxes(i) for part in parts for i in range(len(part))]
        boxes, labels = pad_boxes([b for b, _ in lists], [k for _, k in lists])
        cases = DetectionSet(
            np.concatenate([p.x for p in parts]), boxes, labels, parts[0].class_names
        )
    else:
        cases = sets[split]
    return _score_cases(
        task,
        model,
        model_path,
        cases,
        int(model.num_classes),
        data,
        split,
        out_files,
        batch_size=batch_size,
        what="images",
    )


def _score_cases(
    task,
    model,
    model_path: Path,
    cases,
    outputs: int,
    data,
    split: str,
    out_files,
    *,
    batch_size: int,
    what: str,
) -> dict[str, Any]:
    """What evaluating a segmentation or detection model ends with: the split checked
    (not empty, the model's ``outputs`` classes the data's), the task's metrics with the
    facts of the evaluation, and, with ``out_files``, ``metrics.json`` and the task's
    figures written."""
    if len(cases) == 0:
        raise ValueError(f"the {split} split of {os.fspath(data)} has no {what}")
    _check_classes(model_path, outputs, cases.class_names, data)
    metrics = task.evaluate(model, cases, batch_size=batch_size)
    metrics.update(task=task.name, split=split, model=str(model_path), **_model_facts(model))
    if out_files is not None:
        metrics_file, _ = out_files
        metrics_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(metrics_file, json.dumps(metrics, indent=2))
        task.report(
            metrics,
            metrics_file.parent,
            title=model_path.name,
            split=split,
            output_names=cases.class_names,
        )
    return metrics


def _out_files(out_dir: str | os.PathLike | None, overwrite: bool) -> tuple[Path, Path] | None:
    """``(metrics.json, confusion.png)`` in ``out_dir``, checked before anything runs.

    A run directory is refused even with ``overwrite``: its ``metrics.json`` is what
    training measured, and evaluate did not write it.
    """
    if out_dir is None:
        return None
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} is a file; the evaluate output (`out_dir`) is a folder")
    if holds_run(out_dir):
        raise FileExistsError(
            f"{out_dir} is a training run directory; evaluate never writes over a run's own "
            "metrics (choose another folder)"
        )
    files = (out_dir / METRICS_FILE, out_dir / "confusion.png")
    if not overwrite:
        from senet.tasks import get_task, task_names

        figures = {name for task in task_names() for name in get_task(task).report_files}
        for path in (*files, *(out_dir / name for name in sorted(figures))):
            if path.exists():
                raise FileExistsError(
                    f"{path} already exists; pass overwrite=True (senet evaluate --overwrite) "
                    "to replace it, or choose another folder"
                )
    return files


def _check_classes(
    model_path: Path, outputs: int, class_names: Sequence[str], data: str | os.PathLike
) -> None:
    """The model's output width, and its run's class names, must be the data's."""
    class_names = list(class_names)
    if outputs != len(class_names):
        raise ValueError(
            f"{model_path} has {outputs} outputs but the data {os.fspath(data)} has "
            f"{len(class_names)} classes {class_names}"
        )
    trained_on = run_class_names(model_path)
    if trained_on is None or len(trained_on) != outputs:
        return
    if [name.casefold() for name in trained_on] != [name.casefold() for name in class_names]:
        raise ValueError(
            f"{model_path} was trained on the classes {trained_on} (its run's files) but the "
            f"data {os.fspath(data)} has the classes {class_names}; the labels would not line up"
        )


def _check_given_classes(
    given: Sequence[str], class_names: Sequence[str], data: str | os.PathLike
) -> None:
    """``--class-names`` must be the data's classes, in its order (labels line up)."""
    if [str(name).casefold() for name in given] != [name.casefold() for name in class_names]:
        raise ValueError(
            f"the model's classes {list(given)} (class_names) are not the classes of the data "
            f"{os.fspath(data)}, {list(class_names)}, in that order; the labels would not "
            "line up"
        )


def _concatenate(sets: list[ImageSet]) -> ImageSet:
    sets = [images for images in sets if len(images)]
    return ImageSet(
        np.concatenate([s.x for s in sets]),
        np.concatenate([s.y for s in sets]),
        sets[0].class_names,
    )


def _split_options(run_config: dict[str, Any] | None) -> dict[str, Any]:
    """load_dataset's split settings from a run's config dict, checked as TrainConfig checks
    them (TrainConfig's defaults if absent or invalid)."""
    fields = (
        "val_fraction",
        "test_fraction",
        "split_seed",
        "synthetic_size",
        "synthetic_difficulty",
    )
    try:
        config = TrainConfig(**{name: run_config[name] for name in fields if name in run_config})
    except (TypeError, ValueError):
        config = TrainConfig()
    return config.split_options()
