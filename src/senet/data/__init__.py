"""Data: synthetic expressions, readers for real data, tf.data pipelines."""

from senet.data.base import DataError, ImageSet
from senet.data.dataset import load_dataset

__all__ = ["DataError", "ImageSet", "load_dataset"]
