"""Faces in a photo: found with OpenCV's Haar cascade (shipped with opencv-python-headless)
and cropped into a model's inputs (size, channels, value range, grey or colour). What
``senet predict`` and ``senet explain`` (and a server) find and crop, one way.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

import cv2
import numpy as np

from senet.data.images import (
    pixel_scale,
    to_bgr8,
    to_model_input,
)
from senet.inference import (
    to_input_range,
)

__all__ = ["Box", "crop_inputs", "detect_faces"]

_CASCADE_FILE = "haarcascade_frontalface_default.xml"


#: A face's box in pixels: ``(x, y, w, h)``.
Box = tuple[int, int, int, int]


_THREAD = threading.local()


def _cascade() -> cv2.CascadeClassifier:
    """This thread's face detector, loaded on its first use here: a CascadeClassifier is not
    safe to share between threads, and one each lets threads (``senet serve``'s) find
    faces at once (OpenCV releases the GIL while it looks)."""
    cascade = getattr(_THREAD, "cascade", None)
    if cascade is not None:
        return cascade
    path = os.path.join(cv2.data.haarcascades, _CASCADE_FILE)
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise RuntimeError(
            f"OpenCV could not load its face detector {path}; "
            "install opencv-python-headless>=4.10,<5 (5.x ships no Haar cascades)"
        )
    _THREAD.cascade = cascade
    return cascade


def detect_faces(
    image_bgr: np.ndarray,
    *,
    scale_factor: float = 1.15,
    min_neighbors: int = 5,
    min_size: float = 0.1,
    max_side: int | None = 320,
) -> list[Box]:
    """Frontal faces in an image with OpenCV's Haar cascade.

    Args:
        image_bgr: ``(H, W, 3)`` BGR (OpenCV's order), ``(H, W, 4)`` BGRA or ``(H, W)``
            grey; uint8, or any type :func:`senet.data.images.to_bgr8` brings to 8 bits.
        scale_factor: Step between the detector's scales (smaller finds more, slower).
        min_neighbors: Overlapping detections needed to keep a face (higher: fewer false).
        min_size: Smallest face, as a fraction of the image's shorter side.
        max_side: Detect on a copy whose longer side is at most this many pixels (speed;
            faces below ~24 pixels there are missed). None: full resolution.

    Returns:
        ``(x, y, w, h)`` boxes in the input's pixels, largest first.
    """
    image = np.asarray(image_bgr)
    if image.dtype != np.uint8 and (image.ndim == 2 or image.shape[-1] in (1, 3, 4)):
        # 16-bit and float photos are scaled to 8 bits, not clipped at 255
        image = to_bgr8(image)
    if image.ndim == 3 and image.shape[2] == 3:
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    elif image.ndim == 3 and image.shape[2] == 4:
        gray = cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    elif image.ndim == 2:
        gray = image
    else:
        raise ValueError(
            f"`image_bgr` must be of shape (H, W), (H, W, 3) or (H, W, 4), got {image.shape}"
        )
    height, width = gray.shape
    scale = 1.0
    if max_side is not None and max(height, width) > max_side:
        scale = max_side / max(height, width)
        gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    # evens out lighting, which the cascade (trained on equalised faces) is sensitive to
    gray = cv2.equalizeHist(gray)
    smallest = max(24, int(round(min_size * min(gray.shape))))
    found = _cascade().detectMultiScale(
        gray,
        scaleFactor=scale_factor,
        minNeighbors=min_neighbors,
        minSize=(smallest, smallest),
    )
    boxes = [
        (
            int(round(x / scale)),
            int(round(y / scale)),
            int(round(w / scale)),
            int(round(h / scale)),
        )
        for x, y, w, h in (found if len(found) else [])
    ]
    boxes = [_clip_box(box, width, height) for box in boxes]
    return sorted(boxes, key=lambda box: box[2] * box[3], reverse=True)


def _clip_box(box: Box, width: int, height: int) -> Box:
    x, y, w, h = box
    x, y = max(0, x), max(0, y)
    return x, y, max(1, min(w, width - x)), max(1, min(h, height - y))


def crop_inputs(
    image_bgr: np.ndarray,
    boxes: Sequence[Box],
    size: int,
    channels: int,
    *,
    input_range: Sequence[float] = (0.0, 1.0),
    grey: bool | None = None,
) -> np.ndarray:
    """The model inputs of the faces in ``boxes``: float32 ``(len(boxes), size, size, channels)``.

    Each crop goes through :func:`senet.data.images.to_model_input`, the function every
    training and evaluation image goes through (alpha dropped, OpenCV's luma weights for
    grey, RGB order for colour, resized in its own bit depth, then scaled to [0, 1]), with
    the brightness scale of the whole image; so a face reaches the model exactly as the
    same pixels in a training image file would.

    Args:
        image_bgr: A decoded image or video frame in OpenCV's order (as
            :func:`senet.data.images.load_image` returns it): grey, BGR or BGRA.
        boxes: ``(x, y, w, h)`` boxes inside the image.
        size: The model's input side.
        channels: The model's input channels, 1 or 3.
        input_range: The values the model expects; [0, 1] crops are mapped linearly.
        grey: Grey crops repeated over the channels (default: when ``channels`` is 1).
    """
    image = np.asarray(image_bgr)
    scale = pixel_scale(image, source="image")
    crops = [image[y : y + h, x : x + w] for x, y, w, h in boxes]
    if not crops:
        return np.zeros((0, size, size, channels), np.float32)
    grey = channels == 1 if grey is None else grey
    colours = 1 if grey else channels
    batch = np.stack(
        [to_model_input(crop, size, colours, order="bgr", scale=scale) for crop in crops]
    )
    if colours != channels:
        batch = np.repeat(batch, channels, axis=-1)
    return to_input_range(batch, input_range)
