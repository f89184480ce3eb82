"""What ``senet serve`` does with an upload, without the web: check it, decode it, find the
faces, classify them, explain them. :mod:`senet.serve.app` puts this behind HTTP.

One :class:`Service` per model. Every image goes through the same path as ``senet
predict`` (:func:`senet.predict.predict_faces`: Haar faces, the same crops, the same
probabilities) and ``senet explain`` (:func:`senet.explain_photos.face_heatmaps`), so the
page shows what the CLI prints. Uploads are checked before they are decoded: the bytes must
start like an image file (:func:`sniff`; the name and the declared type are not trusted),
and the width and height in the header must fit the pixel cap.

The model is run by one thread at a time (a LiteRT interpreter and OpenCV's cascade are not
thread-safe); decoding runs beside it.
"""

from __future__ import annotations

import base64
import os
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from senet.data.images import decode_image, to_bgr8
from senet.errors import printable

__all__ = ["IMAGE_TYPES", "Limits", "Service", "UploadError", "sniff"]

#: The image formats an upload may be, by the bytes they start with.
IMAGE_TYPES = {
    b"\xff\xd8\xff": "jpeg",
    b"\x89PNG\r\n\x1a\n": "png",
    b"GIF87a": "gif",
    b"GIF89a": "gif",
    b"BM": "bmp",
    b"II*\x00": "tiff",
    b"MM\x00*": "tiff",
}


@dataclass(frozen=True)
class Limits:
    """What one request may cost.

    Attributes:
        max_upload_bytes: The largest request body (the photo and its form), in bytes.
        max_pixels: The most pixels (width x height) an image may claim in its header.
        max_pending: Requests being worked on or waiting for the model at once; one more
            gets 503 with Retry-After.
        timeout: Seconds a request may wait for its answer (504 after).
        body_timeout: Seconds between two parts of a request body (408 after).
    """

    max_upload_bytes: int = 20 * 2**20
    max_pixels: int = 40_000_000
    max_pending: int = 16
    timeout: float = 60.0
    body_timeout: float = 15.0


class UploadError(ValueError):
    """An upload the service refuses; ``status`` is the HTTP status that says why."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def sniff(raw: bytes) -> str | None:
    """The image format the bytes start with (:data:`IMAGE_TYPES`, WebP too), or None."""
    if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        return "webp"
    return next((kind for magic, kind in IMAGE_TYPES.items() if raw.startswith(magic)), None)


def _png(image_bgr: np.ndarray) -> bytes:
    """An 8-bit image in OpenCV's channel order as PNG bytes."""
    ok, encoded = cv2.imencode(".png", image_bgr)
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 RGB array
        raise RuntimeError("cannot encode PNG")
    return encoded.tobytes()


@dataclass(frozen=True)
class _Input:
    """A detector's or segmentation model's input side and channels (for the card)."""

    size: int
    channels: int


