"""NIfTI volumes (``.nii``, ``.nii.gz``) in the Medical Segmentation Decathlon layout.

Reading goes through nibabel (the ``senet[medical]`` extra, imported on first use). The
shape in the header is checked against the voxel cap before any voxel is read
(``SENET_MAX_VOXELS``, default 512^3 voxels times channels: a ``.nii.gz`` of a few KB can
declare a volume of terabytes). The volume is then brought to the closest canonical
orientation, RAS+ (what ``nibabel.as_closest_canonical`` gives: axes permuted and flipped
so that the first points Right, the second Anterior, the third Superior), so an image and
its label stored in different axis orders end up voxel for voxel on one grid; its affine
and voxel spacing (mm) come with it. Intensities are z-scored or clipped to a CT window
(:func:`normalize_intensity`).

Bad input is a one-line :class:`~senet.errors.DataError` that starts with the file's
path: not a NIfTI file, an empty volume, over the cap, NaN/inf intensities, labels that
are not whole numbers or out of range, an image and label of different shapes or
affines (:func:`check_pair`).

Layout (:func:`read_decathlon`)::

    ROOT/dataset.json          {"labels": {"0": "background", "1": "liver", ...}, ...}
    ROOT/imagesTr/NAME.nii.gz  training images (3-D, or 4-D with channels last)
    ROOT/labelsTr/NAME.nii.gz  their labels, matched by file name
    ROOT/imagesTs/NAME.nii.gz  test images, no labels

Files whose names start with ``.`` (``._NAME.nii.gz``: macOS litter in the Decathlon's
archives) are not volumes.

Example:
    >>> cases = read_decathlon("Task09_Spleen")  # doctest: +SKIP
    >>> cases[0].image.array.shape, cases[0].image.spacing  # doctest: +SKIP
    ((512, 512, 90), (0.79, 0.79, 5.0))
"""

from __future__ import annotations

import contextlib
import math
import os
import stat
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from senet.checks import check_choice, check_number, check_positive, env_cap, fail, is_none
from senet.errors import DataError, printable

__all__ = [
    "DEFAULT_MAX_VOXELS",
    "MAX_VOXELS_ENV",
    "NIFTI_SUFFIXES",
    "Case",
    "Volume",
    "check_pair",
    "decathlon_class_names",
    "is_nifti",
    "normalize_intensity",
    "read_decathlon",
    "read_volume",
    "voxel_cap",
    "write_volume",
]

#: The environment variable that caps the voxels (times channels) of a NIfTI volume, and
#: the cap without it: 512^3 (a 512 x 512 x 512 CT; 512 MiB as float32).
MAX_VOXELS_ENV = "SENET_MAX_VOXELS"
DEFAULT_MAX_VOXELS = 512**3
NIFTI_SUFFIXES = (".nii", ".nii.gz")
_KINDS = ("image", "label")
_MODES = ("zscore", "none")


@dataclass
class Volume:
    """One NIfTI volume in RAS+ orientation.

    Attributes:
        array: ``(D, H, W)`` (or ``(D, H, W, C)`` for a multi-channel image, channels
            last): float32 intensities for an image, int32 classes for a label. The axes
            point Right, Anterior, Superior.
        affine: The 4x4 float64 voxel-to-world (mm) matrix of ``array``.
        spacing: Voxel size along each of the three axes (mm), from the affine.
        source: The file it was read from.
    """

    array: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, float, float]
    source: str


@dataclass
class Case:
    """A Decathlon case: its name (the image's file name), image and label (None in
    ``imagesTs``)."""

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


def _read_errors(nib) -> tuple[type[BaseException], ...]:
    """What nibabel (and gzip/zlib under it) raise for a damaged or foreign file."""
    return (
        OSError,
        ValueError,
        EOFError,
        zlib.error,
        nib.filebasedimages.ImageFileError,
        nib.spatialimages.HeaderDataError,
    )


def _shown(path) -> str:
    """A path for a one-line message (control characters escaped)."""
    return printable(os.fspath(path))


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return printable(lines[0]) if lines else type(error).__name__


def voxel_cap(max_voxels: int | None = None) -> int:
    """The voxel cap: ``max_voxels``, else ``SENET_MAX_VOXELS``, else 512^3."""
    return env_cap(max_voxels, "max_voxels", MAX_VOXELS_ENV, DEFAULT_MAX_VOXELS)


