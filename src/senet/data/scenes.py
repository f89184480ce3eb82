"""Synthetic face scenes for detection: expression faces pasted on cluttered canvases.

Each scene is a gray canvas (a brightness gradient, clutter shapes, noise) with one or more
of the synthetic expression faces (:func:`senet.data.synthetic.draw_faces`) pasted at
random places and sizes; every face's box and expression is known, so one network can
learn to find the faces and name their expressions, and nothing is downloaded.

Presets:

- ``"easy"``: 1-3 faces a scene, 20-45% of the canvas side, never overlapping; the faces
  of the easy expression set; six clutter shapes.
- ``"hard"``: 1-5 faces, 15-45% of the side, the hard expression set (subtler
  expressions, occluders over parts), a face may be partly covered by a later one (at
  most 40% of its pixels), face-coloured blobs among twelve clutter shapes, stronger
  noise.

A face's box is the extent of its whole face (skin and parts, not the square it was drawn
in), also where a later face covers part of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from senet.checks import check_choice, fail
from senet.data.base import EMOTIONS
from senet.data.coco import DetectionSet, pad_boxes
from senet.data.synthetic import draw_faces, sample_geometry

__all__ = ["SCENE_PRESETS", "synthetic_scenes"]

_TILE = 64  # faces are drawn at this side, then resized to their size in the scene


@dataclass(frozen=True)
class ScenePreset:
    """The knobs of :func:`synthetic_scenes`.

    Attributes:
        faces: Fewest and most faces a scene.
        size: Face height range, fraction of the canvas side.
        covered: Largest share of an earlier face's pixels a later face may cover (0: no
            overlap at all).
        clutter: Clutter shapes a canvas.
        blobs: Of those, face-coloured ellipses (distractors).
        noise: Pixel noise standard deviation.
    """

    faces: tuple[int, int]
    size: tuple[float, float]
    covered: float
    clutter: int
    blobs: int
    noise: float


#: The presets by name.
SCENE_PRESETS = {
    "easy": ScenePreset(
        faces=(1, 3), size=(0.2, 0.45), covered=0.0, clutter=6, blobs=0, noise=0.03
    ),
    "hard": ScenePreset(
        faces=(1, 5), size=(0.15, 0.45), covered=0.4, clutter=12, blobs=3, noise=0.05
    ),
}


def synthetic_scenes(
    n: int,
    *,
    image_size: int = 128,
    seed: int = 0,
    difficulty: str = "easy",
    channels: int = 1,
) -> DetectionSet:
    """Draw ``n`` scenes of synthetic faces with their boxes and expressions.

    A deterministic function of its arguments.

    Args:
        n: Number of scenes (positive).
        image_size: Side of the square canvases in pixels (at least 64).
        seed: Seed of the NumPy generator that draws everything.
        difficulty: ``"easy"`` or ``"hard"`` (:data:`SCENE_PRESETS`).
        channels: 1 (gray, as drawn) or 3 (the gray repeated).

    Returns:
        A :class:`~senet.data.coco.DetectionSet` whose classes are the seven expressions
        (:data:`~senet.data.base.EMOTIONS`) and whose names are ``scene_000000.png``, ...

    Example:
        >>> scenes = synthetic_scenes(4, image_size=96)
        >>> scenes.x.shape, scenes.class_names[0]
        ((4, 96, 96, 1), 'angry')
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise fail("n", "a positive integer", n)
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)):
        raise fail("image_size", "an integer >= 64", image_size)
    if image_size < 64:
        raise fail("image_size", "an integer >= 64", image_size)
    if channels not in (1, 3):
        raise fail("channels", "1 or 3", channels)
    preset = SCENE_PRESETS[check_choice("difficulty", difficulty, tuple(SCENE_PRESETS))]
    rng = np.random.default_rng(seed)
    counts = rng.integers(preset.faces[0], preset.faces[1] + 1, n)
    total = int(counts.sum())
    labels = rng.integers(0, len(EMOTIONS), total)
    # every face drawn at once, centred and upright enough to fill its tile alike
    geometry = sample_geometry(total, rng, difficulty=difficulty)
    geometry.center_x[:] = 0.5
    geometry.center_y[:] = 0.5
    tiles, masks = draw_faces(
        geometry, labels, rng, image_size=_TILE, difficulty=difficulty, skin=True
    )
    alphas = masks["skin"] | masks["eyes"] | masks["brows"] | masks["mouth"]
    side = int(image_size)
    x = np.empty((n, side, side, 1), np.float32)
    all_boxes, all_labels = [], []
    face = 0
    for scene in range(n):
        canvas = _canvas(side, rng, preset)
        cover = np.full((side, side), -1, np.int32)  # which face shows at each pixel
        boxes, kept, areas = [], [], []
        for _ in range(int(counts[scene])):
            placed = _place(tiles[face, :, :, 0], alphas[face], side, rng, preset, cover, areas)
            if placed is not None:
                pixels, alpha, (top, left), box = placed
                h, w = alpha.shape
                region = canvas[top : top + h, left : left + w]
                region[:] = region * (1.0 - alpha) + pixels * alpha
                cover[top : top + h, left : left + w][alpha > 0.5] = len(boxes)
                areas.append(int((alpha > 0.5).sum()))
                boxes.append(box)
                kept.append(int(labels[face]))
            face += 1
        noise = rng.normal(0.0, preset.noise, canvas.shape).astype(np.float32)
        x[scene, :, :, 0] = np.clip(canvas + noise, 0.0, 1.0)
        all_boxes.append(np.asarray(boxes, np.float32).reshape(-1, 4))
        all_labels.append(np.asarray(kept, np.int32))
    if channels == 3:
        x = np.repeat(x, 3, axis=-1)
    boxes, box_labels = pad_boxes(all_boxes, all_labels)
    names = tuple(f"scene_{index:06d}.png" for index in range(n))
    return DetectionSet(x, boxes, box_labels, tuple(EMOTIONS), names)


