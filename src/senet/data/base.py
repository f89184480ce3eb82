"""The common return type of every reader, the error they raise on bad data, label checks."""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from senet.checks import fail
from senet.errors import DataError, printable

__all__ = [
    "EMOTIONS",
    "MAX_INFERRED_CLASSES",
    "DataError",
    "ImageSet",
    "check_labels",
    "check_split_fractions",
    "infer_class_names",
    "warn_missing_classes",
]

#: FER2013's seven classes in its label order (0 angry ... 6 neutral).
EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

#: The most classes a reader infers from the labels alone (an ``.npz`` without
#: ``class_names``): a stray label such as 1e9 is bad data, not a billion classes.
MAX_INFERRED_CLASSES = 1000


@dataclass
class ImageSet:
    """Images with integer labels, as every reader returns them.

    Attributes:
        x: float32 images ``(N, H, W, C)`` with values in ``[0, 1]``.
        y: int64 labels ``(N,)``, each in ``[0, len(class_names))``.
        class_names: Name of each class, indexed by label.
        masks: Boolean ``(N, H, W)`` part masks by name (synthetic data only), else None.
    """

    x: np.ndarray
    y: np.ndarray
    class_names: tuple[str, ...]
    masks: dict[str, np.ndarray] | None = None

    def __post_init__(self) -> None:
        # Names from files (class folder names, an .npz's class_names) end up in tables,
        # reports and models' records: control characters escaped (senet.errors.printable).
        if any(isinstance(name, str) and printable(name) != name for name in self.class_names):
            self.class_names = tuple(printable(name) for name in self.class_names)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, index: np.ndarray) -> ImageSet:
        """The samples at ``index`` (integer indices or a boolean mask), masks included."""
        masks = None if self.masks is None else {k: v[index] for k, v in self.masks.items()}
        return ImageSet(self.x[index], self.y[index], self.class_names, masks)


def infer_class_names(
    labels: np.ndarray, *, source: str, skip_bad: bool = False
) -> tuple[str, ...]:
    """Class names ``"0"``, ``"1"``, ... up to the largest label, for data without names.

    Labels at or above :data:`MAX_INFERRED_CLASSES` do not count: without ``skip_bad``
    the first of them raises :class:`DataError` naming ``source`` and its 0-based index;
    with it they are left out of range of the names, so the reader skips them as bad.

    >>> infer_class_names(np.array([2, 0, 1]), source="data.npz")
    ('0', '1', '2')
    """
    labels = np.asarray(labels)
    too_big = np.flatnonzero(labels >= MAX_INFERRED_CLASSES)
    if too_big.size and not skip_bad:
        index = int(too_big[0])
        raise DataError(
            f"{source}, index {index}: label {labels[index].item()!r} is not below "
            f"{MAX_INFERRED_CLASSES}, the most classes inferred from labels; give the file a "
            "'class_names' array to use more classes"
        )
    below = labels[labels < MAX_INFERRED_CLASSES]
    return tuple(str(i) for i in range(int(below.max(initial=-1)) + 1))


def check_labels(y: np.ndarray, class_names: Sequence[str], *, source: str) -> None:
    """Raise :class:`DataError` unless ``y`` is 1-D integers in ``[0, len(class_names))``.

    The readers check each row as they parse it (naming its line or index in the file);
    this is the last check before training, so the message names the position in ``y``.

    >>> try:
    ...     check_labels(np.array([0, 2]), ("a", "b"), source="data.npz")
    ... except DataError as error:
    ...     print(error)
    data.npz: label 2 at position 1 out of range [0, 2) for the class names ('a', 'b')
    """
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(
            f"{source}: labels must be a 1-D integer array, got dtype {y.dtype} shape {y.shape}"
        )
    bad = np.flatnonzero((y < 0) | (y >= len(class_names)))
    if bad.size:
        index = int(bad[0])
        raise DataError(
            f"{source}: label {y[index].item()} at position {index} out of range "
            f"[0, {len(class_names)}) for the class names {tuple(class_names)}"
        )


def warn_missing_classes(train: ImageSet, *, source: str) -> list[str]:
    """Warn once, naming them, if some classes have no training samples; return them.

    A model trained without samples of a class never predicts it; the usual cause is
    1-based labels (1..K where 0..K-1 is meant), which leave class 0 empty.
    """
    present = np.unique(np.asarray(train.y))
    missing = [name for k, name in enumerate(train.class_names) if k not in present]
    if missing:
        hint = ""
        if 0 not in present:
            hint = " (labels must start at 0: are they 1-based?)"
        warnings.warn(
            f"{source}: no training samples of {len(missing)} of {train.num_classes} "
            f"class(es) {missing}{hint}; the model cannot learn them",
            UserWarning,
            stacklevel=3,
        )
    return missing


def report_problems(problems: list[str], skip_bad: bool, *, what: str) -> None:
    """Raise the first of a reader's ``problems`` as a DataError, or with ``skip_bad`` warn once.

    ``what`` is the warning's text with ``{count}`` for the number of problems, e.g.
    ``"FILE: skipped {count} bad row(s)"``; the first problem is appended to it.
    """
    if not problems:
        return
    if not skip_bad:
        raise DataError(problems[0])
    warnings.warn(
        what.format(count=len(problems)) + f"; first: {problems[0]}", UserWarning, stacklevel=3
    )


def check_split_fractions(val_fraction, test_fraction) -> None:
    """``val_fraction`` and ``test_fraction`` each in ``[0, 1)`` and together below 1: the
    one check of the segmentation and detection readers' split arguments."""
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
            raise fail(name, "a number in [0, 1)", value)
    if val_fraction + test_fraction >= 1:
        raise fail("val_fraction + test_fraction", "below 1", val_fraction + test_fraction)
