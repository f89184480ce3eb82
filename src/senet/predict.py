"""Emotions of the faces in photos and videos: OpenCV Haar detection, crop, classify, annotate.

Class names: a model trained by :func:`senet.train.train` has ``metrics.json`` (key
``class_names``) next to ``model.keras``; :func:`class_names_for` reads it there (or one
level up, for a file in ``checkpoints/``). Without it a 7-output model gets FER2013's
``EMOTIONS`` and any other ``class_0, class_1, ...``. A model exported with ``senet export``
(``.tflite``, ``.onnx``, a SavedModel directory) carries the Keras model's training record
(class names, input range, data set) in the file, read wherever the file goes; an export
without one (an older file, a foreign model) takes its class names from the run directory
it is written into, else the defaults.

Models: ``.keras`` files (``.h5`` when asked) load with senet's one Keras loader, for
inference (``compile=False``: a Keras 2 file's training configuration, with arguments such
as ``lr`` that Keras 3 refuses, is never read); exported models open with
:func:`senet.export.load_exported` and run with their own runtime, so an exported file is
checked with the same command as the model it came from.

Foreign classifiers: what senet cannot read from a model file it takes from options, with
FER2013's conventions as defaults (:func:`input_format`): the class names (above), the
value range of the inputs (``input_range``: ``(0, 1)``, senet's, or ``(-1, 1)``, the
mini-Xception's), grey or colour (by default the model's input channels; ``colour="grey"``
feeds a 3-channel model the grey image in all three), and the input size (always the
model's). A model senet trained records what it was trained on
(:func:`senet.layers.training_info`, else its run's ``config.json``: :func:`model_record`);
one trained on synthetic faces gets a one-line warning when applied to photos.

The per-frame path is kept short for video: the cascade is loaded once, detection runs on a
copy scaled to at most ``max_side`` pixels, and all faces of a frame go through the model in
one call of a compiled function (not ``model.predict``, whose per-call setup costs more than
the small network itself).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from senet.checks import fail
from senet.data.images import (
    MAX_IMAGE_PIXELS_ENV,
    load_image,
    pixel_cap,
    to_bgr8,
    write_image,
)
from senet.faces import Box, crop_inputs, detect_faces
from senet.inference import (
    INPUT_RANGES,
    ExportedModel,
    InputFormat,
    class_names_for,
    input_format,
    load_classifier,
    load_for_inference,
    model_input_size,
    model_record,
    predictor,
    to_input_range,
    warn_if_synthetic,
)
from senet.tasks import get_task

__all__ = [
    "VIDEO_EXTENSIONS",
    "Box",
    "FacePrediction",
    "FramePrediction",
    "INPUT_RANGES",
    "InputFormat",
    "annotate",
    "annotated_names",
    "annotation_targets",
    "class_names_for",
    "crop_inputs",
    "detect_faces",
    "draw_boxes",
    "input_format",
    "iter_predictions",
    "load_classifier",
    "load_for_inference",
    "model_input_size",
    "model_record",
    "predict_faces",
    "predict_paths",
    "to_input_range",
    "warn_if_synthetic",
]

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"}
)


@dataclass
class FacePrediction:
    """One detected face: ``box`` (x, y, w, h) in pixels, the top ``label``, all probabilities."""

    box: Box
    label: str
    probabilities: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"box": list(self.box), "label": self.label, "probabilities": self.probabilities}


@dataclass
class FramePrediction:
    """The faces of one image, or of one frame of a video (``frame`` is its 0-based index)."""

    path: str
    frame: int | None
    faces: list[FacePrediction] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "frame": self.frame,
            "faces": [face.to_dict() for face in self.faces],
        }


# --------------------------------------------------------------------------- detection


# --------------------------------------------------------------------------- classification


def predict_faces(
    model,
    image: np.ndarray | str | os.PathLike,
    class_names: Sequence[str] | None = None,
    *,
    boxes: Sequence[Box] | None = None,
    inputs: InputFormat | None = None,
    **detect_options,
) -> list[FacePrediction]:
    """Detect the faces in ``image`` and classify each.

    Args:
        model: A Keras classifier taking ``(B, H, W, C)`` images in [0, 1], C 1 or 3, or
            an exported one (:func:`load_classifier`).
        image: A decoded image in OpenCV's order (a BGR uint8 array as ``cv2.imread``
            gives, or :func:`senet.data.images.load_image`'s grey/BGR of any depth), or a
            path to an image file (read with ``load_image``).
        class_names: One name per model output; default ``class_names_for``'s fallback.
        boxes: Faces already found (``(x, y, w, h)``), to skip detection.
        inputs: How faces become the model's inputs (default: [0, 1], grey for a
            1-channel model, RGB for a 3-channel one; see :func:`input_format`).
        **detect_options: Passed to :func:`detect_faces`.

    Returns:
        One :class:`FacePrediction` per face, largest face first; empty if none.
    """
    if isinstance(image, (str, os.PathLike)):
        image = load_image(image)
    if inputs is None:
        inputs = input_format(model)
    if boxes is None:
        boxes = detect_faces(image, **detect_options)
    if not boxes:
        return []
    batch = crop_inputs(
        image,
        boxes,
        inputs.size,
        inputs.channels,
        input_range=inputs.input_range,
        grey=inputs.grey,
    )
    probabilities = predictor(model)(batch)
    if class_names is None:
        class_names = class_names_for("", probabilities.shape[-1])
    # what a prediction says is the task's (a face is classified)
    said = get_task("classification").predictions(probabilities, class_names)
    return [
        FacePrediction(box=tuple(int(v) for v in box), **row)
        for box, row in zip(boxes, said, strict=True)
    ]


# --------------------------------------------------------------------------- files


def annotate(image_bgr: np.ndarray, faces: Sequence[FacePrediction]) -> np.ndarray:
    """An 8-bit BGR copy of the image with each face's box and ``label probability`` on it."""
    return draw_boxes(
        image_bgr,
        [(face.box, f"{face.label} {face.probabilities[face.label]:.2f}") for face in faces],
    )


