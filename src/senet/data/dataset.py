"""``load_dataset``: one entry point from a data source to train/val/test splits."""

from __future__ import annotations

import numbers
import os
from pathlib import Path

import numpy as np

from senet.checks import check_choice, fail
from senet.data.base import EMOTIONS, DataError, ImageSet, check_labels, warn_missing_classes
from senet.data.fer2013 import is_fer_folder, read_fer2013_csv, read_fer_folder
from senet.data.images import (
    MAX_ARRAY_BYTES_ENV,
    array_cap,
    fit_images,
    read_class_folders,
    read_npz,
)
from senet.data.synthetic import DIFFICULTIES, synthetic_expressions

__all__ = ["load_dataset", "split_stratified"]

SPLITS = ("train", "val", "test")


def load_dataset(
    source: str | os.PathLike,
    *,
    image_size: int = 48,
    channels: int = 1,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    skip_bad: bool = False,
    synthetic_size: int = 7000,
    synthetic_difficulty: str = "easy",
) -> dict[str, ImageSet]:
    """Load a data source and split it into ``{"train", "val", "test"}`` ImageSets.

    Sources:

    - ``"synthetic"``: :func:`~senet.data.synthetic_expressions` with ``synthetic_size``
      images, ``seed`` and ``synthetic_difficulty``; class names :data:`EMOTIONS`; masks kept (``ImageSet.masks``).
    - a FER2013 ``.csv`` (``emotion,pixels,Usage``): ``Training`` -> train,
      ``PublicTest`` -> val, ``PrivateTest`` -> test; class names :data:`EMOTIONS`.
    - a FER-style folder (``train/<class>/*``, ``test/<class>/*``, optional
      ``val/<class>/*``); class names are ``train/``'s sub-folders, sorted.
    - any folder with one sub-folder of images per class (names sorted).
    - an ``.npz`` with arrays ``x``, ``y`` and optionally ``class_names``.

    A split the source does not define is carved out of the training data with a
    stratified random split (``val_fraction`` / ``test_fraction`` of each class,
    rounded); for sources without splits (class folders, ``.npz``, synthetic, a csv
    without ``Usage``) all three are. Images come out ``image_size`` square with
    ``channels`` channels (gray <-> RGB converted), float32 in ``[0, 1]``, every split
    shuffled with ``seed``.

    Labels are checked before anything trains on them: every split's labels are integers
    in ``[0, number of classes)`` (a reader reports the file's line or index of the first
    bad one), and a class without training samples (1-based labels leave class 0 empty)
    gives one ``UserWarning`` naming the missing classes.

    Args:
        source: ``"synthetic"`` or a path as above.
        image_size: Side of the output images.
        channels: 1 (gray) or 3 (RGB).
        val_fraction: Fraction of each class held out for validation, in ``[0, 1)``.
        test_fraction: Fraction held out for test, in ``[0, 1)``; the two sum below 1.
        seed: Seed of the splits (and of the synthetic images).
        skip_bad: Skip bad rows/images (one warning with their count) instead of raising.
        synthetic_size: Number of synthetic images in total.
        synthetic_difficulty: ``"easy"`` or ``"hard"`` synthetic faces (see
            :func:`~senet.data.synthetic_expressions`); only for ``"synthetic"``.

    Returns:
        ``{"train": ImageSet, "val": ImageSet, "test": ImageSet}`` sharing class names;
        a split may be empty when its fraction is 0.

    Raises:
        DataError: Unknown source, unreadable or bad data (naming file and row or path).
        ValueError: Bad arguments.

    Example:
        >>> splits = load_dataset("synthetic", synthetic_size=70, image_size=32)
        >>> [len(splits[k]) for k in ("train", "val", "test")], splits["train"].x.shape[1:]
        ([56, 7, 7], (32, 32, 1))
    """
    _check_args(image_size, channels, val_fraction, test_fraction, synthetic_size, source)
    difficulty = check_choice("synthetic_difficulty", synthetic_difficulty, DIFFICULTIES)
    synthetic = {"size": synthetic_size, "difficulty": difficulty}
    splits = _read_splits(
        source, image_size, channels, val_fraction, test_fraction, seed, skip_bad, synthetic
    )
    name = os.fspath(source)
    for part in splits.values():
        check_labels(part.y, part.class_names, source=name)
    warn_missing_classes(splits["train"], source=name)
    return splits


