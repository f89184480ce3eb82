"""Detection without Keras: COCO box metrics through pycocotools
(:mod:`senet.detection.metrics`)."""

from senet.detection.metrics import coco_metrics

__all__ = ["coco_metrics"]
