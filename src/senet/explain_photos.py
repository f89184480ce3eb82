"""Heatmaps for the faces in photos: where a saved model looks when it names an emotion.

Each photo goes through :mod:`senet.predict`'s path (OpenCV Haar detection, the same crops
and the same class probabilities as ``senet predict``); each face crop is then explained with
:func:`senet.explain.grad_cam` (``"gradcam"``, ``"gradxact"``, ``"gradcam++"``) or
:func:`senet.explain.attention_map` (``"attention"``). The output folder gets one overlay PNG
per face (the heatmap over the face crop, titled with the explained class and its
probability) and an ``index.html`` that lists every photo, its faces, their overlays and
predictions, with relative links (written by :func:`senet.report.write_report`, the one
report writer, with ``index.md`` beside it). The index is rewritten after each photo, so
when a later photo fails, the overlays and the index of the photos before it are kept.

A foreign classifier's class names, input range and grey/colour come from options as for
``senet predict`` (:func:`senet.predict.input_format`), and a model trained on synthetic
faces gets the same one-line warning.

This module sits beside :mod:`senet.predict` (it uses predict and explain), not inside
``senet.explain``, which lies below predict.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from senet.checks import fail
from senet.data.images import load_image, to_bgr8, write_image
from senet.faces import Box, crop_inputs, detect_faces
from senet.predict import VIDEO_EXTENSIONS, load_for_inference, predict_faces
from senet.report import Image, Section, Table, write_report

__all__ = [
    "EXPLAIN_METHODS",
    "FaceExplanation",
    "PhotoExplanation",
    "explain_photos",
    "face_heatmaps",
    "face_overlay",
    "iter_explanations",
]

# grad_cam's methods, then the gradient-free map of the last attention layer
EXPLAIN_METHODS = ("gradcam", "gradxact", "gradcam++", "intgrad", "attention")
INDEX_FILE = "index.html"
# overlays are drawn at this side, whatever the face's size in the photo
_DISPLAY_SIDE = 224
_TITLE_HEIGHT = 44


@dataclass
class FaceExplanation:
    """One face: its box, prediction, the class explained and where its overlay was written.

    ``heatmap`` is the map at the model's input size ``(S, S)`` in [0, 1]; ``overlay`` is the
    PNG's path; ``probability`` is the explained class's probability.
    """

    box: Box
    label: str
    target: str
    probability: float
    probabilities: dict[str, float]
    overlay: str
    heatmap: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": list(self.box),
            "label": self.label,
            "target": self.target,
            "probability": self.probability,
            "probabilities": self.probabilities,
            "overlay": self.overlay,
        }


@dataclass
class PhotoExplanation:
    """The faces of one photo (empty when no face was found)."""

    path: str
    faces: list[FaceExplanation] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "faces": [face.to_dict() for face in self.faces]}


def _safe(text: str) -> str:
    """A file-name-safe version of a stem or class name."""
    return re.sub(r"[^\w.-]+", "_", text).strip("._") or "image"


def _unique_stem(path: Path, used: set[str]) -> str:
    # two photos with one name in different folders must not overwrite each other's overlays
    stem, number = _safe(path.stem), 2
    candidate = stem
    while candidate in used:
        candidate, number = f"{stem}_{number}", number + 1
    used.add(candidate)
    return candidate


def face_overlay(crop_bgr: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """The heatmap over a face crop (8-bit BGR, :func:`senet.data.images.to_bgr8`'s), both
    drawn at the overlays' side (224 pixels), as RGB."""
    from senet.explain import overlay

    face = cv2.resize(crop_bgr, (_DISPLAY_SIDE, _DISPLAY_SIDE), interpolation=cv2.INTER_AREA)
    return overlay(cv2.cvtColor(face, cv2.COLOR_BGR2RGB), heatmap)


def _face_picture(crop_bgr: np.ndarray, heatmap: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """BGR picture: a band with up to two lines of title over the heatmap on the face crop."""
    canvas = np.full((_TITLE_HEIGHT + _DISPLAY_SIDE, _DISPLAY_SIDE, 3), 255, np.uint8)
    canvas[_TITLE_HEIGHT:] = cv2.cvtColor(face_overlay(crop_bgr, heatmap), cv2.COLOR_RGB2BGR)
    for row, text in enumerate(lines[:2]):
        # shrink long class names until the line fits the picture's width
        scale = 0.5
        while scale > 0.3 and (
            cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > _DISPLAY_SIDE - 12
        ):
            scale -= 0.05
        cv2.putText(
            canvas,
            text,
            (6, 17 + 20 * row),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    return canvas


def _heatmaps(model, x: np.ndarray, method: str, layer: str | None, targets: np.ndarray):
    from senet.explain import attention_map, grad_cam

    if method == "attention":
        return attention_map(model, x, layer)
    return grad_cam(model, x, layer, targets, method=method)


def face_heatmaps(
    model,
    image: np.ndarray,
    faces: Sequence,
    inputs,
    class_names: Sequence[str],
    *,
    method: str = "gradcam",
    layer: str | None = None,
    class_name: str | None = None,
) -> tuple[list[int], np.ndarray]:
    """Where a Keras classifier looks in each face already found and classified.

    Args:
        model: The Keras classifier (gradients are taken through it).
        image: The photo, as :func:`senet.data.images.load_image` gives it.
        faces: Its :class:`senet.predict.FacePrediction` s (boxes and labels).
        inputs: How faces become the model's inputs (:func:`senet.inference.input_format`).
        class_names: The model's classes.
        method: One of :data:`EXPLAIN_METHODS`.
        layer: The layer explained (default: the last feature map, or the last attention
            layer for ``"attention"``).
        class_name: Explain this class in every face (default: each face's label).

    Returns:
        ``(target class index per face, heatmaps (faces, S, S) in [0, 1])``.
    """
    if class_name is None:
        targets = [list(class_names).index(face.label) for face in faces]
    else:
        targets = [list(class_names).index(class_name)] * len(faces)
    x = crop_inputs(
        image,
        [face.box for face in faces],
        inputs.size,
        inputs.channels,
        input_range=inputs.input_range,
        grey=inputs.grey,
    )
    return targets, _heatmaps(model, x, method, layer, np.asarray(targets, np.int64))


def _check_method(method: str, class_name: str | None) -> None:
    if method not in EXPLAIN_METHODS:
        raise fail("method", f"one of {EXPLAIN_METHODS}", method)
    if method == "attention" and class_name is not None:
        raise ValueError(
            "`class_name` needs a gradient method (gradcam, gradxact, gradcam++, intgrad): the attention "
            f"map does not depend on the class. Received: class_name={class_name!r} with "
            "method='attention'"
        )


def _photo_section(photo: PhotoExplanation) -> Section:
    """One photo of the index: per face its overlay, captioned, and its probabilities."""
    if not photo.faces:
        return Section(photo.path, ["no face found"])
    blocks: list[str | Table | Image] = []
    for number, face in enumerate(photo.faces, 1):
        explained = f"{face.target} {face.probability:.3f}"
        if face.target != face.label:
            explained += " (not the predicted class)"
        box = ", ".join(str(v) for v in face.box)
        caption = (
            f"face {number}: box (x, y, w, h) = {box}; predicted "
            f"{face.label} {face.probabilities[face.label]:.3f}; explained {explained}"
        )
        top = sorted(face.probabilities.items(), key=lambda item: item[1], reverse=True)
        blocks.append(Image(face.overlay, caption))
        blocks.append(Table(["class", "probability"], [[name, f"{p:.3f}"] for name, p in top]))
    return Section(photo.path, blocks)


def _write_index(out_dir: Path, photos: Sequence[PhotoExplanation], method: str) -> None:
    # linked, not embedded: the index is rewritten after every photo and lists them all
    write_report(
        out_dir,
        f"senet explain ({method})",
        [_photo_section(photo) for photo in photos],
        name=Path(INDEX_FILE).stem,
        embed_images=False,
    )


def iter_explanations(
    model_path: str | os.PathLike,
    paths: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    method: str = "gradcam",
    class_name: str | None = None,
    layer: str | None = None,
    class_names: Sequence[str] | None = None,
    allow_h5: bool = False,
    input_range: str | Sequence[float] | None = None,
    colour: str | None = None,
    overwrite: bool = False,
    model: Any = None,
    **detect_options,
) -> Iterator[PhotoExplanation]:
    """:func:`explain_photos`, one photo at a time (results as they come). ``model``: the
    model at ``model_path`` when already loaded; else it is loaded here."""
    _check_method(method, class_name)
    paths = _checked_inputs(model_path, paths)
    model, inputs, class_names = load_for_inference(
        model_path,
        allow_h5=allow_h5,
        class_names=class_names,
        input_range=input_range,
        colour=colour,
        model=model,
    )
    class_names = tuple(class_names)
    if class_name is not None and class_name not in class_names:
        raise fail("class_name", f"one of the model's classes {class_names}", class_name)
    # a wrong layer, or "attention" on a model without attention, fails here, before any
    # output, rather than at the first face (never, if no photo has one)
    blank = np.zeros((1, inputs.size, inputs.size, inputs.channels), np.float32)
    _heatmaps(model, blank, method, layer, np.zeros(1, int))
    out_dir = Path(out_dir)
    if not overwrite and (out_dir / INDEX_FILE).exists():
        raise FileExistsError(
            f"{out_dir} holds an explanation already ({INDEX_FILE}); give --overwrite "
            "(overwrite=True) to replace it, or choose another folder"
        )
    out_dir.mkdir(parents=True, exist_ok=True)

    photos: list[PhotoExplanation] = []
    used_stems: set[str] = set()
    for path in paths:
        photo = _explain_photo(
            path,
            _unique_stem(path, used_stems),
            model,
            inputs,
            class_names,
            out_dir,
            method=method,
            class_name=class_name,
            layer=layer,
            overwrite=overwrite,
            **detect_options,
        )
        photos.append(photo)
        _write_index(out_dir, photos, method)
        yield photo
    if not photos:
        _write_index(out_dir, photos, method)


def _checked_inputs(model_path, paths) -> list[Path]:
    """The photos, every input checked before anything is written: the model is a file
    with gradients (not an exported one), each photo a file and not a video."""
    from senet._files import check_input_file
    from senet.inference import is_exported

    if is_exported(model_path):
        raise ValueError(
            f"senet explain needs a .keras model (explanations need gradients); {model_path} "
            "is an exported model: explain the .keras file it was exported from"
        )
    check_input_file(model_path, wanted="a .keras model file")
    paths = [check_input_file(path) for path in paths]
    for path in paths:
        if path.suffix.lower() in VIDEO_EXTENSIONS:
            raise ValueError(
                f"Expected photos (explain takes no videos; `senet predict` reads them). "
                f"Received: {path}"
            )
    return paths


def _explain_photo(
    path: Path,
    stem: str,
    model,
    inputs,
    class_names,
    out_dir: Path,
    *,
    method,
    class_name,
    layer,
    overwrite,
    **detect_options,
) -> PhotoExplanation:
    """One photo's faces found, classified, explained and drawn (``OUT/<stem>_face<k>...``)."""
    image = load_image(path)
    boxes = detect_faces(image, **detect_options)
    predictions = predict_faces(model, image, class_names, boxes=boxes, inputs=inputs)
    photo = PhotoExplanation(str(path))
    if not predictions:
        return photo
    targets, heatmaps = face_heatmaps(
        model,
        image,
        predictions,
        inputs,
        class_names,
        method=method,
        layer=layer,
        class_name=class_name,
    )
    display = to_bgr8(image)
    for number, (face, target, heatmap) in enumerate(
        zip(predictions, targets, heatmaps, strict=True), 1
    ):
        target_name = class_names[target]
        probability = face.probabilities[target_name]
        file = out_dir / f"{stem}_face{number}_{method}_{_safe(target_name)}.png"
        x0, y0, w, h = face.box
        title = [f"{target_name} {probability:.2f} ({method})"]
        if target_name != face.label:
            predicted = face.probabilities[face.label]
            title = [f"explained {target_name} {probability:.2f} ({method})"]
            title.append(f"predicted {face.label} {predicted:.2f}")
        picture = _face_picture(display[y0 : y0 + h, x0 : x0 + w], heatmap, title)
        if not overwrite and file.exists():
            raise FileExistsError(f"{file} exists; give --overwrite (overwrite=True) to replace it")
        write_image(file, picture)
        photo.faces.append(
            FaceExplanation(
                box=face.box,
                label=face.label,
                target=target_name,
                probability=probability,
                probabilities=face.probabilities,
                overlay=str(file),
                heatmap=heatmap,
            )
        )
    return photo


def explain_photos(
    model_path: str | os.PathLike,
    paths: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    method: str = "gradcam",
    class_name: str | None = None,
    layer: str | None = None,
    class_names: Sequence[str] | None = None,
    allow_h5: bool = False,
    input_range: str | Sequence[float] | None = None,
    colour: str | None = None,
    overwrite: bool = False,
    **detect_options,
) -> list[PhotoExplanation]:
    """Explain a saved classifier on the faces in photos: overlays and an ``index.html``.

    Faces are found and cropped as by ``senet predict`` (:func:`senet.predict.detect_faces`,
    :func:`senet.predict.predict_faces`). Each face gets a heatmap and an overlay
    ``OUT/<stem>_face<k>_<method>_<class>.png`` (224 pixels wide): the heatmap over the face
    crop, titled with the explained class and its probability (and the predicted one when
    they differ).
    ``OUT/index.html`` (and ``OUT/index.md``, the same content) lists every photo with its
    faces' overlays, linked by relative path, and probabilities, or "no face found".
    Photos are decoded by :func:`senet.data.images.load_image` (the pixel cap
    ``SENET_MAX_IMAGE_PIXELS`` applies).

    Args:
        model_path: A ``.keras`` classifier (e.g. ``RUN_DIR/model.keras``); an exported
            one (``.tflite``, ``.onnx``, SavedModel) is refused: it has no gradients.
        paths: Image files.
        out_dir: Folder for the overlays and ``index.html`` (created if missing). A folder
            that holds an explanation already (its ``index.html``), or a file an overlay
            would replace, is refused unless ``overwrite``.
        overwrite: Replace the files of an earlier explanation (others are left alone).
        method: ``"gradcam"`` (default), ``"gradxact"``, ``"gradcam++"``, ``"intgrad"`` (see
            :func:`senet.explain.grad_cam`) or ``"attention"`` (the last attention layer's
            gated output, :func:`senet.explain.attention_map`; the model needs one).
        class_name: Explain this class for every face instead of its predicted class
            (gradient methods only).
        layer: The layer to explain (default: the final feature map for the gradient
            methods, the last attention layer for ``"attention"``).
        class_names: Override the class names (default :func:`senet.predict.class_names_for`).
        allow_h5: Accept a legacy ``.h5`` model (trusted files only: Keras's safe mode
            does not apply to them); see :func:`senet.layers.load_model`. Loaded for
            inference only: its training configuration is not read.
        input_range: The values the model expects, ``"0,1"`` or ``"-1,1"`` (default: the
            model's record, else ``"0,1"``); see :func:`senet.predict.input_format`.
        colour: ``"grey"`` or ``"rgb"`` (default: from the model's input channels).
        **detect_options: Passed to :func:`senet.predict.detect_faces`.

    Returns:
        One :class:`PhotoExplanation` per photo, in order.

    Raises:
        FileNotFoundError: The model or a photo does not exist.
        senet.data.DataError: A photo OpenCV cannot decode.
        senet.layers.ModelLoadError: A model that cannot be loaded (a ``ValueError``).
        ValueError: An unknown method, class name or layer, ``"attention"`` on a model
            without an attention layer, or a video file.

    Everything but an undecodable photo is checked before anything is written.

    Example:
        >>> photos = explain_photos("run/model.keras", ["me.jpg"], "explained")  # doctest: +SKIP
        >>> photos[0].faces[0].label, photos[0].faces[0].overlay  # doctest: +SKIP
        ('happy', 'explained/me_face1_gradcam_happy.png')
    """
    return list(
        iter_explanations(
            model_path,
            paths,
            out_dir,
            method=method,
            class_name=class_name,
            layer=layer,
            class_names=class_names,
            allow_h5=allow_h5,
            input_range=input_range,
            colour=colour,
            overwrite=overwrite,
            **detect_options,
        )
    )