def draw_boxes(image_bgr: np.ndarray, boxes: Sequence[tuple[Sequence[int], str]]) -> np.ndarray:
    """An 8-bit BGR copy of the image with each ``((x, y, w, h), text)`` box drawn and
    labelled (the text above the box, or inside it at the image's top edge)."""
    canvas = np.array(to_bgr8(image_bgr), copy=True, order="C")
    thickness = max(1, round(max(canvas.shape[:2]) / 300))
    for box, text in boxes:
        x, y, w, h = (int(v) for v in box)
        cv2.rectangle(canvas, (x, y), (x + w, y + h), (0, 220, 0), thickness)
        font_scale = max(0.4, w / 250)
        (text_w, text_h), baseline = cv2.getTextSize(
            text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness
        )
        top = y - text_h - baseline - 4 if y - text_h - baseline - 4 >= 0 else y + h
        cv2.rectangle(
            canvas, (x, top), (x + text_w + 4, top + text_h + baseline + 4), (0, 220, 0), -1
        )
        cv2.putText(
            canvas,
            text,
            (x + 2, top + text_h + 2),
            cv2.FONT_HERSHEY_SIMPLEX,
            font_scale,
            (0, 0, 0),
            thickness,
            cv2.LINE_AA,
        )
    return canvas


def _frames_too_large(path, width: int, height: int, cap: int):
    from senet.data import DataError

    return DataError(
        f"{path}: video frames of {width}x{height} pixels are over the cap of {cap} pixels; "
        f"set {MAX_IMAGE_PIXELS_ENV} to a larger number to read it"
    )


def _video_frames(path: Path, every: int) -> Iterator[tuple[int, np.ndarray, float]]:
    from senet.data import DataError

    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise DataError(f"cannot read {path}: not a video OpenCV can decode")
        # the frame size the stream declares, checked before any frame is decoded, and
        # each decoded frame again (a stream can change size or misstate it)
        cap = pixel_cap()
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        if width * height > cap:
            raise _frames_too_large(path, width, height, cap)
        fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
        # what the container says; 0 or less when it does not say
        expected = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        index = 0
        while True:
            # grab() without decoding skips the frames we do not look at cheaply
            if not capture.grab():
                break
            if index % every == 0:
                ok, frame = capture.retrieve()
                if not ok:
                    break
                if frame.shape[0] * frame.shape[1] > cap:
                    raise _frames_too_large(path, frame.shape[1], frame.shape[0], cap)
                yield index, frame, fps
            index += 1
        if index == 0:
            raise DataError(f"cannot read {path}: the video has no frames OpenCV can decode")
        if index < expected:
            warnings.warn(
                f"{path}: read {index} of the {expected} frames the file says it has; the "
                "rest could not be decoded (a truncated or damaged file?)",
                UserWarning,
                stacklevel=2,
            )
    finally:
        capture.release()