def is_nifti(path: str | os.PathLike) -> bool:
    """Whether ``path``'s name ends in ``.nii`` or ``.nii.gz`` (any case)."""
    return Path(path).name.lower().endswith(NIFTI_SUFFIXES)


def _stem(name: str) -> str:
    lower = name.lower()
    for suffix in (".nii.gz", ".nii"):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_volume(
    path: str | os.PathLike, *, kind: str = "image", max_voxels: int | None = None
) -> Volume:
    """Read one NIfTI file, checked and in RAS+ orientation (see the module docstring).

    The header is read first: its shape must be 3-D (or 4-D with channels last for an
    image; axes of length 1 after the third are dropped), non-empty and within the voxel
    cap, and its data type numeric, before any voxel is read.

    Args:
        path: A ``.nii`` or ``.nii.gz`` file.
        kind: ``"image"`` (float32 intensities, all finite) or ``"label"`` (3-D, whole
            numbers, none negative; int32).
        max_voxels: The most voxels times channels to read. Default: the environment
            variable ``SENET_MAX_VOXELS`` if set, else ``DEFAULT_MAX_VOXELS`` (512^3).

    Returns:
        The :class:`Volume`, its array, affine and spacing in RAS+ orientation.

    Raises:
        DataError: One line starting with the path: not a readable NIfTI file, an empty
            volume, over the cap, NaN/inf in an image, a label that is not whole numbers
            or is negative.
        ImportError: nibabel is not installed.
    """
    nib = _nibabel()
    from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation

    kind = check_choice("kind", kind, _KINDS)
    cap = voxel_cap(max_voxels)
    shown = _shown(path)
    errors = _read_errors(nib)
    with contextlib.suppress(OSError):  # a FIFO or device would block or never end
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise DataError(f"{shown}: not a regular file")
    try:
        # reads the header; the voxels stay on disk (no memory map: read once, then closed)
        image = nib.load(os.fspath(path), mmap=False)
        if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
            raise DataError(f"{shown}: not a NIfTI file ({type(image).__name__})")
        shape = tuple(int(s) for s in image.header.get_data_shape())
        dtype = image.header.get_data_dtype()
        affine = np.array(image.affine, np.float64)
    except errors as error:
        if isinstance(error, DataError):
            raise
        raise DataError(f"{shown}: cannot read NIfTI file ({_first_line(error)})") from None
    if any(s == 0 for s in shape):
        raise DataError(f"{shown}: empty volume, shape {shape}")
    if len(shape) < 3:
        raise DataError(f"{shown}: a {len(shape)}-D image, not a volume (shape {shape})")
    channels = [s for s in shape[3:] if s != 1]
    if len(channels) > 1 or (kind == "label" and channels):
        wanted = "a 3-D label volume" if kind == "label" else "a 3-D volume or 4-D with channels"
        raise DataError(f"{shown}: expected {wanted}, got shape {shape}")
    voxels = math.prod(shape)
    if voxels > cap:
        raise DataError(
            f"{shown}: its header declares {voxels} voxels {shape}, over the cap of {cap}; "
            f"set {MAX_VOXELS_ENV} to a larger number to read it"
        )
    if dtype.fields is not None or not np.issubdtype(dtype, np.number):
        raise DataError(f"{shown}: voxels of type {dtype} are not numbers (RGB?)")
    if np.issubdtype(dtype, np.complexfloating):
        raise DataError(f"{shown}: complex voxels ({dtype}) are not intensities")
    if not np.isfinite(affine).all() or np.linalg.matrix_rank(affine[:3, :3]) < 3:
        raise DataError(f"{shown}: its affine is not a valid voxel-to-world matrix")
    try:
        if kind == "image":
            array = np.asarray(image.dataobj, dtype=np.float32)
        else:
            array = np.asarray(image.dataobj)
    except errors as error:
        raise DataError(f"{shown}: cannot read its voxels ({_first_line(error)})") from None
    except MemoryError:
        raise DataError(f"{shown}: not enough memory for {voxels} voxels") from None
    array = array.reshape(shape[:3] + tuple(channels))
    if kind == "image":
        if not np.isfinite(array).all():
            raise DataError(f"{shown}: the image has NaN or inf intensities")
    else:
        array = _label_array(array, shown)
    # as nibabel.as_closest_canonical: permute and flip the spatial axes to RAS+
    orientation = io_orientation(affine)
    array = apply_orientation(array, orientation)
    affine = affine @ inv_ornt_aff(orientation, shape[:3])
    spacing = tuple(float(s) for s in np.sqrt((affine[:3, :3] ** 2).sum(axis=0)))
    return Volume(array, affine, spacing, os.fspath(path))


