"""Data: synthetic expressions with part masks, readers for real data, tf.data pipelines.

Example:
    >>> from senet.data import load_dataset, make_dataset
    >>> splits = load_dataset("synthetic", synthetic_size=70)
    >>> train = make_dataset(splits["train"], batch_size=16, shuffle=True, augment=True)

The readers need only NumPy and OpenCV; the pipeline names (``make_dataset``,
``augmentation``, ``class_weights``) import TensorFlow and Keras on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from senet.data.base import EMOTIONS, DataError, ImageSet
from senet.data.dataset import load_dataset
from senet.data.images import read_image
from senet.data.synthetic import synthetic_expressions

_PIPELINE = ("augment_batch", "augmentation", "class_weights", "make_dataset")

__all__ = [
    "EMOTIONS",
    "DataError",
    "ImageSet",
    "augment_batch",
    "augmentation",
    "class_weights",
    "load_dataset",
    "make_dataset",
    "read_image",
    "synthetic_expressions",
]


def __getattr__(name: str) -> Any:
    if name in _PIPELINE:
        value = getattr(importlib.import_module("senet.data.pipeline"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'senet.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