def annotated_names(paths: Sequence[str | os.PathLike]) -> list[str]:
    """File names of the annotated copies of ``paths``, one per path, all different.

    ``<stem>_annotated.avi`` for a video (MJPG), ``<stem>_annotated.jpg|.jpeg`` for a JPEG,
    ``<stem>_annotated.png`` for any other image. When a name is taken already (``a/x.jpg``
    and ``b/x.jpg``; compared without regard to case, for case-insensitive file systems),
    the later path gets ``<stem>_2_annotated...``, then ``_3``, and so on, in input order.

    Example:
        >>> annotated_names(["a/x.jpg", "b/x.jpg", "clip.mp4"])
        ['x_annotated.jpg', 'x_2_annotated.jpg', 'clip_annotated.avi']
    """
    names: list[str] = []
    taken: set[str] = set()
    for path in map(Path, paths):
        kind = path.suffix.lower()
        suffix = ".avi" if kind in VIDEO_EXTENSIONS else kind if kind in (".jpg", ".jpeg") else ""
        suffix = suffix or ".png"
        name, number = f"{path.stem}_annotated{suffix}", 1
        while name.lower() in taken:
            number += 1
            name = f"{path.stem}_{number}_annotated{suffix}"
        taken.add(name.lower())
        names.append(name)
    return names


def annotation_targets(
    paths: Sequence[Path], annotate_dir: str | os.PathLike | None, overwrite: bool
) -> list[Path | None]:
    """Where each path's annotated copy goes; refuses existing files unless ``overwrite``."""
    if annotate_dir is None:
        return [None] * len(paths)
    out_dir = Path(annotate_dir)
    targets = [out_dir / name for name in annotated_names(paths)]
    if not overwrite:
        for target in targets:
            if target.exists():
                raise FileExistsError(
                    f"{target} already exists; pass overwrite=True (senet predict "
                    "--overwrite) to replace it, or choose another folder"
                )
    out_dir.mkdir(parents=True, exist_ok=True)
    return targets


def _predict_video(
    model, path: Path, target: Path | None, every: int, class_names, inputs, detect_options
) -> Iterator[FramePrediction]:
    def see(frame):
        return predict_faces(model, frame, class_names, inputs=inputs, **detect_options)

    for index, faces in iter_video(path, target, every, see, annotate):
        yield FramePrediction(str(path), index, faces)


def iter_video(
    path: Path,
    target: Path | None,
    every: int,
    see: Callable[[np.ndarray], Any],
    draw: Callable[[np.ndarray, Any], np.ndarray],
) -> Iterator[tuple[int, Any]]:
    """``(frame index, see(frame))`` for every ``every``-th frame of a video; with a
    ``target``, ``draw(frame, seen)`` of each goes into an MJPG video written under a
    temporary name, read back (every frame written must decode: OpenCV's writer only
    warns when the disk is full) and then renamed, else removed with an ``OSError``."""
    from senet._files import writing

    with contextlib.ExitStack() as stack:
        writer, temporary, written = None, None, 0
        for index, frame, fps in _video_frames(path, every):
            seen = see(frame)
            if target is not None:
                if writer is None:
                    temporary = stack.enter_context(writing(target))
                    writer = cv2.VideoWriter(
                        str(temporary),
                        cv2.VideoWriter_fourcc(*"MJPG"),
                        max(fps / every, 1.0),
                        (frame.shape[1], frame.shape[0]),
                    )
                    stack.callback(writer.release)
                    if not writer.isOpened():
                        raise OSError(f"cannot write {target}: OpenCV cannot open a video there")
                writer.write(draw(frame, seen))
                written += 1
            yield index, seen
        if writer is not None:
            writer.release()
            _check_video(temporary, written, target)


def _check_video(path: Path, frames: int, target: Path) -> None:
    """Raise an ``OSError`` naming ``target`` unless all ``frames`` decode from ``path``."""
    capture = cv2.VideoCapture(str(path))
    read = 0
    try:
        while capture.isOpened() and capture.read()[0]:
            read += 1
    finally:
        capture.release()
    if read != frames:
        raise OSError(
            f"cannot write {target}: {read} of its {frames} frames could be read back "
            "(disk full?); the partial video was removed"
        )