def _label_array(array: np.ndarray, shown: str) -> np.ndarray:
    """Check a label volume's values (whole, not negative, within int32) and make it int32."""
    if array.dtype == bool:
        return array.astype(np.int32)
    if np.issubdtype(array.dtype, np.floating) and (
        not np.isfinite(array).all() or (np.floor(array) != array).any()
    ):
        raise DataError(f"{shown}: label values must be integers (class indices)")
    low, high = array.min(), array.max()
    if low < 0:
        raise DataError(f"{shown}: label value {low.item():g} is negative")
    if high > np.iinfo(np.int32).max:
        raise DataError(f"{shown}: label value {high.item():g} is too large for a class index")
    return array.astype(np.int32)


def normalize_intensity(
    array: np.ndarray,
    *,
    mode: str = "zscore",
    window: Sequence[float] | None = None,
    channel_axis: int | None = None,
) -> np.ndarray:
    """Intensities as a model takes them, as float32.

    ``"zscore"`` subtracts the mean and divides by the standard deviation, both over every
    voxel (air included; a constant volume becomes zeros); with ``channel_axis``, over each
    channel on its own (MRI modalities have unrelated scales). ``window=(low, high)`` (a CT
    window in HU, e.g. ``(-160, 240)`` for the abdomen) instead clips to it and scales to
    ``[0, 1]``. ``mode="none"`` returns the intensities unchanged.

    Args:
        array: Intensities (any real dtype), all finite.
        mode: ``"zscore"`` or ``"none"``; ignored when ``window`` is given.
        window: ``(low, high)`` with ``low < high``, finite.
        channel_axis: The channel axis of a multi-channel volume (z-score only), or None.

    Returns:
        A new float32 array of ``array``'s shape.

    Raises:
        ValueError: A bad argument, or NaN/inf in ``array``.

    Example:
        >>> normalize_intensity(np.array([0.0, 100.0, 400.0]), window=(0, 200)).tolist()
        [0.0, 0.5, 1.0]
        >>> normalize_intensity(np.array([1.0, 3.0])).tolist()
        [-1.0, 1.0]
    """
    mode = "none" if is_none(mode) else check_choice("mode", mode, _MODES)
    out = np.array(array, dtype=np.float32)  # a copy: normalised in place below
    if window is not None:
        try:
            low, high = (float(value) for value in window)
        except (TypeError, ValueError):
            low = high = math.nan
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise fail("window", "(low, high), finite, with low < high", window)
        if not np.isfinite(out).all():
            raise fail("array", "finite intensities", "NaN or inf")
        np.clip(out, low, high, out=out)
        out -= low
        out /= high - low
        return out
    if mode == "none":
        return out
    if channel_axis is None:
        return _zscore(out)
    axis = check_number("channel_axis", channel_axis, integer=True)
    if not -out.ndim <= axis < out.ndim:
        raise fail("channel_axis", f"an axis of a {out.ndim}-D array", channel_axis)
    for channel in np.moveaxis(out, axis, 0):  # views into out
        _zscore(channel)
    return out


def _zscore(out: np.ndarray) -> np.ndarray:
    """Z-score float32 ``out`` in place (a constant array becomes zeros)."""
    if out.size == 0:
        return out
    mean, sd = float(out.mean()), float(out.std())
    if not (math.isfinite(mean) and math.isfinite(sd)):
        raise fail("array", "finite intensities", "NaN or inf")
    if sd == 0:
        out[...] = 0
        return out
    out -= mean
    out /= sd
    return out


