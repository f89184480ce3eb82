"""``load_dataset``: one entry point from a data source to train/val/test splits."""

from __future__ import annotations

import os

from senet.data.base import ImageSet

__all__ = ["load_dataset"]


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
) -> dict[str, ImageSet]:
    """Load a data source and split it into ``{"train", "val", "test"}`` ImageSets."""
    raise NotImplementedError("load_dataset is being written; the signature is final")