def iter_predictions(
    model_path: str | os.PathLike,
    paths: Iterable[str | os.PathLike],
    *,
    every: int = 1,
    annotate_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    class_names: Sequence[str] | None = None,
    allow_h5: bool = False,
    allow_savedmodel: bool = False,
    input_range: str | Sequence[float] | None = None,
    colour: str | None = None,
    fuse: bool = True,
    model: Any = None,
    **detect_options,
) -> Iterator[FramePrediction]:
    """:func:`predict_paths`, one image or video frame at a time (results as they come).

    ``model``: the model at ``model_path`` when already loaded
    (:func:`senet.inference.open_model`); else it is loaded here.
    """

    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise fail("every", "a positive integer", every)
    from senet._files import check_input_file

    if not Path(model_path).exists():  # a SavedModel is a directory
        raise FileNotFoundError(f"no such file: {model_path}")
    paths = [check_input_file(path) for path in paths]
    # every input and output name is checked before the model loads or anything is written
    targets = annotation_targets(paths, annotate_dir, overwrite)
    model, inputs, class_names = load_for_inference(
        model_path,
        allow_h5=allow_h5,
        allow_savedmodel=allow_savedmodel,
        class_names=class_names,
        input_range=input_range,
        colour=colour,
        model=model,
    )
    if fuse and not isinstance(model, ExportedModel):  # a Keras model
        from senet.models.fused import fuse_for_inference

        model, _ = fuse_for_inference(model)

    for path, target in zip(paths, targets, strict=True):
        if path.suffix.lower() in VIDEO_EXTENSIONS:
            yield from _predict_video(
                model, path, target, every, class_names, inputs, detect_options
            )
            continue
        image = load_image(path)
        faces = predict_faces(model, image, class_names, inputs=inputs, **detect_options)
        if target is not None:
            write_image(target, annotate(image, faces))
        yield FramePrediction(str(path), None, faces)


def predict_paths(
    model_path: str | os.PathLike,
    paths: Iterable[str | os.PathLike],
    *,
    every: int = 1,
    annotate_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    class_names: Sequence[str] | None = None,
    allow_h5: bool = False,
    allow_savedmodel: bool = False,
    input_range: str | Sequence[float] | None = None,
    colour: str | None = None,
    fuse: bool = True,
    **detect_options,
) -> list[FramePrediction]:
    """Faces and emotions in image files and videos.

    Images are decoded by :func:`senet.data.images.load_image` (so the pixel cap
    ``SENET_MAX_IMAGE_PIXELS`` applies) and every face goes to the model through
    :func:`crop_inputs`, the conversion training images go through. A video that ends
    before the frame count in its header (a truncated file) gives the frames it has and a
    ``UserWarning`` that says how many were read.

    Args:
        model_path: A ``.keras`` classifier (e.g. ``RUN_DIR/model.keras``), or one exported
            by ``senet export``: a ``.tflite`` or ``.onnx`` file or a SavedModel directory
            (see :func:`load_classifier`).
        paths: Image files, or videos (``VIDEO_EXTENSIONS``) read frame by frame.
        every: For videos, look at every ``every``-th frame (0, every, 2*every, ...).
        annotate_dir: Write annotated copies here, named by :func:`annotated_names`
            (``<stem>_annotated.png|jpg`` for images, ``<stem>_annotated.avi``, MJPG with
            the frames looked at, for videos; ``<stem>_2_annotated...`` for a second input
            of the same name).
        overwrite: Replace annotated copies that already exist; without it an existing
            file is an error, raised before anything is written.
        class_names: Override the class names (default :func:`class_names_for`).
        allow_h5: Accept a legacy ``.h5`` model (trusted files only: Keras's safe mode
            does not apply to them); see :func:`senet.layers.load_model`. Loaded for
            inference only: its training configuration is not read.
        allow_savedmodel: Accept a SavedModel directory (trusted ones only: its graph can
            run any TensorFlow op, file access included); see
            :func:`senet.export.load_exported`.
        input_range: The values the model expects, ``"0,1"`` or ``"-1,1"`` (default: the
            model's record, else ``"0,1"``); see :func:`input_format`.
        colour: ``"grey"`` or ``"rgb"`` (default: from the model's input channels).
        fuse: Run a Keras model's inference path
            (:func:`senet.models.fused.fuse_for_inference`: SE residual tails fused, the
            same function); False runs the layers as trained.
        **detect_options: Passed to :func:`detect_faces`.

    Returns:
        One :class:`FramePrediction` per image and per video frame looked at.

    Raises:
        FileNotFoundError: A path (or the model) does not exist.
        FileExistsError: An annotated copy exists and ``overwrite`` is False.
        senet.data.DataError: A file OpenCV cannot decode, or one over the pixel cap.
        senet.layers.ModelLoadError: A model that cannot be loaded (a ``ValueError``;
            :class:`senet.export.ExportError` for an exported one).
        senet.export.MissingDependencyError: An ``.onnx`` model without ``onnxruntime``
            installed; the message names ``pip install "senet[export]"``.
    """
    return list(
        iter_predictions(
            model_path,
            paths,
            every=every,
            annotate_dir=annotate_dir,
            overwrite=overwrite,
            class_names=class_names,
            allow_h5=allow_h5,
            allow_savedmodel=allow_savedmodel,
            input_range=input_range,
            colour=colour,
            fuse=fuse,
            **detect_options,
        )
    )
