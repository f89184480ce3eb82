"""senet: Squeeze-and-Excitation channel attention for Keras 3.

Importing ``senet`` is instant: the Keras-dependent parts (layers, models, data,
explain, ...) load on first use, so the ``senet`` command answers ``--help``
without importing TensorFlow. Accessing any layer name (``senet.SqueezeExcite``)
or importing ``senet.layers`` registers every attention layer with Keras, which
``keras.models.load_model`` needs; ``senet.load_model`` does both in one call.

Example:
    >>> import numpy as np, senet
    >>> senet.SqueezeExcite(reduction=8)(np.zeros((2, 7, 7, 32), "float32")).shape
    (2, 7, 7, 32)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> module that defines it; resolved on first attribute access (PEP 562).
_LAZY_ATTRS = {
    "SqueezeExcite": "senet.layers",
    "SEModule": "senet.layers",
    "EfficientChannelAttention": "senet.layers",
    "ECA": "senet.layers",
    "SpatialSqueezeExcite": "senet.layers",
    "ChannelSpatialSqueezeExcite": "senet.layers",
    "CBAM": "senet.layers",
    "attention": "senet.layers",
    "kinds": "senet.layers",
    "register": "senet.layers",
    "load_model": "senet.layers",
}
_SUBMODULES = {
    "layers",
    "models",
    "data",
    "explain",
    "runs",
    "metrics",
    "train",
    "predict",
    "explain_photos",
    "demo",
    "bench",
    "export",
    "report",
    "cli",
}

__all__ = ["__version__", *_LAZY_ATTRS]


def __getattr__(name: str) -> Any:
    if name in _LAZY_ATTRS:
        value = getattr(importlib.import_module(_LAZY_ATTRS[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"senet.{name}")
    raise AttributeError(f"module 'senet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_ATTRS) | _SUBMODULES)
