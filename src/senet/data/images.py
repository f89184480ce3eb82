"""Images from files: the one image loader, class-per-folder datasets and ``.npz`` arrays.

:func:`read_image` is the single way an image file becomes a model input in this
project (training folders here, photos in ``senet.predict``): decode with OpenCV, convert
to gray or RGB, resize, scale to ``[0, 1]``. :func:`fit_images` does the same for arrays
already in memory (FER2013 pixel rows, ``.npz`` files).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from senet.data.base import DataError, infer_class_names

__all__ = [
    "IMAGE_EXTENSIONS",
    "fit_images",
    "list_images",
    "read_class_folders",
    "read_image",
    "read_npz",
    "to_unit_range",
]

IMAGE_EXTENSIONS = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".tif",
    ".tiff",
    ".webp",
    ".pgm",
    ".ppm",
    ".pbm",
)


def _check_size_channels(image_size, channels) -> None:
    if image_size is not None and (
        isinstance(image_size, bool)
        or not isinstance(image_size, (int, np.integer))
        or image_size <= 0
    ):
        raise ValueError(
            "Expected `image_size` to be a positive integer or None. "
            f"Received: image_size={image_size!r}"
        )
    if channels not in (1, 3) or isinstance(channels, bool):
        raise ValueError(f"Expected `channels` to be 1 or 3. Received: channels={channels!r}")


def to_unit_range(array: np.ndarray, *, source: str = "array") -> np.ndarray:
    """Scale pixel values to float32 in ``[0, 1]``.

    Integer arrays are divided by their dtype's maximum (255 for uint8, 65535 for
    uint16); booleans map to 0/1; float arrays already in ``[0, 1]`` are kept and float
    arrays in ``[0, 255]`` are divided by 255. Anything else (negative values, values
    above 255, NaN or inf) raises :class:`DataError` naming ``source``.
    """
    array = np.asarray(array)
    if array.dtype == bool:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.unsignedinteger):
        return (array.astype(np.float32) / np.iinfo(array.dtype).max).astype(np.float32)
    if np.issubdtype(array.dtype, np.integer):
        if array.size and (array.min() < 0 or array.max() > 255):
            raise DataError(f"{source}: integer pixel values must lie in [0, 255]")
        return array.astype(np.float32) / np.float32(255)
    if not np.issubdtype(array.dtype, np.floating):
        raise DataError(f"{source}: pixels must be numbers, got dtype {array.dtype}")
    array = array.astype(np.float32)
    if array.size == 0:
        return array
    if not np.isfinite(array).all():
        raise DataError(f"{source}: pixel values contain NaN or inf")
    low, high = float(array.min()), float(array.max())
    if low < 0 or high > 255:
        raise DataError(
            f"{source}: pixel values must lie in [0, 1] or [0, 255]; found [{low:g}, {high:g}]"
        )
    return array / np.float32(255) if high > 1 else array


def _fit_one(image: np.ndarray, image_size: int | None, channels: int) -> np.ndarray:
    """One float32 image (H, W) or (H, W, C) in [0, 1], RGB order -> (S, S, channels)."""
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 3:
        if image.shape[-1] == 4:
            image = image[..., :3]  # drop alpha
        if channels == 1:
            image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    elif channels == 3:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image_size is not None and image.shape[:2] != (image_size, image_size):
        # INTER_AREA averages when shrinking (no aliasing); bilinear when enlarging.
        shrink = image.shape[0] > image_size or image.shape[1] > image_size
        image = cv2.resize(
            image,
            (image_size, image_size),
            interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR,
        )
    if image.ndim == 2:
        image = image[..., None]
    return np.clip(image, 0.0, 1.0).astype(np.float32, copy=False)


def fit_images(
    images: np.ndarray, image_size: int | None = 48, channels: int = 1, *, source: str = "array"
) -> np.ndarray:
    """Bring a batch of images to ``(N, S, S, channels)`` float32 in ``[0, 1]``.

    Args:
        images: ``(N, H, W)`` or ``(N, H, W, C)`` with ``C`` in 1, 3 (RGB) or 4 (RGBA,
            alpha dropped); values as :func:`to_unit_range` accepts.
        image_size: Output side ``S``; non-square images are resized to a square without
            keeping the aspect ratio. ``None`` keeps the size.
        channels: 1 (gray) or 3 (RGB).
        source: Name used in error messages (a file name).

    Returns:
        float32 array ``(N, S, S, channels)``.
    """
    _check_size_channels(image_size, channels)
    images = np.asarray(images)
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3, 4)):
        raise DataError(
            f"{source}: expected images of shape (N, H, W) or (N, H, W, C) with C in 1, 3, 4; "
            f"got {images.shape}"
        )
    images = to_unit_range(images, source=source)
    if images.shape[0] == 0:
        side = images.shape[1] if image_size is None else image_size
        return np.zeros((0, side, side, channels), np.float32)
    return np.stack([_fit_one(image, image_size, channels) for image in images])


def read_image(
    path: str | os.PathLike, image_size: int | None = 48, channels: int = 1
) -> np.ndarray:
    """Read an image file into a float32 ``(S, S, channels)`` array in ``[0, 1]``.

    The one image loader of the project: OpenCV decodes the file (8 or 16 bit, gray,
    BGR or BGRA; paths with any characters), colour comes out as RGB, gray from colour
    uses OpenCV's luma weights, and the image is resized to ``image_size`` square
    (area interpolation when shrinking, bilinear when enlarging).

    Args:
        path: Image file (PNG, JPEG, BMP, TIFF, WebP, PGM/PPM ...).
        image_size: Output side ``S``; ``None`` keeps the file's size.
        channels: 1 (gray) or 3 (RGB).

    Returns:
        float32 array ``(S, S, channels)`` with values in ``[0, 1]``.

    Raises:
        DataError: The file is missing, unreadable or not a decodable image.

    Example:
        >>> import cv2, numpy as np, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "face.png")
        >>> _ = cv2.imwrite(path, np.full((64, 80), 255, np.uint8))
        >>> read_image(path, 48, 1).shape, float(read_image(path, 48, 1).max())
        ((48, 48, 1), 1.0)
    """
    _check_size_channels(image_size, channels)
    try:
        # np.fromfile + imdecode instead of imread: imread silently fails on non-ASCII
        # paths on some platforms and returns None for every kind of failure.
        data = np.fromfile(os.fspath(path), dtype=np.uint8)
    except OSError as error:
        raise DataError(f"{path}: cannot read image file ({error.strerror or error})") from None
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise DataError(f"{path}: not a readable image (corrupt or unsupported format)")
    if image.ndim == 3 and image.shape[-1] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif image.ndim == 3 and image.shape[-1] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    return _fit_one(to_unit_range(image, source=str(path)), image_size, channels)


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder`` (by extension, hidden files left out), sorted."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def class_folders(root: Path) -> list[Path]:
    """Sub-folders of ``root`` (hidden ones left out), sorted by name."""
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def read_class_folders(
    root: str | os.PathLike,
    *,
    image_size: int = 48,
    channels: int = 1,
    skip_bad: bool = False,
    class_names: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Read a folder with one sub-folder of images per class.

    Args:
        root: Folder whose sub-folders name the classes.
        image_size: Output side; see :func:`read_image`.
        channels: 1 or 3.
        skip_bad: Skip unreadable images and empty class folders with one warning
            that counts them, instead of raising.
        class_names: Use these names (and their order) for the labels, e.g. a training
            split's classes when reading its test split; a sub-folder that is not one of
            them is bad data. By default the sub-folder names, sorted.

    Returns:
        ``(x, y, class_names)``: float32 ``(N, S, S, channels)``, int64 ``(N,)`` and
        the class names the labels index.

    Raises:
        DataError: ``root`` has no class folders, a class folder is empty or unknown, an
            image cannot be read, or nothing is left after skipping.
    """
    root = Path(root)
    folders = class_folders(root)
    if not folders:
        raise DataError(f"{root}: no class sub-folders found")
    problems: list[str] = []
    files: list[tuple[Path, str]] = []
    for folder in folders:
        if class_names is not None and folder.name not in class_names:
            problems.append(
                f"{folder}: class folder {folder.name!r} is not one of {tuple(class_names)}"
            )
            continue
        images = list_images(folder)
        if not images:
            problems.append(f"{folder}: empty class folder (no image files)")
        files.extend((path, folder.name) for path in images)
    if class_names is None:
        # Classes are the folders that hold images; an empty one is reported above.
        class_names = tuple(sorted({name for _, name in files}))
    class_names = tuple(class_names)
    index = {name: i for i, name in enumerate(class_names)}
    x, y = [], []
    for path, name in files:
        if problems and not skip_bad:
            break
        try:
            x.append(read_image(path, image_size, channels))
        except DataError as error:
            problems.append(str(error))
            continue
        y.append(index[name])
    _report(problems, skip_bad, what=f"{root}: skipped {{count}} bad item(s)")
    if not x:
        raise DataError(f"{root}: no readable images")
    return np.stack(x), np.asarray(y, np.int64), class_names


