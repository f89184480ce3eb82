"""The common return type of every reader and the error they raise on bad data."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["EMOTIONS", "DataError", "ImageSet"]

#: FER2013's seven classes in its label order (0 angry ... 6 neutral).
EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


class DataError(ValueError):
    """Bad or missing input data: the message names the file and row (1-based) or path."""


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

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, index: np.ndarray) -> ImageSet:
        """The samples at ``index`` (integer indices or a boolean mask), masks included."""
        masks = None if self.masks is None else {k: v[index] for k, v in self.masks.items()}
        return ImageSet(self.x[index], self.y[index], self.class_names, masks)
