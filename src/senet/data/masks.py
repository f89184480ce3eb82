"""Segmentation data: images with a label map each (a class index per pixel or voxel).

Sources (:func:`load_masks`):

- ``"synthetic"``: the synthetic faces segmented into parts
  (:func:`senet.data.synthetic.synthetic_face_parts`: background, skin, eyes, brows,
  mouth), ``easy`` or ``hard``.
- ``"phantoms"``: synthetic 3-D volumes of organs in a body
  (:func:`senet.data.phantoms.synthetic_phantoms`, four classes), cubes of side
  ``image_size``, z-scored like NIfTI volumes.
- a folder with ``images/NAME.png`` and ``masks/NAME.png`` (any image format
  :func:`senet.data.images.load_image` reads): the mask's pixel value is the class. An
  optional ``classes.txt`` (one name a line, in label order) names the classes.
- an ``.npz`` with ``x`` (images ``(N, H, W[, C])``) and ``y`` (integer masks
  ``(N, H, W)``), optionally ``class_names``.
- a Medical Segmentation Decathlon folder (``imagesTr/``, ``labelsTr/``) of NIfTI volumes
  (:mod:`senet.data.nifti`, the ``senet[medical]`` extra).

Images come out as every reader's do (float32 in ``[0, 1]``, ``image_size`` square,
``channels`` channels); masks are resized with the nearest label, so a class index never
becomes a blend of two. Bad data is a :class:`~senet.errors.DataError` of one line naming
the file: an image without its mask, a mask whose size differs from its image's, labels
that are not integers or not below the number of classes.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from senet.checks import check_choice, fail
from senet.data.base import MAX_INFERRED_CLASSES, check_split_fractions, report_problems
from senet.data.images import (
    check_inputs_fit,
    fit_images,
    list_images,
    load_image,
    load_npz_arrays,
    to_model_input,
)
from senet.errors import DataError

__all__ = [
    "SEGMENTATION_SOURCES",
    "MaskSet",
    "is_decathlon_folder",
    "is_volume_source",
    "load_masks",
    "read_mask_folders",
    "read_mask_npz",
    "resize_labels",
    "split_random",
]

#: The synthetic sources :func:`load_masks` knows by name.
SEGMENTATION_SOURCES = ("synthetic", "phantoms")

_SPLITS = ("train", "val", "test")


@dataclass
class MaskSet:
    """Images with a label map each, as every segmentation reader returns them.

    Attributes:
        x: float32 images ``(N, *spatial, C)`` (2-D: ``(N, H, W, C)``; 3-D:
            ``(N, D, H, W, C)``).
        y: int32 label maps ``(N, *spatial)``, each value in ``[0, len(class_names))``.
        class_names: Name of each class, indexed by label (0 is the background).
        names: A name per case (its file name), or None.
        spacing: The physical size of a pixel or voxel along each spatial axis (mm), the
            same for every case, or None (distances in pixels).
        affines: A 4x4 affine per case (NIfTI volumes), or None.
    """

    x: np.ndarray
    y: np.ndarray
    class_names: tuple[str, ...]
    names: tuple[str, ...] | None = None
    spacing: tuple[float, ...] | None = None
    affines: list[np.ndarray] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # int32 whatever the reader gave (the synthetic parts are uint8): TensorFlow's
        # collectives, which a multi-worker run reduces a batch with, take no uint8
        if self.y.dtype != np.int32:
            self.y = self.y.astype(np.int32)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def rank(self) -> int:
        """2 for images, 3 for volumes."""
        return self.y.ndim - 1

    def subset(self, index: np.ndarray) -> MaskSet:
        """The cases at ``index`` (integer indices)."""
        index = np.asarray(index, np.int64)
        return MaskSet(
            self.x[index],
            self.y[index],
            self.class_names,
            None if self.names is None else tuple(self.names[i] for i in index),
            self.spacing,
            None if self.affines is None else [self.affines[i] for i in index],
        )


def resize_labels(labels: np.ndarray, size: int | tuple[int, int] | None) -> np.ndarray:
    """A label map ``(H, W)`` resized to ``size`` x ``size`` (or ``(height, width)``) with
    the nearest label.

    The pixel centres of the output are mapped to the input (the rule of OpenCV's
    ``INTER_NEAREST_EXACT``), so a class index is never interpolated.

    >>> resize_labels(np.array([[0, 1], [2, 3]]), 4).tolist()[0]
    [0, 0, 1, 1]
    """
    if size is None:
        return labels
    height, width = (size, size) if isinstance(size, numbers.Integral) else size
    if labels.shape[:2] == (height, width):
        return labels
    rows = np.minimum(
        ((np.arange(height) + 0.5) * labels.shape[0] / height).astype(int), labels.shape[0] - 1
    )
    cols = np.minimum(
        ((np.arange(width) + 0.5) * labels.shape[1] / width).astype(int), labels.shape[1] - 1
    )
    return labels[rows[:, None], cols[None, :]]


def _integer_labels(array: np.ndarray, source: str) -> np.ndarray:
    """``array`` as int32 labels, or a DataError naming ``source`` when it holds other
    values (fractions, NaN, negative numbers) or colours."""
    if array.ndim == 3:
        if array.shape[-1] == 4:
            array = array[..., :3]
        if not (array == array[..., :1]).all():
            raise DataError(
                f"{source}: a mask must hold one class index per pixel (gray), got "
                f"{array.shape[-1]} different colour channels"
            )
        array = array[..., 0]
    if np.issubdtype(array.dtype, np.floating):
        if not (np.isfinite(array).all() and (np.round(array) == array).all()):
            raise DataError(f"{source}: mask values must be integers (class indices)")
    elif not np.issubdtype(array.dtype, np.integer):
        raise DataError(f"{source}: mask values must be integers, got dtype {array.dtype}")
    if array.size and array.min() < 0:
        raise DataError(f"{source}: mask value {array.min().item()} is negative")
    if array.size and array.max() >= MAX_INFERRED_CLASSES:
        raise DataError(
            f"{source}: mask value {array.max().item()} is not below {MAX_INFERRED_CLASSES}, "
            "the most classes senet infers"
        )
    return array.astype(np.int32)


def _check_range(labels: np.ndarray, num_classes: int, source: str) -> None:
    if labels.size and labels.max() >= num_classes:
        raise DataError(
            f"{source}: mask value {labels.max().item()} out of range [0, {num_classes}) "
            "for the class names"
        )


def _class_names(names: tuple[str, ...] | None, labels_max: int) -> tuple[str, ...]:
    if names is not None:
        return names
    return tuple(str(k) for k in range(max(2, labels_max + 1)))


def _read_class_file(root: Path) -> tuple[str, ...] | None:
    path = root / "classes.txt"
    if not path.is_file():
        return None
    names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    if len(names) < 2:
        raise DataError(f"{path}: needs at least two class names (one a line), got {len(names)}")
    return names


def read_mask_folders(
    root: str | os.PathLike,
    *,
    image_size: int | None = 48,
    channels: int = 1,
    skip_bad: bool = False,
) -> MaskSet:
    """Read ``root/images/NAME.*`` with ``root/masks/NAME.*`` (matched by file stem).

    Args:
        root: The folder holding ``images/`` and ``masks/`` (and optionally
            ``classes.txt``).
        image_size: Output side (images and masks are resized to it), or None to keep
            the size (then every image must have one size).
        channels: 1 (gray) or 3 (RGB).
        skip_bad: Skip a bad pair (one warning with the count) instead of raising.

    Returns:
        A :class:`MaskSet` with the cases in file-name order.

    Raises:
        DataError: A missing folder, an image without a mask, a mask whose size differs
            from its image's, labels that are not integers or not below the number of
            classes; each names the file.
    """
    root = Path(root)
    images_dir, masks_dir = root / "images", root / "masks"
    for folder in (images_dir, masks_dir):
        if not folder.is_dir():
            raise DataError(f"{folder}: folder not found (expected {root}/images and {root}/masks)")
    masks_by_stem = {path.stem: path for path in list_images(masks_dir)}
    images = list_images(images_dir)
    if not images:
        raise DataError(f"{images_dir}: no images")
    class_names = _read_class_file(root)
    if image_size is not None:
        check_inputs_fit(root, len(images), image_size, image_size, channels)
    xs, ys, names, problems = [], [], [], []
    for path in images:
        try:
            mask_path = masks_by_stem.get(path.stem)
            if mask_path is None:
                raise DataError(f"{path}: no mask {masks_dir / path.stem}.* for this image")
            image = load_image(path)
            labels = _integer_labels(load_image(mask_path), str(mask_path))
            if labels.shape[:2] != image.shape[:2]:
                raise DataError(
                    f"{mask_path}: mask is {labels.shape[1]}x{labels.shape[0]} pixels, its "
                    f"image {path.name} is {image.shape[1]}x{image.shape[0]}"
                )
            if class_names is not None:
                _check_range(labels, len(class_names), str(mask_path))
        except DataError as error:
            problems.append(str(error))
            continue
        xs.append(to_model_input(image, image_size, channels, order="bgr", source=str(path)))
        ys.append(resize_labels(labels, image_size))
        names.append(path.name)
    report_problems(problems, skip_bad, what=f"{root}: skipped {{count}} bad image/mask pair(s)")
    if not xs:
        raise DataError(f"{root}: no valid image/mask pairs")
    shapes = {y.shape for y in ys}
    if len(shapes) > 1:
        raise DataError(
            f"{root}: images have different sizes {sorted(shapes)[:3]}; give an image size"
        )
    y = np.stack(ys)
    return MaskSet(np.stack(xs), y, _class_names(class_names, int(y.max(initial=0))), tuple(names))


def read_mask_npz(
    path: str | os.PathLike,
    *,
    image_size: int | None = 48,
    channels: int = 1,
    max_bytes: int | None = None,
) -> MaskSet:
    """Read an ``.npz`` with ``x`` (images ``(N, H, W)`` or ``(N, H, W, C)``) and ``y``
    (integer masks ``(N, H, W)``), optionally ``class_names``; the sizes of the arrays are
    checked against the byte cap (:func:`senet.data.images.array_cap`) from their headers,
    before anything is loaded.

    Raises:
        DataError: Not an ``.npz``, over the cap, missing arrays, ``x`` and ``y`` of
            different sizes, labels that are not integers or not below the number of
            classes (naming the file and the case's index).
    """
    path = Path(path)
    arrays = load_npz_arrays(path, image_size, channels, max_bytes=max_bytes, labels="masks")
    x, y = arrays["x"], arrays["y"]
    if y.ndim != 3 or x.ndim not in (3, 4) or x.shape[:3] != y.shape:
        raise DataError(
            f"{path}: 'y' must hold a mask (N, H, W) for each image of 'x' (N, H, W[, C]) "
            f"of the same size; got x {x.shape}, y {y.shape}"
        )
    names = None
    if "class_names" in arrays:
        names = tuple(str(name) for name in np.asarray(arrays["class_names"]).reshape(-1))
    labels = []
    for i, mask in enumerate(y):
        where = f"{path}, index {i}"
        mask = _integer_labels(mask, where)
        if names is not None:
            _check_range(mask, len(names), where)
        labels.append(resize_labels(mask, image_size))
    y = np.stack(labels)
    x = fit_images(x, image_size, channels, source=str(path))
    return MaskSet(x, y, _class_names(names, int(y.max(initial=0))))


def is_decathlon_folder(source: str | os.PathLike) -> bool:
    """Whether ``source`` is a Decathlon folder (it holds ``imagesTr/``), not a name."""
    if isinstance(source, str) and source in SEGMENTATION_SOURCES:
        return False
    return (Path(source) / "imagesTr").is_dir()


def is_volume_source(source: str | os.PathLike) -> bool:
    """Whether ``source`` gives 3-D volumes: ``"phantoms"`` or a Decathlon folder."""
    return (isinstance(source, str) and source == "phantoms") or is_decathlon_folder(source)


def split_random(
    data: MaskSet, val_fraction: float, test_fraction: float, *, seed: int = 0
) -> dict[str, MaskSet]:
    """Split the cases at random into ``{"train", "val", "test"}`` (rounded fractions, at
    least one case left in train), each split in a random order drawn from ``seed``."""
    n = len(data)
    order = np.random.default_rng(seed).permutation(n)
    n_test = min(int(round(n * test_fraction)), n - 1)
    n_val = min(int(round(n * val_fraction)), n - 1 - n_test)
    return {
        "test": data.subset(order[:n_test]),
        "val": data.subset(order[n_test : n_test + n_val]),
        "train": data.subset(order[n_test + n_val :]),
    }


def _synthetic(source, image_size, channels, size, difficulty, seed) -> MaskSet:
    if source == "synthetic":
        from senet.data.synthetic import FACE_PARTS, synthetic_face_parts

        x, y = synthetic_face_parts(size, image_size=image_size, seed=seed, difficulty=difficulty)
        if channels == 3:
            x = np.repeat(x, 3, axis=-1)
        return MaskSet(x, y, FACE_PARTS)
    from senet.data.nifti import normalize_intensity
    from senet.data.phantoms import PHANTOM_CLASS_NAMES, synthetic_phantoms

    x, y = synthetic_phantoms(size, size=image_size, difficulty=difficulty, seed=seed)
    for volume in x:  # z-scored like every NIfTI volume senet reads
        volume[...] = normalize_intensity(volume)
    return MaskSet(x, y, PHANTOM_CLASS_NAMES[:4], spacing=(1.0, 1.0, 1.0))


def load_masks(
    source: str | os.PathLike,
    *,
    image_size: int = 48,
    channels: int = 1,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    skip_bad: bool = False,
    synthetic_size: int = 2000,
    synthetic_difficulty: str = "easy",
    ct_window: Sequence[float] | None = None,
) -> dict[str, MaskSet]:
    """Load a segmentation source (see the module docstring) and split it at random into
    ``{"train", "val", "test"}`` :class:`MaskSet`\\ s.

    Args:
        source: ``"synthetic"``, ``"phantoms"``, a folder or an ``.npz``.
        image_size: Side of the output images (the volumes' side for ``"phantoms"``).
        channels: 1 or 3 (2-D images; volumes have one channel).
        val_fraction: Fraction of the cases held out for validation.
        test_fraction: Fraction held out for test.
        seed: Seed of the split and of the synthetic data.
        skip_bad: Skip bad pairs with one warning instead of raising.
        synthetic_size: Number of synthetic cases.
        synthetic_difficulty: ``"easy"`` or ``"hard"``.
        ct_window: A Decathlon folder's intensities clipped to this CT window ``(low,
            high)`` and scaled to ``[0, 1]`` instead of z-scored; NIfTI sources only.

    Returns:
        The three splits, sharing class names.
    """
    check_split_fractions(val_fraction, test_fraction)
    if isinstance(channels, bool) or channels not in (1, 3):
        raise fail("channels", "1 or 3", channels)
    is_decathlon = is_decathlon_folder(source)
    if ct_window is not None and not is_decathlon:
        raise fail("ct_window", "used with NIfTI volumes (a Decathlon folder) only", ct_window)
    if is_decathlon:
        data = read_decathlon_set(Path(source), image_size=image_size, window=ct_window)
    elif isinstance(source, str) and source in SEGMENTATION_SOURCES:
        difficulty = check_choice("synthetic_difficulty", synthetic_difficulty, ("easy", "hard"))
        if source == "phantoms" and channels != 1:
            raise fail("channels", "1 for the 3-D phantoms", channels)
        data = _synthetic(source, image_size, channels, synthetic_size, difficulty, seed)
    else:
        data = _read_source(Path(source), image_size, channels, skip_bad)
    return split_random(data, val_fraction, test_fraction, seed=seed)


def _read_source(path: Path, image_size, channels, skip_bad) -> MaskSet:
    if not path.exists():
        raise DataError(
            f"{path}: segmentation data not found (expected 'synthetic', 'phantoms', a folder "
            "with images/ and masks/, an .npz with x and y masks, or a Decathlon folder)"
        )
    options = {"image_size": image_size, "channels": channels}
    if path.is_dir():
        return read_mask_folders(path, skip_bad=skip_bad, **options)
    if path.suffix.lower() == ".npz":
        return read_mask_npz(path, **options)
    raise DataError(
        f"{path}: unsupported segmentation source (expected a folder with images/ and masks/, "
        "an .npz or a Decathlon folder)"
    )


def read_decathlon_set(
    root: Path, *, image_size: int | None, window: Sequence[float] | None = None
) -> MaskSet:
    """The labelled cases of a Decathlon folder as one :class:`MaskSet`: every volume a
    cube of side ``image_size`` (training takes whole volumes; resampling and patch
    sampling are not done here), one channel (the first of a multi-channel image),
    z-scored intensities, each case's affine and the first case's spacing."""
    from senet.data.nifti import decathlon_class_names, read_decathlon

    cases = read_decathlon(root, split="train", window=window)
    if not cases:
        raise DataError(f"{root}: no labelled volumes in imagesTr/")
    shapes = sorted({case.label.array.shape for case in cases})
    if image_size is not None and shapes != [(image_size,) * 3]:
        raise DataError(
            f"{root}: volumes of shape {shapes[:3]}; training takes whole volumes, cubes of "
            f"--image-size {image_size}: resample or crop them to that grid first"
        )
    x = np.stack([_first_channel(case.image.array) for case in cases])[..., None]
    y = np.stack([case.label.array for case in cases]).astype(np.int32)
    names = decathlon_class_names(root)
    names = _class_names(tuple(names) if names else None, int(y.max(initial=0)))
    _check_range(y, len(names), str(root / "labelsTr"))
    spacing = cases[0].image.spacing
    return MaskSet(
        x.astype(np.float32),
        y,
        names,
        tuple(case.name for case in cases),
        tuple(float(s) for s in spacing),
        [case.image.affine for case in cases],
    )


def _first_channel(array: np.ndarray) -> np.ndarray:
    return array[..., 0] if array.ndim == 4 else array