def read_npz(
    path: str | os.PathLike,
    *,
    image_size: int = 48,
    channels: int = 1,
    skip_bad: bool = False,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Read an ``.npz`` with arrays ``x`` (images) and ``y`` (integer labels).

    ``x`` is ``(N, H, W)`` or ``(N, H, W, C)`` (C in 1, 3 RGB, 4 RGBA) with values as
    :func:`to_unit_range` accepts; ``y`` holds integers (an integer dtype, or floats
    with whole values). An optional ``class_names`` array of strings fixes the number
    of classes; without it classes are named ``"0"``, ``"1"``, ... up to ``max(y)``.

    Returns:
        ``(x, y, class_names)`` as :func:`read_class_folders`.

    Raises:
        DataError: Missing arrays, mismatched lengths, non-integer labels, a label that is
            negative or not below the number of classes (each named by its 0-based index),
            images with NaN/inf, or nothing left after skipping.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError) as error:
        raise DataError(f"{path}: cannot read .npz file ({error})") from None
    missing = [key for key in ("x", "y") if key not in arrays]
    if missing:
        raise DataError(
            f"{path}: missing array(s) {missing}; expected 'x' (images) and 'y' (labels), "
            f"found {sorted(arrays)}"
        )
    x, y = arrays["x"], np.asarray(arrays["y"])
    if y.ndim != 1 or x.ndim < 1 or x.shape[0] != y.shape[0]:
        raise DataError(
            f"{path}: 'x' and 'y' must have the same length N and 'y' must be 1-D; "
            f"got x {x.shape}, y {y.shape}"
        )
    if np.issubdtype(y.dtype, np.floating):
        whole = np.isfinite(y) & (np.round(y) == y)
    elif np.issubdtype(y.dtype, np.integer):
        whole = np.ones(y.shape, bool)
    else:
        raise DataError(f"{path}: 'y' must hold integer labels, got dtype {y.dtype}")
    labels = np.where(whole, y, -1).astype(np.int64)
    if "class_names" in arrays:
        names = tuple(str(name) for name in np.asarray(arrays["class_names"]).reshape(-1))
    else:
        names = infer_class_names(labels, source=str(path), skip_bad=skip_bad)
    problems = []
    keep = np.ones(y.shape, bool)
    for i in np.flatnonzero(~whole):
        problems.append(f"{path}, index {i}: label {y[i].item()!r} is not an integer")
        keep[i] = False
    for i in np.flatnonzero(whole & ((labels < 0) | (labels >= len(names)))):
        problems.append(f"{path}, index {i}: label {labels[i]} out of range [0, {len(names)})")
        keep[i] = False
    if np.issubdtype(x.dtype, np.floating):
        finite = np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1)
        for i in np.flatnonzero(~finite):
            problems.append(f"{path}, index {i}: image has NaN or inf pixels")
            keep[i] = False
    _report(
        sorted(problems, key=_index_of), skip_bad, what=f"{path}: skipped {{count}} bad item(s)"
    )
    if not keep.any():
        raise DataError(f"{path}: no valid samples")
    return fit_images(x[keep], image_size, channels, source=str(path)), labels[keep], names


def _index_of(problem: str) -> int:
    return int(problem.split(", index ", 1)[1].split(":", 1)[0])


def _report(problems: list[str], skip_bad: bool, *, what: str) -> None:
    """Raise the first problem, or with ``skip_bad`` warn once with their count."""
    if not problems:
        return
    if not skip_bad:
        raise DataError(problems[0])
    warnings.warn(
        what.format(count=len(problems)) + f"; first: {problems[0]}", UserWarning, stacklevel=3
    )