def check_pair(
    image: Volume, label: Volume, *, num_classes: int | None = None, atol: float = 1e-3
) -> None:
    """Check that an image and its label lie on one grid, with labels in range.

    Args:
        image: The image (3-D, or 4-D with channels last).
        label: Its label (3-D).
        num_classes: When given, every label must be below it.
        atol: The largest difference (mm) allowed between entries of the two affines.

    Raises:
        DataError: One line starting with the label's path: different spatial shapes, an
            image/label affine mismatch, a negative label or one ``>= num_classes``.
    """
    check_positive("num_classes", num_classes, integer=True, allow_none=True)
    check_number("atol", atol, minimum=0)
    shown, image_name = _shown(label.source), _shown(Path(image.source).name)
    if label.array.ndim != 3 or image.array.shape[:3] != label.array.shape:
        raise DataError(
            f"{shown}: label shape {label.array.shape} differs from its image's "
            f"{image.array.shape[:3]} ({image_name})"
        )
    difference = float(np.abs(np.asarray(image.affine) - np.asarray(label.affine)).max())
    if not difference <= atol:
        raise DataError(
            f"{shown}: image/label affine mismatch with {image_name} (entries differ by up to "
            f"{difference:.4g}, tolerance {atol:g}): the two are not on one grid"
        )
    if label.array.size:
        low, high = label.array.min().item(), label.array.max().item()
        if low < 0:
            raise DataError(f"{shown}: label value {low} is negative")
        if num_classes is not None and high >= num_classes:
            raise DataError(f"{shown}: label value {high} out of range [0, {num_classes})")


def decathlon_class_names(root: str | os.PathLike) -> list[str] | None:
    """The class names in ``ROOT/dataset.json``, in label order, or None without the file.

    Its ``labels`` maps class numbers to names (the Decathlon's ``{"0": "background",
    "1": "spleen"}``) or names to numbers (nnU-Net v2's ``{"background": 0, ...}``); the
    numbers must run 0, 1, ... without gaps.

    Raises:
        DataError: One line naming ``dataset.json``: not JSON, too large, or no valid
            ``labels``.
    """
    from senet._files import read_json

    path = Path(root) / "dataset.json"
    if not path.is_file():
        return None
    shown = _shown(path)
    try:
        labels = read_json(path)["labels"]
    except (OSError, ValueError) as error:
        raise DataError(f"{shown}: cannot read it ({_first_line(error)})") from None
    except (KeyError, TypeError):
        raise DataError(f"{shown}: no 'labels' mapping class numbers to names") from None
    if not isinstance(labels, dict) or not labels:
        raise DataError(f"{shown}: 'labels' must map class numbers to names")
    pairs = list(labels.items())
    if all(isinstance(value, int) and not isinstance(value, bool) for _, value in pairs):
        pairs = [(value, key) for key, value in pairs]  # nnU-Net v2: name -> number
    try:
        names = {int(key): str(value) for key, value in pairs}
    except (ValueError, TypeError):
        raise DataError(f"{shown}: 'labels' must map class numbers to names") from None
    if len(names) != len(pairs) or sorted(names) != list(range(len(names))):
        raise DataError(f"{shown}: 'labels' must number the classes 0, 1, ... without gaps")
    return [names[k] for k in range(len(names))]


def _volumes(folder: Path) -> list[Path]:
    """The NIfTI files in ``folder``, by name; hidden files (``._x.nii.gz``) left out."""
    return sorted(
        (
            path
            for path in folder.iterdir()
            if is_nifti(path) and not path.name.startswith(".") and path.is_file()
        ),
        key=lambda path: path.name,
    )


def _label_for(image: Path, folder: Path) -> Path | None:
    """The label of ``image`` in ``folder``: the same file name, else the same name with
    the other NIfTI suffix (``x.nii`` for ``x.nii.gz``)."""
    same = folder / image.name
    if same.is_file():
        return same
    for suffix in NIFTI_SUFFIXES:
        other = folder / (_stem(image.name) + suffix)
        if other.is_file():
            return other
    return None