def _read_splits(
    source, image_size, channels, val_fraction, test_fraction, seed, skip_bad, synthetic
) -> dict[str, ImageSet]:
    """The splits of :func:`load_dataset`, before the label checks."""
    if isinstance(source, str) and source == "synthetic":
        x, y, masks = synthetic_expressions(
            synthetic["size"],
            image_size=image_size,
            seed=seed,
            difficulty=synthetic["difficulty"],
        )
        if channels == 3:
            x = np.repeat(x, 3, axis=-1)
        data = ImageSet(x, y, EMOTIONS, masks)
        return split_stratified(data, val_fraction, test_fraction, seed=seed)

    path = Path(source)
    if not path.exists():
        raise DataError(
            f"{path}: data source not found (expected 'synthetic', a FER2013 .csv, an .npz "
            "or an image folder)"
        )
    options = {"image_size": image_size, "channels": channels, "skip_bad": skip_bad}
    if path.is_dir():
        if is_fer_folder(path):
            parts = read_fer_folder(path, **options)
            sets = {
                split: None if part is None else ImageSet(*part) for split, part in parts.items()
            }
            return _complete_splits(sets, val_fraction, test_fraction, seed)
        x, y, names = read_class_folders(path, **options)
        return split_stratified(ImageSet(x, y, names), val_fraction, test_fraction, seed=seed)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        pixels, labels, usage = read_fer2013_csv(path, skip_bad=skip_bad)
        x = fit_images(pixels, image_size, channels, source=str(path))
        data = ImageSet(x, labels, EMOTIONS)
        if not usage.any():  # no Usage column
            return split_stratified(data, val_fraction, test_fraction, seed=seed)
        sets = {split: data.subset(usage == split) for split in SPLITS}
        sets = {split: subset if len(subset) else None for split, subset in sets.items()}
        return _complete_splits(sets, val_fraction, test_fraction, seed)
    if suffix == ".npz":
        return split_stratified(
            ImageSet(*read_npz(path, **options)), val_fraction, test_fraction, seed=seed
        )
    raise DataError(
        f"{path}: unsupported data source (expected 'synthetic', a .csv, an .npz or a folder)"
    )


def split_stratified(
    data: ImageSet, val_fraction: float, test_fraction: float, *, seed: int = 0
) -> dict[str, ImageSet]:
    """Split per class at random into train/val/test, each split shuffled.

    Each class ``c`` with ``n_c`` samples gives ``round(n_c * test_fraction)`` to test
    and ``round(n_c * val_fraction)`` to val (at least one sample stays in train).
    """
    rng = np.random.default_rng(seed)
    chosen: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
    for label in np.unique(data.y):
        members = rng.permutation(np.flatnonzero(data.y == label))
        n = members.size
        n_test = min(int(round(n * test_fraction)), n - 1)
        n_val = min(int(round(n * val_fraction)), n - 1 - n_test)
        chosen["test"].append(members[:n_test])
        chosen["val"].append(members[n_test : n_test + n_val])
        chosen["train"].append(members[n_test + n_val :])
    out = {}
    for split in SPLITS:
        index = np.concatenate(chosen[split]) if chosen[split] else np.zeros(0, np.int64)
        out[split] = data.subset(rng.permutation(index.astype(np.int64)))
    return out


def _complete_splits(
    sets: dict[str, ImageSet | None], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, ImageSet]:
    """Fill missing val/test splits from train; shuffle every split."""
    train = sets["train"]
    if train is None or len(train) == 0:
        raise DataError("no training data in the source")
    carved = split_stratified(
        train,
        val_fraction if sets["val"] is None else 0.0,
        test_fraction if sets["test"] is None else 0.0,
        seed=seed,
    )
    rng = np.random.default_rng(seed + 1)
    out = {}
    for split in SPLITS:
        given = sets[split]
        if split == "train" or given is None:
            out[split] = carved[split]
        else:
            out[split] = given.subset(rng.permutation(len(given)))
    return out


def _check_args(
    image_size, channels, val_fraction, test_fraction, synthetic_size, source=None
) -> None:
    if (
        isinstance(image_size, bool)
        or not isinstance(image_size, numbers.Integral)
        or image_size <= 0
    ):
        raise fail("image_size", "a positive integer", image_size)
    if isinstance(channels, bool) or channels not in (1, 3):
        raise fail("channels", "1 or 3", channels)
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
            raise ValueError(f"`{name}` must be a number in [0, 1), got {value!r}")
    if val_fraction + test_fraction >= 1:
        raise ValueError(
            "`val_fraction + test_fraction` must be below 1, got "
            f"val_fraction={val_fraction!r}, test_fraction={test_fraction!r}"
        )
    if (
        isinstance(synthetic_size, bool)
        or not isinstance(synthetic_size, numbers.Integral)
        or synthetic_size <= 0
    ):
        raise fail("synthetic_size", "a positive integer", synthetic_size)
    _check_memory(source, image_size, channels, synthetic_size)


# what one synthetic face holds besides its float32 pixels: its part masks, one byte a pixel
_SYNTHETIC_MASK_BYTES = 8


def _check_memory(source, image_size, channels, synthetic_size) -> None:
    """Refuse, before anything is allocated, sizes whose arrays would pass the array cap
    (``SENET_MAX_ARRAY_BYTES``, the cap :func:`read_npz` applies): one model input of
    ``image_size`` for any source, all ``synthetic_size`` faces with their masks for
    ``"synthetic"``."""
    cap = array_cap()
    pixels = int(image_size) ** 2
    one = pixels * int(channels) * 4
    if one > cap:
        raise ValueError(
            f"`image_size` {image_size} needs {one} bytes for one {channels}-channel float32 "
            f"image, over the cap of {cap} bytes; set {MAX_ARRAY_BYTES_ENV} to a larger "
            "number to allow it"
        )
    if isinstance(source, str) and source == "synthetic":
        needed = int(synthetic_size) * (pixels * (4 * int(channels) + _SYNTHETIC_MASK_BYTES))
        if needed > cap:
            raise ValueError(
                f"`synthetic_size` {synthetic_size} at image_size {image_size} needs {needed} "
                f"bytes for the faces and their masks, over the cap of {cap} bytes; set "
                f"{MAX_ARRAY_BYTES_ENV} to a larger number to allow it"
            )
