"""Synthetic 3-D phantoms: organs in a body, for 3-D segmentation without downloading data.

Each volume is a cube holding a body (a large ellipsoid, labelled background like the air
around it but with an intensity of its own) and, inside it, one randomly placed, sized and
rotated ellipsoid per organ class. Each class has its own shape and size range (the liver
large, a kidney elongated, the spleen round, a lesion small, a vessel long and thin) and
its own mean intensity. Organs are drawn in class order, so a later organ may hide part of
an earlier one; a volume in which an organ would keep less than half of its voxels (or
fewer than :data:`MIN_ORGAN_VOXELS`) is drawn again, so every class appears in every
volume. Then what makes real scans hard:

- partial volume: intensities are rendered on a grid twice as fine and averaged over each
  2x2x2 block, so edges blend; the label of a voxel is the structure containing its centre
  (the centre of its 2x2x2 block, on the same ellipsoids), so labels and intensities
  describe one geometry;
- a smooth multiplicative bias field (a product of one low-frequency cosine per axis,
  normalised to mean 1), like the intensity inhomogeneity of MRI;
- additive Gaussian noise; intensities are finally clipped to ``[0, 1]``.

Presets (``difficulty``, :data:`PHANTOM_PRESETS`):

- ``"easy"``: organ intensities far apart and far from the body's, little noise and a weak
  bias field: intensity alone nearly separates the classes.
- ``"hard"``: organ intensities close together, one of them darker than the body (so a
  threshold cannot separate organ from body), smaller organs, three times the noise, a
  strong bias field and a rotated body. Classes overlap in intensity, so shape, size and
  context must tell them apart: the hard preset is one on which a plain U-Net does not
  saturate, and attention has room to show.

MONAI's ``create_test_image_3d`` draws balls of one intensity; these differ by class. Each
ellipsoid is evaluated only inside its bounding box, with NumPy broadcasting; one volume
on the fine grid is in memory at a time (16 volumes of 48^3 take well under a second).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from senet.checks import check_choice, check_number, check_positive, fail

__all__ = [
    "MIN_ORGAN_VOXELS",
    "PHANTOM_CLASS_NAMES",
    "PHANTOM_PRESETS",
    "PhantomPreset",
    "synthetic_phantoms",
]

#: Class names by label (background first); ``num_classes`` takes the first ones.
PHANTOM_CLASS_NAMES = ("background", "liver", "kidney", "spleen", "lesion", "vessel")

#: The fewest voxels an organ may keep visible in a volume (else the volume is redrawn).
MIN_ORGAN_VOXELS = 4


@dataclass(frozen=True)
class PhantomPreset:
    """How a phantom looks.

    Attributes:
        body: Intensity of the body (before bias and noise; the air is 0).
        organs: Intensity of each organ class, in label order (liver, kidney, ...).
        size_scale: Factor on every organ's semi-axes.
        noise: Standard deviation of the additive Gaussian noise.
        bias: Amplitude of each axis's cosine in the multiplicative bias field.
        rotate_body: Whether the body is randomly rotated too.
    """

    body: float
    organs: tuple[float, ...]
    size_scale: float
    noise: float
    bias: float
    rotate_body: bool


#: The two presets (module docstring).
PHANTOM_PRESETS: Mapping[str, PhantomPreset] = MappingProxyType(
    {
        "easy": PhantomPreset(0.3, (0.55, 0.75, 0.95, 0.15, 0.85), 1.0, 0.04, 0.1, False),
        "hard": PhantomPreset(0.45, (0.55, 0.62, 0.38, 0.5, 0.68), 0.8, 0.12, 0.35, True),
    }
)

# each organ class: semi-axis ranges as fractions of the volume's side
_ORGAN_AXES = (
    ((0.22, 0.28), (0.16, 0.22), (0.14, 0.18)),  # liver: large
    ((0.09, 0.12), (0.09, 0.12), (0.15, 0.20)),  # kidney: elongated
    ((0.11, 0.14), (0.11, 0.14), (0.11, 0.14)),  # spleen: round
    ((0.06, 0.08), (0.06, 0.08), (0.06, 0.08)),  # lesion: small
    ((0.04, 0.05), (0.04, 0.05), (0.20, 0.26)),  # vessel: long and thin
)
_BODY_AXES = (0.42, 0.36, 0.40)
# an organ's semi-axes are at least this many voxels of the output grid (no organ vanishes
# between voxel centres on a small grid)
_MIN_SEMI_AXIS_VOXELS = 1.5
# an organ must keep this fraction of its voxels visible (not hidden by later organs)
_MIN_VISIBLE_FRACTION = 0.5
_MAX_DRAWS = 20


@dataclass(frozen=True)
class _Ellipsoid:
    centre: np.ndarray  # (3,), in [0, 1]^3
    axes: np.ndarray  # (3,) semi-axes, fractions of the side
    rotation: np.ndarray  # (3, 3); local coordinates are (point - centre) @ rotation


def _rotation(rng: np.random.Generator) -> np.ndarray:
    """A random rotation matrix (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _paint(volume: np.ndarray, shape: _Ellipsoid, value) -> int:
    """Set the voxels of ``volume`` (a cube) whose centres lie in ``shape`` to ``value``,
    evaluating only its bounding box; returns how many voxels that is."""
    side = volume.shape[0]
    # half-extent of the rotated ellipsoid along each world axis
    extent = np.sqrt(((shape.rotation * shape.axes) ** 2).sum(axis=1))
    low = np.clip(np.floor((shape.centre - extent) * side - 0.5).astype(int), 0, side)
    high = np.clip(np.ceil((shape.centre + extent) * side - 0.5).astype(int) + 1, 0, side)
    if (high <= low).any():
        return 0
    offsets = [
        ((np.arange(low[d], high[d]) + 0.5) / side - shape.centre[d]).reshape(
            [-1 if d == e else 1 for e in range(3)]
        )
        for d in range(3)
    ]
    distance = 0.0
    for j in range(3):
        local = sum(offsets[i] * shape.rotation[i, j] for i in range(3))
        distance = distance + (local / shape.axes[j]) ** 2
    inside = distance <= 1.0
    volume[low[0] : high[0], low[1] : high[1], low[2] : high[2]][inside] = value
    return int(inside.sum())


def _layout(
    rng: np.random.Generator, preset: PhantomPreset, num_classes: int, size: int
) -> tuple[_Ellipsoid, list[_Ellipsoid]]:
    """Draw the body and one organ per class, each organ inside the body."""
    body_axes = np.array(_BODY_AXES) * rng.uniform(0.9, 1.05, 3)
    body_rotation = _rotation(rng) if preset.rotate_body else np.eye(3)
    centre = np.full(3, 0.5)
    organs = []
    for k in range(1, num_classes):
        axes = np.array([rng.uniform(*r) for r in _ORGAN_AXES[k - 1]]) * preset.size_scale
        axes = np.maximum(axes, _MIN_SEMI_AXIS_VOXELS / size)
        # a centre in the body shrunk by the organ's largest semi-axis, in body coordinates
        room = np.maximum(body_axes - axes.max(), 0.02)
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        offset = direction * room * rng.uniform(0, 0.8) ** (1 / 3)
        organs.append(_Ellipsoid(centre + body_rotation @ offset, axes, _rotation(rng)))
    return _Ellipsoid(centre, body_axes, body_rotation), organs


def _labels(organs: list[_Ellipsoid], size: int) -> np.ndarray | None:
    """The label map of ``organs`` on the output grid, or None when an organ is mostly
    hidden by later ones (or smaller than :data:`MIN_ORGAN_VOXELS`)."""
    labels = np.zeros((size, size, size), np.int32)
    drawn = [_paint(labels, organ, k) for k, organ in enumerate(organs, start=1)]
    visible = np.bincount(labels.ravel(), minlength=len(organs) + 1)[1:]
    for count, full in zip(visible, drawn, strict=True):
        if count < MIN_ORGAN_VOXELS or count < _MIN_VISIBLE_FRACTION * full:
            return None
    return labels


def _bias(size: int, rng: np.random.Generator, strength: float) -> np.ndarray:
    """A smooth multiplicative field of mean 1: one cosine (0.5 to 1.5 periods across the
    volume, random phase) per axis, multiplied together."""
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size
    field = np.ones((size, size, size), np.float32)
    for dim in range(3):
        frequency, phase = rng.uniform(0.5, 1.5), rng.uniform(0, 2 * np.pi)
        shape = [1, 1, 1]
        shape[dim] = size
        field = field * (1 + strength * np.cos(2 * np.pi * frequency * axis + phase)).reshape(shape)
    return field / field.mean()


def synthetic_phantoms(
    n: int,
    *,
    size: int = 48,
    difficulty: str = "easy",
    num_classes: int = 4,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` phantom volumes: organs in a body (module docstring).

    Args:
        n: Number of volumes.
        size: The side of each cube, in voxels (at least 16).
        difficulty: ``"easy"`` or ``"hard"`` (:data:`PHANTOM_PRESETS`).
        num_classes: Classes with the background, 2 to 6: the first ``num_classes`` of
            :data:`PHANTOM_CLASS_NAMES`.
        seed: Seed of the NumPy generator that draws everything; the same seed gives the
            same volumes.

    Returns:
        ``(images, labels)``: float32 images ``(n, size, size, size, 1)`` in ``[0, 1]`` and
        int32 label maps ``(n, size, size, size)`` with values ``0 .. num_classes - 1``
        (0: air and body), every class present in every volume.

    Raises:
        ValueError: An argument out of range.

    Example:
        >>> images, labels = synthetic_phantoms(2, size=16)
        >>> images.shape, labels.shape, sorted(np.unique(labels).tolist())
        ((2, 16, 16, 16, 1), (2, 16, 16, 16), [0, 1, 2, 3])
    """
    check_positive("n", n, integer=True)
    check_positive("size", size, integer=True)
    if size < 16:
        raise fail("size", "an integer >= 16", size)
    preset = PHANTOM_PRESETS[check_choice("difficulty", difficulty, tuple(PHANTOM_PRESETS))]
    if isinstance(num_classes, bool) or num_classes not in range(2, len(PHANTOM_CLASS_NAMES) + 1):
        raise fail("num_classes", f"an integer from 2 to {len(PHANTOM_CLASS_NAMES)}", num_classes)
    check_number("seed", seed, integer=True, minimum=0)
    n, size, num_classes = int(n), int(size), int(num_classes)
    rng = np.random.default_rng(seed)
    images = np.empty((n, size, size, size, 1), np.float32)
    labels = np.empty((n, size, size, size), np.int32)
    for i in range(n):
        for _ in range(_MAX_DRAWS):
            body, organs = _layout(rng, preset, num_classes, size)
            label = _labels(organs, size)
            if label is not None:
                break
        else:  # no layout in _MAX_DRAWS kept every organ visible: keep the last one
            label = np.zeros((size, size, size), np.int32)
            for k, organ in enumerate(organs, start=1):
                _paint(label, organ, k)
        fine = np.zeros((2 * size,) * 3, np.float32)
        _paint(fine, body, preset.body)
        for k, organ in enumerate(organs, start=1):
            _paint(fine, organ, preset.organs[k - 1])
        # partial volume: the fine grid averaged over 2x2x2 blocks
        volume = fine.reshape(size, 2, size, 2, size, 2).mean(axis=(1, 3, 5))
        del fine
        volume *= _bias(size, rng, preset.bias)
        volume += rng.normal(0.0, preset.noise, volume.shape).astype(np.float32)
        images[i, ..., 0] = np.clip(volume, 0.0, 1.0)
        labels[i] = label
    return images, labels
