"""NIfTI volumes (``.nii``, ``.nii.gz``) in the Medical Segmentation Decathlon layout.

Reading goes through nibabel (the ``senet[medical]`` extra): the header's shape is checked
against the voxel cap before any voxel is read (``SENET_MAX_VOXELS``, default 512^3: a
``.nii.gz`` of a few KB can declare a volume of terabytes), then the volume is brought to
the closest canonical orientation (RAS+, ``nibabel.as_closest_canonical``), so an image
and its label stored in different axis orders end up voxel for voxel on one grid; its
affine and voxel spacing (mm) come with it. Intensities are z-scored or clipped to a CT
window (:func:`normalize_intensity`). Bad input is a one-line
:class:`~senet.errors.DataError` that names the file: not a NIfTI file, an empty volume,
over the cap, NaN/inf intensities, labels that are not integers or out of range, an image
and label of different shapes or affines.

Layout (:func:`read_decathlon`): ``ROOT/imagesTr/NAME.nii.gz`` with
``ROOT/labelsTr/NAME.nii.gz``, ``ROOT/imagesTs/NAME.nii.gz`` without labels, and the class
names in ``ROOT/dataset.json`` (``{"labels": {"0": "background", ...}}``); files whose
names start with ``.`` (``._NAME.nii.gz``, macOS litter in the Decathlon's archives) are
not volumes.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from senet.checks import env_cap, fail
from senet.errors import DataError

__all__ = [
    "DEFAULT_MAX_VOXELS",
    "MAX_VOXELS_ENV",
    "Case",
    "Volume",
    "check_pair",
    "decathlon_class_names",
    "normalize_intensity",
    "read_decathlon",
    "read_volume",
    "voxel_cap",
    "write_volume",
]

MAX_VOXELS_ENV = "SENET_MAX_VOXELS"
DEFAULT_MAX_VOXELS = 512**3
NIFTI_SUFFIXES = (".nii", ".nii.gz")


@dataclass
class Volume:
    """One NIfTI volume in RAS+ orientation.

    Attributes:
        array: ``(D, H, W)`` (or ``(D, H, W, C)`` for a multi-channel image): float32
            intensities for an image, int32 classes for a label.
        affine: The 4x4 voxel-to-world (mm) matrix of ``array``.
        spacing: Voxel size along each of the three axes (mm).
        source: The file it was read from.
    """

    array: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, float, float]
    source: str


@dataclass
class Case:
    """A Decathlon case: its name (the file name), image and label (None in imagesTs)."""

    name: str
    image: Volume
    label: Volume | None


def _nibabel():
    try:
        import nibabel
    except ImportError:
        raise ImportError(
            "reading NIfTI volumes needs nibabel: pip install 'senet[medical]'"
        ) from None
    return nibabel


def voxel_cap(max_voxels: int | None = None) -> int:
    """The voxel cap: ``max_voxels``, else ``SENET_MAX_VOXELS``, else 512^3."""
    return env_cap(max_voxels, "max_voxels", MAX_VOXELS_ENV, DEFAULT_MAX_VOXELS)


def is_nifti(path: str | os.PathLike) -> bool:
    return Path(path).name.lower().endswith(NIFTI_SUFFIXES)


def read_volume(
    path: str | os.PathLike, *, kind: str = "image", max_voxels: int | None = None
) -> Volume:
    """Read one NIfTI file, checked and in RAS+ orientation (module docstring).

    Args:
        path: A ``.nii`` or ``.nii.gz`` file.
        kind: ``"image"`` (float32 intensities, finite) or ``"label"`` (whole numbers,
            int32, none negative).
        max_voxels: The cap on voxels times channels (default :func:`voxel_cap`).

    Raises:
        DataError: One line naming the file (module docstring).
    """
    nib = _nibabel()
    path = Path(path)
    if kind not in ("image", "label"):
        raise fail("kind", "'image' or 'label'", kind)
    cap = voxel_cap(max_voxels)
    try:
        image = nib.load(str(path))
        shape = tuple(int(s) for s in image.header.get_data_shape())
    except (OSError, ValueError, EOFError, nib.filebasedimages.ImageFileError) as error:
        raise DataError(f"{path}: cannot read NIfTI file ({_first_line(error)})") from None
    if len(shape) < 3 or any(s == 0 for s in shape):
        raise DataError(f"{path}: empty or not 3-D volume, shape {shape}")
    if math.prod(shape) > cap:
        raise DataError(
            f"{path}: its header declares {math.prod(shape)} voxels {shape}, over the cap of "
            f"{cap}; set {MAX_VOXELS_ENV} to a larger number to read it"
        )
    try:
        image = nib.as_closest_canonical(image)
        array = np.asarray(image.dataobj)
    except (OSError, ValueError, EOFError, MemoryError) as error:
        raise DataError(f"{path}: cannot read its voxels ({_first_line(error)})") from None
    if array.ndim > 4:
        raise DataError(f"{path}: expected a 3-D volume (or 4-D with channels), got {shape}")
    if kind == "image":
        array = array.astype(np.float32)
        if not np.isfinite(array).all():
            raise DataError(f"{path}: the image has NaN or inf intensities")
    else:
        if array.ndim != 3:
            raise DataError(f"{path}: a label volume must be 3-D, got shape {array.shape}")
        if np.issubdtype(array.dtype, np.floating) and not (
            np.isfinite(array).all() and (np.round(array) == array).all()
        ):
            raise DataError(f"{path}: label values must be integers (class indices)")
        if array.min() < 0:
            raise DataError(f"{path}: label value {array.min().item()} is negative")
        array = array.astype(np.int32)
    affine = np.asarray(image.affine, np.float64)
    spacing = tuple(float(s) for s in np.sqrt((affine[:3, :3] ** 2).sum(axis=0)))
    return Volume(array, affine, spacing, str(path))


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def normalize_intensity(
    array: np.ndarray, *, mode: str = "zscore", window: Sequence[float] | None = None
) -> np.ndarray:
    """Intensities as a model takes them: z-score (mean 0, sd 1 over every voxel; a
    constant volume becomes zeros), or, with ``window=(low, high)`` (a CT window in HU,
    e.g. ``(-160, 240)`` for the abdomen), clipped to it and scaled to ``[0, 1]``.

    >>> normalize_intensity(np.array([0.0, 100.0, 400.0]), window=(0, 200)).tolist()
    [0.0, 0.5, 1.0]
    """
    array = np.asarray(array, np.float32)
    if window is not None:
        low, high = (float(v) for v in window)
        if not high > low:
            raise fail("window", "(low, high) with low < high", window)
        return ((np.clip(array, low, high) - low) / (high - low)).astype(np.float32)
    if mode != "zscore":
        raise fail("mode", "'zscore' (or give a window)", mode)
    sd = float(array.std())
    if sd == 0:
        return np.zeros_like(array)
    return ((array - float(array.mean())) / sd).astype(np.float32)


def check_pair(
    image: Volume, label: Volume, *, num_classes: int | None = None, atol: float = 1e-3
) -> None:
    """An image and its label must lie on one grid: the same spatial shape and affine
    (within ``atol`` mm), and labels below ``num_classes`` when given; else a DataError
    naming the label file."""
    if image.array.shape[:3] != label.array.shape:
        raise DataError(
            f"{label.source}: label shape {label.array.shape} differs from its image's "
            f"{image.array.shape[:3]} ({Path(image.source).name})"
        )
    if not np.allclose(image.affine, label.affine, atol=atol):
        raise DataError(
            f"{label.source}: its affine differs from its image's ({Path(image.source).name}) "
            "by more than the tolerance: the two are not on one grid"
        )
    if num_classes is not None and label.array.size and label.array.max() >= num_classes:
        raise DataError(
            f"{label.source}: label value {label.array.max().item()} out of range "
            f"[0, {num_classes})"
        )


def decathlon_class_names(root: str | os.PathLike) -> list[str] | None:
    """The class names of ``ROOT/dataset.json``'s ``labels``, in label order, or None."""
    path = Path(root) / "dataset.json"
    if not path.is_file():
        return None
    try:
        labels = json.loads(path.read_text())["labels"]
        names = {int(key): str(value) for key, value in labels.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise DataError(f"{path}: 'labels' must map class numbers to names") from None
    if sorted(names) != list(range(len(names))):
        raise DataError(f"{path}: 'labels' must number the classes 0, 1, ... without gaps")
    return [names[k] for k in range(len(names))]


def _volumes(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        path for path in folder.iterdir() if is_nifti(path) and not path.name.startswith(".")
    )


def read_decathlon(
    root: str | os.PathLike,
    *,
    split: str = "train",
    max_voxels: int | None = None,
    normalize: str = "zscore",
    window: Sequence[float] | None = None,
    num_classes: int | None = None,
) -> list[Case]:
    """The cases of a Decathlon folder, one volume read at a time, in name order.

    Args:
        root: The folder with ``imagesTr/``, ``labelsTr/`` (and ``imagesTs/``).
        split: ``"train"`` (images with labels) or ``"test"`` (``imagesTs``, no labels).
        max_voxels: The voxel cap per file.
        normalize: ``"zscore"``; see :func:`normalize_intensity`.
        window: A CT window ``(low, high)`` instead of the z-score.
        num_classes: Labels must be below it (default: ``dataset.json``'s count, if any).

    Raises:
        DataError: A missing folder, an image without its label, or a bad volume or pair.
    """
    root = Path(root)
    if split not in ("train", "test"):
        raise fail("split", "'train' or 'test'", split)
    folder = root / ("imagesTr" if split == "train" else "imagesTs")
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found (a Decathlon folder has imagesTr/)")
    if num_classes is None:
        names = decathlon_class_names(root)
        num_classes = len(names) if names else None
    cases = []
    for path in _volumes(folder):
        image = read_volume(path, kind="image", max_voxels=max_voxels)
        image.array = normalize_intensity(image.array, mode=normalize, window=window)
        label = None
        if split == "train":
            label_path = root / "labelsTr" / path.name
            if not label_path.is_file():
                raise DataError(f"{path}: no label {label_path} for this image")
            label = read_volume(label_path, kind="label", max_voxels=max_voxels)
            check_pair(image, label, num_classes=num_classes)
        cases.append(Case(path.name, image, label))
    return cases


def write_volume(path: str | os.PathLike, array: np.ndarray, affine: np.ndarray) -> None:
    """Write ``array`` as a NIfTI file with ``affine``: integers as uint8 (or int16 when
    they do not fit), anything else float32; through a temporary file, so a failed write
    leaves nothing half-written at ``path``."""
    nib = _nibabel()
    from senet._files import atomic_write

    array = np.asarray(array)
    if np.issubdtype(array.dtype, np.integer):
        fits = array.size == 0 or (array.min() >= 0 and array.max() <= 255)
        array = array.astype(np.uint8 if fits else np.int16)
    else:
        array = array.astype(np.float32)
    image = nib.Nifti1Image(array, np.asarray(affine, np.float64))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda temporary: nib.save(image, str(temporary)))