def read_decathlon(
    root: str | os.PathLike,
    *,
    split: str = "train",
    max_voxels: int | None = None,
    normalize: str = "zscore",
    window: Sequence[float] | None = None,
    num_classes: int | None = None,
) -> list[Case]:
    """The cases of a Decathlon folder, in file-name order, one volume read at a time.

    Images are normalised (:func:`normalize_intensity`; a multi-channel image channel by
    channel) and labels checked against their image (:func:`check_pair`).

    Args:
        root: The folder with ``imagesTr/`` and ``labelsTr/`` (and ``imagesTs/``).
        split: ``"train"`` (``imagesTr`` with ``labelsTr``) or ``"test"`` (``imagesTs``,
            no labels).
        max_voxels: The voxel cap per file (:func:`read_volume`).
        normalize: ``"zscore"`` or ``"none"``; see :func:`normalize_intensity`.
        window: A CT window ``(low, high)`` instead of the z-score.
        num_classes: Labels must be below it. Default: the number of classes in
            ``dataset.json``, if there is one.

    Returns:
        The cases; an empty list when the images folder has no volumes.

    Raises:
        DataError: A missing images folder, an image without its label (naming the
            image), or a bad volume or pair (naming the file).
    """
    split = check_choice("split", split, ("train", "test"))
    normalize = "none" if is_none(normalize) else check_choice("normalize", normalize, _MODES)
    check_positive("num_classes", num_classes, integer=True, allow_none=True)
    root = Path(root)
    folder = root / ("imagesTr" if split == "train" else "imagesTs")
    if not folder.is_dir():
        raise DataError(f"{_shown(folder)}: folder not found (a Decathlon folder has it)")
    if num_classes is None:
        names = decathlon_class_names(root)
        num_classes = len(names) if names else None
    cases = []
    for path in _volumes(folder):
        label = None
        if split == "train":
            label_path = _label_for(path, root / "labelsTr")
            if label_path is None:
                raise DataError(f"{_shown(path)}: no label for this image in labelsTr/")
        image = read_volume(path, kind="image", max_voxels=max_voxels)
        channel_axis = -1 if image.array.ndim == 4 else None
        image.array = normalize_intensity(
            image.array, mode=normalize, window=window, channel_axis=channel_axis
        )
        if split == "train":
            label = read_volume(label_path, kind="label", max_voxels=max_voxels)
            check_pair(image, label, num_classes=num_classes)
        cases.append(Case(path.name, image, label))
    return cases


def write_volume(path: str | os.PathLike, array: np.ndarray, affine: np.ndarray) -> None:
    """Write ``array`` as a NIfTI file with ``affine`` (both qform and sform, units mm).

    Whole-number arrays (label masks) are stored as uint8 when their values fit, else
    int16, else int32; anything else as float32. The file is written to a temporary file
    in the same folder and then renamed over ``path`` (``os.replace``), so a failed write
    leaves nothing half-written there; missing parent folders are created.

    Args:
        path: A ``.nii`` or ``.nii.gz`` file (``.gz``: compressed).
        array: A 3-D volume, or 4-D with channels last.
        affine: Its 4x4 voxel-to-world matrix (mm).

    Raises:
        ValueError: Not a NIfTI file name, an array that is not 3-D/4-D or is empty, an
            affine that is not a finite 4x4 matrix, or integers beyond int32.
        ImportError: nibabel is not installed.
    """
    nib = _nibabel()
    from senet._files import atomic_write

    if not is_nifti(path):
        raise fail("path", "a .nii or .nii.gz file", os.fspath(path))
    array = np.asarray(array)
    if array.ndim not in (3, 4) or array.size == 0:
        raise fail("array", "a non-empty 3-D or 4-D volume", f"shape {array.shape}")
    affine = np.asarray(affine, np.float64)
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise fail("affine", "a finite 4x4 matrix", f"shape {affine.shape}")
    array = array.astype(_storage_type(array), copy=False)
    image = nib.Nifti1Image(array, affine)
    image.set_qform(affine, code="scanner")
    image.set_sform(affine, code="scanner")
    image.header.set_xyzt_units("mm")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda temporary: nib.save(image, os.fspath(temporary)))


def _storage_type(array: np.ndarray) -> type:
    """The NIfTI data type for ``array``: the smallest of uint8/int16/int32 that holds
    whole numbers, else float32."""
    if array.dtype == bool:
        return np.uint8
    if not np.issubdtype(array.dtype, np.integer):
        return np.float32
    low, high = int(array.min()), int(array.max())
    for candidate in (np.uint8, np.int16, np.int32):
        info = np.iinfo(candidate)
        if info.min <= low and high <= info.max:
            return candidate
    raise fail("array", "integers within int32", f"values {low} to {high}")