class Service:
    """A model ready to answer uploads: a face classifier (faces, emotions, heatmaps), a
    detector (boxes) or a 2-D segmentation model (label maps).

    Args:
        model_path: The model file (``.keras``, or an export: ``.tflite``, ``.onnx``).
        runtime: ``"litert"`` (the model's cached, checked LiteRT export) or ``"keras"``
            (:mod:`senet.runtime`).
        method: How heatmaps are made (:data:`senet.explain_photos.EXPLAIN_METHODS`).
        layer: The layer explained (default: the method's).
        limits: :class:`Limits`.
        allow_h5: Accept a Keras 2 ``.h5`` file.
        class_names, input_range, colour: As ``senet predict`` takes them, for models that
            do not say.
        say: Where progress lines go (a first LiteRT export); default stderr.

    Raises:
        ValueError: The model is none of a classifier, a detector or a 2-D segmentation
            model, or cannot be loaded (one line).
    """

    def __init__(
        self,
        model_path: str | os.PathLike,
        *,
        runtime: str = "litert",
        method: str = "gradcam",
        layer: str | None = None,
        limits: Limits | None = None,
        allow_h5: bool = False,
        class_names: Sequence[str] | None = None,
        input_range: str | Sequence[float] | None = None,
        colour: str | None = None,
        say: Callable[[str], None] | None = None,
    ):
        from senet._files import check_input_file
        from senet.checks import check_choice
        from senet.explain_photos import EXPLAIN_METHODS
        from senet.inference import open_model
        from senet.runtime import RUNTIMES

        self.model_path = Path(model_path)
        if not self.model_path.is_dir():
            check_input_file(self.model_path, wanted="a model file")
        self.method = check_choice("method", method, EXPLAIN_METHODS)
        self.runtime = check_choice("runtime", runtime, RUNTIMES)
        self.limits = limits or Limits()
        self.task, model = open_model(model_path, allow_h5=allow_h5)
        self.keras_model = None
        self.layer = None
        self.parameters: int | None = None  # a Keras model's, counted where it is loaded
        self.notes: list[str] = []
        say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if self.task == "classification":
                self._open_classifier(model, layer, allow_h5, class_names, input_range, colour, say)
            elif self.task == "detection":
                self._open_detector(model, allow_h5, say)
            elif self.task == "segmentation":
                self._open_segmenter(model, allow_h5, say)
            else:
                raise ValueError(
                    f"senet serve shows classifiers, detectors and segmentation models; "
                    f"{model_path} is a {self.task} model"
                )
        # the synthetic-data warning goes to the terminal, and on the page (the card) with
        # the model's file name instead of its path on the server
        for warning in caught:
            warnings.warn(str(warning.message), UserWarning, stacklevel=2)
        self.warnings = [
            printable(str(warning.message).replace(str(model_path), self.model_path.name))
            for warning in caught
        ]
        self._lock = threading.Lock()
        self.card = self._card()

    def _open_classifier(self, model, layer, allow_h5, class_names, input_range, colour, say):
        from senet.inference import ExportedModel, load_for_inference, model_record
        from senet.runtime import runtime_model

        model, self.inputs, class_names = load_for_inference(
            self.model_path,
            allow_h5=allow_h5,
            class_names=class_names,
            input_range=input_range,
            colour=colour,
            model=model,
        )
        self.class_names = tuple(class_names)
        self.record = model_record(model, self.model_path) or {}
        if not isinstance(model, ExportedModel):
            self.keras_model = model
            self.parameters = int(model.count_params())
            self.layer = self._check_explainable(layer)
        self.runner = runtime_model(self.model_path, self.runtime, model, say=say)
        self.engine = getattr(self.runner, "format", "keras")

    def _with_record(self, model, allow_h5: bool):
        """A detector or segmentation model (loaded here when ``open_model`` did not), its
        record read and the synthetic-data warning given."""
        from senet.inference import load_classifier, model_record, warn_if_synthetic

        if model is None:
            model = load_classifier(self.model_path, allow_h5=allow_h5)
        self.record = model_record(model, self.model_path) or {}
        warn_if_synthetic(self.record, self.model_path)
        return model

    def _open_detector(self, model, allow_h5, say):
        from senet.detect import detector_input
        from senet.inference import class_names_for

        model = self._with_record(model, allow_h5)
        if not hasattr(model, "decode_predictions"):
            raise ValueError(
                f"{self.model_path} is not a Keras detector: senet serve decodes boxes with the "
                "detector's .keras file"
            )
        self.runner = model
        self.engine = "keras"
        self.parameters = int(model.count_params())
        if self.runtime == "litert":
            note = "a detector runs in Keras (its LiteRT file holds the raw head outputs)"
            self.notes.append(note)
            say(f"senet serve: {note}")
        size, channels = detector_input(model)
        self.inputs = _Input(size, channels)
        names = class_names_for(self.model_path, int(model.num_classes), self.record)
        self.class_names = tuple(names)

    def _open_segmenter(self, model, allow_h5, say):
        from senet.inference import class_names_for, predictor
        from senet.runtime import runtime_model

        model = self._with_record(model, allow_h5)
        shape = tuple(model.input_shape[1:])
        if len(shape) != 3 or shape[0] is None or shape[-1] not in (1, 3):
            raise ValueError(
                f"senet serve labels images with 2-D segmentation models; {self.model_path} "
                f"takes {shape} (volumes: senet predict)"
            )
        names = class_names_for(self.model_path, int(model.output_shape[-1]), self.record)
        self.class_names = tuple(names)
        self.shape = shape
        self.inputs = _Input(int(shape[0]), int(shape[-1]))
        if hasattr(model, "count_params"):
            self.parameters = int(model.count_params())
        runner = runtime_model(self.model_path, self.runtime, model, say=say)
        self.engine = getattr(runner, "format", "keras")
        self.runner = predictor(runner)

    # ----------------------------------------------------------------- model facts

    def _check_explainable(self, layer: str | None) -> str:
        """The layer heatmaps come from; a method the model cannot give fails here, at
        start, not at the first face."""
        from senet.explain_photos import _heatmaps

        layer = layer or self._default_layer(self.method)
        blank = np.zeros((1, self.inputs.size, self.inputs.size, self.inputs.channels), np.float32)
        _heatmaps(self.keras_model, blank, self.method, layer, np.zeros(1, int))
        return layer

    def _layer_for(self, method: str) -> str:
        """The layer a method's heatmaps come from: the start's for its method, else the
        method's own."""
        return self.layer if method == self.method else self._default_layer(method)

    def _default_layer(self, method: str) -> str:
        """The layer ``senet explain`` explains with ``method``: the last attention layer for
        ``"attention"``, else the last feature map (ValueError: the model has none)."""
        from senet.explain import default_attention_layer, default_layer

        pick = default_attention_layer if method == "attention" else default_layer
        return pick(self.keras_model)

    def _card(self) -> dict[str, Any]:
        """What ``GET /model`` says: the page's model card."""
        record = self.record
        trained_on = {
            key: record[key]
            for key in ("dataset", "data", "epochs", "attention", "model", "accuracy")
            if record.get(key) is not None
        }
        inputs = {"size": self.inputs.size, "channels": self.inputs.channels}
        if self.task == "classification":
            low, high = self.inputs.input_range
            inputs.update(range=[low, high], colour="grey" if self.inputs.grey else "rgb")
        why_not = None
        if self.task != "classification":
            why_not = "heatmaps are for face classifiers"
        elif self.keras_model is None:
            why_not = "heatmaps need the .keras model (gradients); this is an exported file"
        card = {
            "name": printable(self.model_path.name),
            "task": self.task,
            "format": "keras" if self.is_keras_file else self.engine,
            "runtime": self.engine,
            "classes": list(self.class_names),
            "input": inputs,
            "trained_on": trained_on or None,
            "parameters": self.parameters,
            "warnings": self.warnings,
            "notes": self.notes,
            "explain": {
                "available": why_not is None,
                "method": self.method if why_not is None else None,
                "layer": self.layer,
                "why_not": why_not,
            },
            "limits": {
                "max_upload_bytes": self.limits.max_upload_bytes,
                "max_pixels": self.limits.max_pixels,
            },
        }
        if self.task == "classification":
            card["faces"] = "OpenCV Haar cascade (frontal faces)"
        if self.task == "detection":
            from senet.detect import DEFAULT_MIN_SCORE

            card["min_score"] = DEFAULT_MIN_SCORE
        return card

    @property
    def is_keras_file(self) -> bool:
        from senet.inference import is_exported

        return not is_exported(self.model_path)

    # ----------------------------------------------------------------- requests

    def decode(self, raw: bytes, name: str) -> np.ndarray:
        """The upload's pixels, after checking its size, its type and its header."""
        name = _name(name)
        if not raw:
            raise UploadError(f"{name}: the upload is empty (0 bytes)", 400)
        if len(raw) > self.limits.max_upload_bytes:
            raise UploadError(
                f"{name}: {len(raw)} bytes is over the upload cap of "
                f"{self.limits.max_upload_bytes} bytes",
                413,
            )
        if sniff(raw) is None:
            raise UploadError(
                f"{name}: not an image (JPEG, PNG, WebP, BMP, GIF or TIFF): it starts with "
                f"{raw[:8]!r}",
                415,
            )
        from senet.data import DataError

        try:
            return decode_image(raw, name, max_pixels=self.limits.max_pixels)
        except DataError as error:
            message = str(error).split("; set SENET_MAX_IMAGE_PIXELS")[0]
            status = 413 if "over the cap" in message else 400
            raise UploadError(message, status) from None

    def predict(
        self, raw: bytes, name: str = "upload", *, min_score: float | None = None
    ) -> dict[str, Any]:
        """``senet predict --json``'s answer for one uploaded image: its faces (a
        classifier), its boxes above ``min_score`` (a detector; default 0.5), or its label
        map (a segmentation model: the class table, and the mask and the overlay as base64
        PNGs where the CLI names the files it wrote)."""
        image = self.decode(raw, name)
        if self.task == "detection":
            return self._detect(image, name, min_score)
        if min_score is not None:
            raise UploadError("min_score is for detectors", 400)
        if self.task == "segmentation":
            return self._segment(image, name)
        return _answer(name, self._faces(image))

    def _detect(self, image: np.ndarray, name: str, min_score: float | None) -> dict[str, Any]:
        from senet.detect import DEFAULT_MIN_SCORE, DetectionFrame, detections_and_best

        bar = DEFAULT_MIN_SCORE if min_score is None else float(min_score)
        if not 0.0 <= bar <= 1.0:
            raise UploadError(f"min_score must be in [0, 1], got {bar:g}", 400)
        with self._lock:
            kept, best = detections_and_best(
                self.runner, image, self.class_names, min_score=bar, source=name
            )
        answer = DetectionFrame(_name(name), None, kept, best).to_dict()
        answer["min_score"] = bar
        return answer

    def _segment(self, image: np.ndarray, name: str) -> dict[str, Any]:
        from senet.segment import class_table, mask_png, overlay_labels, segment_image

        with self._lock:
            labels = segment_image(self.runner, image, self.shape, source=_name(name))
        tinted = overlay_labels(image, labels)
        return {
            "path": _name(name),
            "shape": list(labels.shape),
            "classes": class_table(labels, self.class_names),
            "mask": base64.b64encode(mask_png(labels)).decode("ascii"),
            "overlay": base64.b64encode(_png(tinted)).decode("ascii"),
        }

    def _faces(self, image: np.ndarray):
        from senet.faces import detect_faces
        from senet.predict import predict_faces

        boxes = detect_faces(image)  # each thread its own detector: beside the model's work
        with self._lock:
            return predict_faces(
                self.runner, image, self.class_names, boxes=boxes, inputs=self.inputs
            )

    def _explained(
        self, raw: bytes, name: str, method: str | None
    ) -> tuple[dict[str, Any], np.ndarray, list, Sequence[np.ndarray]]:
        """The prediction with the class each face's heatmap explains, the decoded image,
        its faces and their heatmaps.

        Raises:
            UploadError: A bad upload, or a model without gradients (409).
        """
        from senet.checks import check_choice
        from senet.explain_photos import EXPLAIN_METHODS, face_heatmaps

        if not self.card["explain"]["available"]:
            raise UploadError(f"{self.card['explain']['why_not']}; POST /predict instead", 409)
        method = check_choice("method", method or self.method, EXPLAIN_METHODS)
        layer = self._layer_for(method)
        image = self.decode(raw, name)
        faces = self._faces(image)
        answer = _answer(name, faces)
        answer.update(method=method, layer=layer)
        if not faces:
            return answer, image, faces, []
        with self._lock:
            targets, heatmaps = face_heatmaps(
                self.keras_model,
                image,
                faces,
                self.inputs,
                self.class_names,
                method=method,
                layer=layer,
            )
        for row, target in zip(answer["faces"], targets, strict=True):
            row["target"] = self.class_names[target]
        return answer, image, faces, heatmaps

    def explain(
        self, raw: bytes, name: str = "upload", *, method: str | None = None
    ) -> dict[str, Any]:
        """The prediction plus, per face, the class explained and its heatmap over the
        face (a PNG, base64, as ``senet explain`` draws it without the title).

        Raises:
            UploadError: A bad upload, or a model without gradients (409).
        """
        from senet.explain_photos import face_overlay

        answer, image, faces, heatmaps = self._explained(raw, name, method)
        display = to_bgr8(image)
        for face, row, heatmap in zip(faces, answer["faces"], heatmaps, strict=True):
            x, y, w, h = face.box
            shown = face_overlay(display[y : y + h, x : x + w], heatmap)
            png = _png(cv2.cvtColor(shown, cv2.COLOR_RGB2BGR))
            row["heatmap"] = base64.b64encode(png).decode("ascii")
        return answer

    def explain_png(self, raw: bytes, name: str = "upload", *, method: str | None = None) -> bytes:
        """The photo with each face's heatmap and box drawn in, as a PNG."""
        from senet.explain import overlay
        from senet.predict import annotate

        _, image, faces, heatmaps = self._explained(raw, name, method)
        display = cv2.cvtColor(to_bgr8(image), cv2.COLOR_BGR2RGB)
        picture = display.copy()
        for face, heatmap in zip(faces, heatmaps, strict=True):
            x, y, w, h = face.box
            picture[y : y + h, x : x + w] = overlay(display[y : y + h, x : x + w], heatmap)
        return _png(annotate(cv2.cvtColor(picture, cv2.COLOR_RGB2BGR), faces))


def _name(name: str) -> str:
    """The upload's name as answers show it: escaped, cut to 120 characters."""
    return printable(name)[:120] or "upload"


def _answer(name: str, faces) -> dict[str, Any]:
    """``senet predict --json``'s object for one image's faces."""
    from senet.predict import FramePrediction

    return FramePrediction(_name(name), None, faces).to_dict()