def _canvas(side: int, rng: np.random.Generator, preset: ScenePreset) -> np.ndarray:
    """A gray background: a gradient and clutter (rectangles, lines, ellipses; some of
    the ellipses face-coloured in the hard preset)."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    angle = rng.uniform(0, 2 * np.pi)
    canvas = rng.uniform(0.2, 0.7) + rng.uniform(-0.25, 0.25) * (
        np.cos(angle) * xx + np.sin(angle) * yy - 0.5
    )
    canvas = canvas.astype(np.float32)
    for number in range(preset.clutter):
        shade = float(rng.uniform(0.05, 0.95))
        if number < preset.blobs:  # a face-sized, skin-bright ellipse without a face
            centre = tuple(int(v) for v in rng.integers(0, side, 2))
            axes = (int(side * rng.uniform(0.05, 0.15)), int(side * rng.uniform(0.07, 0.2)))
            cv2.ellipse(canvas, centre, axes, 0, 0, 360, float(rng.uniform(0.55, 0.85)), -1)
            continue
        shape = rng.integers(0, 3)
        a = tuple(int(v) for v in rng.integers(0, side, 2))
        b = tuple(int(v) for v in rng.integers(0, side, 2))
        if shape == 0:
            cv2.rectangle(canvas, a, b, shade, -1)
        elif shape == 1:
            cv2.line(canvas, a, b, shade, int(rng.integers(1, max(2, side // 24))))
        else:
            axes = tuple(int(v) for v in rng.integers(2, max(3, side // 8), 2))
            cv2.ellipse(canvas, a, axes, float(rng.uniform(0, 180)), 0, 360, shade, -1)
    return canvas


def _place(tile, alpha, side, rng, preset, cover, areas):
    """Where a face goes, at what size: ``(pixels, alpha, (top, left), box)``, or None
    when 20 tries found no place that keeps the earlier faces visible enough."""
    # the face's own extent in its tile: its box once scaled
    rows = np.flatnonzero(alpha.any(axis=1))
    cols = np.flatnonzero(alpha.any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    tile, alpha = tile[r0:r1, c0:c1], alpha[r0:r1, c0:c1].astype(np.float32)
    for _ in range(20):
        height = int(round(side * rng.uniform(*preset.size)))
        width = max(4, int(round(height * tile.shape[1] / tile.shape[0])))
        if width >= side or height >= side:
            continue
        pixels = cv2.resize(tile, (width, height), interpolation=cv2.INTER_AREA)
        soft = np.clip(cv2.resize(alpha, (width, height), interpolation=cv2.INTER_AREA), 0, 1)
        top = int(rng.integers(0, side - height + 1))
        left = int(rng.integers(0, side - width + 1))
        window = cover[top : top + height, left : left + width]
        hidden = window[soft > 0.5]
        if not _fair(hidden, cover, preset.covered, areas):
            continue
        box = (left, top, left + width, top + height)
        return pixels, soft, (top, left), box
    return None


def _fair(hidden: np.ndarray, cover: np.ndarray, covered: float, areas: list[int]) -> bool:
    """Whether covering the pixels ``hidden`` (face numbers, -1 for canvas) leaves every
    earlier face at least ``1 - covered`` of the pixels it had when pasted (``areas``)."""
    faces = hidden[hidden >= 0]
    if faces.size == 0:
        return True
    if covered <= 0:
        return False
    lost = np.bincount(faces, minlength=len(areas))
    shown = np.bincount(cover[cover >= 0].ravel(), minlength=len(areas))
    return bool(np.all(shown - lost >= (1.0 - covered) * np.asarray(areas)))
