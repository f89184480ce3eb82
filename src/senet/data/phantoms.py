"""Synthetic 3-D phantoms: organs in a body, for 3-D segmentation without downloading data.

Each volume holds a body (a large ellipsoid, labelled background with the outside) and
one randomly placed, sized and rotated ellipsoid per organ class, each class with its own
size range and intensity, drawn over one another in class order. Then what makes real
scans hard: partial volume (intensities rendered on a grid twice as fine and averaged
2x2x2, so edges blend; labels are the organ containing each voxel's centre), a smooth
multiplicative bias field (products of cosines over the volume) and Gaussian noise.

Presets: ``"easy"`` (organs far apart in intensity, little noise or bias: intensity alone
nearly separates the classes) and ``"hard"`` (intensities close together and one below
the body's, smaller organs, three times the noise, a strong bias field): the hard preset
is one on which a plain U-Net does not saturate, so attention has room to show.
MONAI's ``create_test_image_3d`` draws balls of one intensity; these differ by class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from senet.checks import check_choice, check_positive, fail

__all__ = ["PHANTOM_CLASS_NAMES", "PHANTOM_PRESETS", "synthetic_phantoms"]

#: Class names by label (background first); ``num_classes`` takes the first ones.
PHANTOM_CLASS_NAMES = ("background", "liver", "kidney", "spleen", "lesion", "vessel")


@dataclass(frozen=True)
class PhantomPreset:
    """Intensities (body, then each organ class), organ size scale, noise and bias."""

    body: float
    organs: tuple[float, ...]
    size_scale: float
    noise: float
    bias: float


PHANTOM_PRESETS = {
    "easy": PhantomPreset(0.3, (0.55, 0.75, 0.95, 0.15, 0.85), 1.0, 0.04, 0.1),
    "hard": PhantomPreset(0.45, (0.55, 0.62, 0.38, 0.5, 0.68), 0.8, 0.12, 0.35),
}

# each organ class: semi-axis ranges as fractions of the volume's side
_ORGAN_AXES = (
    ((0.22, 0.28), (0.16, 0.22), (0.14, 0.18)),  # liver: large
    ((0.09, 0.12), (0.09, 0.12), (0.15, 0.20)),  # kidney: elongated
    ((0.11, 0.14), (0.11, 0.14), (0.11, 0.14)),  # spleen: round
    ((0.06, 0.08), (0.06, 0.08), (0.06, 0.08)),  # lesion: small
    ((0.04, 0.05), (0.04, 0.05), (0.20, 0.26)),  # vessel: long and thin
)


def _rotation(rng: np.random.Generator) -> np.ndarray:
    """A random rotation matrix (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _inside(points: np.ndarray, centre, axes, rotation) -> np.ndarray:
    """Which of ``points`` (``(..., 3)``) lie in the rotated ellipsoid."""
    local = (points - centre) @ rotation
    return (((local / axes) ** 2).sum(-1)) <= 1.0


def _grid(side: int) -> np.ndarray:
    """Voxel centres of a cube of ``side`` voxels in ``[0, 1]^3``, ``(side, side, side, 3)``."""
    axis = (np.arange(side, dtype=np.float32) + 0.5) / side
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1)


def _bias(side: int, rng, strength: float) -> np.ndarray:
    axis = (np.arange(side, dtype=np.float32) + 0.5) / side
    field = np.ones((side, side, side), np.float32)
    for dim in range(3):
        frequency, phase = rng.uniform(0.5, 1.5), rng.uniform(0, 2 * np.pi)
        shape = [1, 1, 1]
        shape[dim] = side
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
    """Draw ``n`` phantom volumes (module docstring).

    Args:
        n: Number of volumes.
        size: The side of each cube, in voxels (at least 16).
        difficulty: ``"easy"`` or ``"hard"``.
        num_classes: Classes with the background, 2 to 6 (:data:`PHANTOM_CLASS_NAMES`).
        seed: Seed of the NumPy generator that draws everything.

    Returns:
        ``(images, labels)``: float32 ``(n, S, S, S, 1)`` in ``[0, 1]`` and int32 label
        maps ``(n, S, S, S)``.

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
    rng = np.random.default_rng(seed)
    fine, coarse = _grid(2 * size), _grid(size)
    images = np.empty((n, size, size, size, 1), np.float32)
    labels = np.empty((n, size, size, size), np.int32)
    for i in range(n):
        body_axes = np.array([0.42, 0.36, 0.40]) * rng.uniform(0.9, 1.05, 3)
        body_rotation = _rotation(rng) if difficulty == "hard" else np.eye(3)
        centre = np.full(3, 0.5)
        intensity = np.where(_inside(fine, centre, body_axes, body_rotation), preset.body, 0.0)
        label = np.zeros((size, size, size), np.int32)
        for k in range(1, num_classes):
            ranges = _ORGAN_AXES[k - 1]
            axes = np.array([rng.uniform(*r) for r in ranges]) * preset.size_scale
            # inside the body, away from its surface by the organ's largest semi-axis
            room = np.maximum(body_axes - axes.max(), 0.02)
            direction = rng.normal(size=3)
            direction /= np.linalg.norm(direction)
            organ_centre = centre + direction * room * rng.uniform(0, 0.8) ** (1 / 3)
            rotation = _rotation(rng)
            intensity = np.where(
                _inside(fine, organ_centre, axes, rotation), preset.organs[k - 1], intensity
            )
            label[_inside(coarse, organ_centre, axes, rotation)] = k
        # partial volume: the fine grid averaged 2x2x2
        volume = intensity.reshape(size, 2, size, 2, size, 2).mean(axis=(1, 3, 5))
        volume = volume * _bias(size, rng, preset.bias)
        volume = volume + rng.normal(0, preset.noise, volume.shape)
        images[i, ..., 0] = np.clip(volume, 0.0, 1.0)
        labels[i] = label
    return images, labels
