"""The one table of the networks senet builds and trains by name.

``MODEL_NAMES`` lists every name ``senet train --model``, ``senet ablate --model``,
``senet bench --model``, :class:`senet.train.TrainConfig` and :func:`build_model` accept, and
every one of them can be trained. The ResNet depths here are the ones
:func:`senet.models.resnet` builds. This module imports nothing heavy (no Keras), so the
command line's ``--help`` reads it; :func:`build_model` imports the builders when called.

To add a network: give it a name here and a branch in :func:`build_model`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "CIFAR_DEPTHS",
    "CLASSIFICATION_MODELS",
    "DEFAULT_ANCHOR_SIZE",
    "DEFAULT_BACKBONE",
    "DETECTION_MODELS",
    "IMAGENET_DEPTHS",
    "MODEL_NAMES",
    "RESNET_DEPTHS",
    "SEGMENTATION_MODELS",
    "build_model",
    "is_cifar_depth",
    "resnet_depth",
]

#: ImageNet ResNets (He et al. 2016; 26 as in the SE paper's ablations):
#: depth -> (block type, blocks per stage); stages are named conv2 ... conv5.
IMAGENET_DEPTHS: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    26: ("bottleneck", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
#: The 6n+2 depths of He et al.'s CIFAR study: depth -> n, the basic blocks of each of the
#: three stages conv2 ... conv4. Not 1202: Keras cannot build a functional graph that deep
#: (its graph walk recurses once per layer, past Python's recursion limit).
CIFAR_DEPTHS: dict[int, int] = {depth: (depth - 2) // 6 for depth in (20, 32, 44, 56, 110)}
RESNET_DEPTHS: tuple[int, ...] = (*IMAGENET_DEPTHS, *CIFAR_DEPTHS)
MODEL_NAMES: tuple[str, ...] = (
    "emotion_cnn",
    *(f"resnet{depth}" for depth in CIFAR_DEPTHS),
    *(f"resnet{depth}" for depth in IMAGENET_DEPTHS),
    "unet",
    "retinanet",
)
#: The networks of :data:`MODEL_NAMES` that label every pixel (segmentation), not images.
SEGMENTATION_MODELS: tuple[str, ...] = ("unet",)
#: The networks that find boxes (detection: keras-hub's RetinaNet on a senet ResNet).
DETECTION_MODELS: tuple[str, ...] = ("retinanet",)
#: The encoder of a detection network when none is named (``--backbone``).
DEFAULT_BACKBONE = "resnet18"
#: A RetinaNet's base anchor side in strides (keras-hub's: 32 pixels at P3).
DEFAULT_ANCHOR_SIZE = 4
#: The networks that give one label an image (classification).
CLASSIFICATION_MODELS: tuple[str, ...] = tuple(
    name for name in MODEL_NAMES if name not in (*SEGMENTATION_MODELS, *DETECTION_MODELS)
)


def resnet_depth(name: str) -> int | None:
    """The depth of a ``"resnet<depth>"`` name of :data:`MODEL_NAMES`; None for others."""
    if name in MODEL_NAMES and name.startswith("resnet"):
        return int(name.removeprefix("resnet"))
    return None


def is_cifar_depth(depth: int) -> bool:
    """Whether ``depth`` is one of the CIFAR ResNets (32x32 inputs, three stages)."""
    return depth in CIFAR_DEPTHS


def build_model(
    name: str,
    *,
    input_shape: Sequence[int],
    num_classes: int,
    attention: str | None = "se",
    reduction: float = 8,
    **options: Any,
):
    """Build the network ``name`` of :data:`MODEL_NAMES` (a new, untrained Keras model).

    ``options`` go to the builder (:func:`senet.models.emotion_cnn`,
    :func:`senet.models.resnet`, :func:`senet.models.unet` or
    :func:`senet.models.retinanet`: ``backbone`` there).
    """
    from senet.checks import check_choice

    name = check_choice("model", name, MODEL_NAMES)
    if name == "emotion_cnn":
        from senet.models import emotion_cnn

        return emotion_cnn(
            tuple(input_shape), num_classes, attention=attention, reduction=reduction, **options
        )
    if name == "retinanet":
        from senet.models import retinanet

        return retinanet(
            num_classes,
            image_size=int(input_shape[0]),
            channels=int(input_shape[-1]),
            attention=attention,
            reduction=reduction,
            **options,
        )
    if name == "unet":
        from senet.models import unet

        return unet(
            tuple(input_shape), num_classes, attention=attention, reduction=reduction, **options
        )
    from senet.models import resnet

    return resnet(
        resnet_depth(name),
        input_shape=tuple(input_shape),
        num_classes=num_classes,
        attention=attention,
        reduction=reduction,
        **options,
    )
