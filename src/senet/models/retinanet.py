"""RetinaNet detectors on senet's ResNets, through keras-hub.

senet writes no detector: keras-hub's ``RetinaNetObjectDetector`` (feature pyramid, box
and class heads, focal loss, anchors, non-maximum suppression) runs on any image encoder
with ``pyramid_outputs``; :func:`retinanet` gives it a senet ResNet of any attention kind,
or a saved network (a timm-imported SE-ResNet, a ``keras.applications`` ResNet after
``insert_attention``), through :func:`~senet.models.resnet.pyramid_encoder`.

keras-hub is installed without its dependencies (its full install pulls in
tensorflow-text and with it a second TensorFlow)::

    pip install "senet[detection]" && pip install --no-deps "keras-hub==0.32.*"
"""

from __future__ import annotations

import os
import re

import keras

from senet.checks import check_number, check_positive, fail
from senet.layers.pyramid import KERAS_HUB_INSTALL
from senet.models._blocks import check_attention
from senet.models.resnet import pyramid_encoder, resnet
from senet.names import DEFAULT_ANCHOR_SIZE, DEFAULT_BACKBONE, IMAGENET_DEPTHS

__all__ = [
    "KERAS_HUB_INSTALL",
    "anchor_generator",
    "is_detector",
    "raw_detections",
    "retinanet",
]


_BACKBONE = re.compile(r"^resnet(\d+)$")


def keras_hub():
    """keras-hub, or the one-line ImportError saying how to install it."""
    try:
        import keras_hub as module
    except ImportError as error:
        raise ImportError(f"detection needs keras-hub: {KERAS_HUB_INSTALL}") from error
    return module


def retinanet(
    num_classes: int,
    *,
    backbone: str | os.PathLike | keras.Model = DEFAULT_BACKBONE,
    attention: str | None = None,
    reduction: float = 16,
    image_size: int = 128,
    channels: int = 3,
    bounding_box_format: str = "xyxy",
    attention_options: dict | None = None,
    min_score: float = 0.05,
    normalization: str = "group",
    anchor_size: float = DEFAULT_ANCHOR_SIZE,
):
    """A keras-hub RetinaNet whose image encoder is a senet ResNet.

    The encoder's stages conv3-conv5 feed the feature pyramid's P3-P5 (keras-hub adds P6
    and P7); the detector takes float images in ``[0, 1]`` of ``image_size`` square and
    returns boxes in ``bounding_box_format``, scores and classes (keras-hub's non-maximum
    suppression decodes them in ``predict``).

    Args:
        num_classes: Object classes (no background class).
        backbone: ``"resnet18"``, ``"resnet50"`` (any ImageNet depth of
            :func:`~senet.models.resnet.resnet`, built here without its classifier), a
            ``.keras`` file of a ResNet (its classifier is dropped), or a model.
        attention: Attention kind of a built backbone (``"se"``, ``"eca"``, ...); a file or
            model brings its own.
        reduction: Reduction ratio of a built backbone's attention.
        image_size: Side of the square input images.
        channels: Image channels (1 or 3).
        bounding_box_format: keras-hub's name of the box layout (``"xyxy"``: pixels).
        attention_options: Further arguments for a built backbone's attention layers.
        min_score: The lowest score a decoded detection keeps (after non-maximum
            suppression at IoU 0.5, at most 100 an image).
        normalization: A built backbone's normalization layers: ``"group"`` (default) or
            ``"batch"``. A detector trains on a few images a step, and BatchNormalization's
            statistics of so few differ from its running ones: trained from scratch that
            way, senet's detectors placed boxes well in training mode and badly in
            inference mode. GroupNormalization is the same in both (Wu & He, 2018, trained
            detectors from scratch with it). A saved backbone's BatchNormalization layers
            are frozen instead (``trainable = False``: they use the statistics they were
            trained with, as Detectron and torchvision do with pretrained backbones).
        anchor_size: Side of a level's base anchor in strides (keras-hub's 4: 32 pixels
            at P3, three scales and three aspect ratios each). A box matches an anchor at
            IoU 0.5 or more, so objects much smaller than ``8 * anchor_size`` pixels
            match none and train as background: 2 suits objects of 16-32 pixels (faces
            in scenes of 64-96 pixels).

    Returns:
        A ``keras_hub.models.RetinaNetObjectDetector``, not compiled.

    Raises:
        ImportError: keras-hub is not installed (the message says how).
        ValueError: An unknown backbone, attention given with a file or model, or a saved
            network whose input does not take ``image_size`` x ``image_size`` x ``channels``.
    """
    num_classes = check_positive("num_classes", num_classes, integer=True)
    min_score = check_number("min_score", min_score, minimum=0, maximum=1)
    anchor_size = check_number("anchor_size", anchor_size, minimum=0.25, maximum=64)
    image_size = check_positive("image_size", image_size, integer=True)
    if channels not in (1, 3):
        raise fail("channels", "1 or 3", channels)
    shape = (image_size, image_size, channels)
    kind = check_attention(attention)
    if isinstance(backbone, keras.Model) or str(backbone).endswith(".keras"):
        if kind is not None:
            raise fail("attention", "None for a saved backbone (it has its own)", attention)
        if isinstance(backbone, keras.Model):
            model = backbone
        else:
            from senet.layers import load_model

            model = load_model(backbone, compile=False)
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
        given = tuple(model.inputs[0].shape[1:])
        if len(given) != 3 or any(
            g is not None and g != s for g, s in zip(given, shape, strict=True)
        ):
            raise ValueError(
                f"backbone {getattr(model, 'name', backbone)!r} takes {given}, not the "
                f"{shape} images asked for"
            )
    else:
        match = _BACKBONE.match(str(backbone))
        if not match or int(match.group(1)) not in IMAGENET_DEPTHS:
            names = ", ".join(f"resnet{d}" for d in IMAGENET_DEPTHS)
            raise fail("backbone", f"one of {names} or a .keras file", backbone)
        model = resnet(
            int(match.group(1)),
            input_shape=shape,
            attention=kind,
            reduction=reduction,
            include_top=False,
            attention_options=attention_options,
            normalization=normalization,
        )
    hub = keras_hub()
    encoder = pyramid_encoder(model)
    pyramid = hub.models.RetinaNetBackbone(
        image_encoder=encoder, min_level=3, max_level=7, use_p5=False, image_shape=shape
    )
    # COCO's evaluation keeps detections down to a low score (0.05 here, as in Detectron
    # and torchvision), so precision is measured over the whole recall range; keras-hub's
    # default (0.5) cuts the curve. A user-facing threshold belongs to prediction.
    decoder = hub.layers.NonMaxSuppression(
        bounding_box_format=bounding_box_format,
        from_logits=True,
        iou_threshold=0.5,
        confidence_threshold=min_score,
        max_detections=100,
    )
    return hub.models.RetinaNetObjectDetector(
        backbone=pyramid,
        anchor_generator=anchor_generator(bounding_box_format, anchor_size),
        num_classes=num_classes,
        bounding_box_format=bounding_box_format,
        prediction_decoder=decoder,
        # GroupNormalization in the box and class heads too: their convolutions start
        # from N(0, 0.05) kernels, which without it multiply the scale of the pyramid's
        # features layer by layer (outputs of std ~40 at the start, and a first epoch
        # spent undoing them)
        use_prediction_head_norm=True,
    )


def anchor_generator(bounding_box_format: str = "xyxy", anchor_size: float = DEFAULT_ANCHOR_SIZE):
    """keras-hub's anchors of senet's RetinaNets: levels P3-P7, three scales and three
    aspect ratios a position, ``anchor_size`` strides a side (see :func:`retinanet`)."""
    return keras_hub().layers.AnchorGenerator(
        bounding_box_format,
        min_level=3,
        max_level=7,
        num_scales=3,
        aspect_ratios=[0.5, 1.0, 2.0],
        anchor_size=anchor_size,
    )


def is_detector(model) -> bool:
    """Whether ``model`` is a keras-hub object detector (it decodes its own outputs)."""
    return callable(getattr(model, "decode_predictions", None)) and hasattr(model, "num_classes")


def raw_detections(detector) -> keras.Model:
    """A detector's heads as one output, for export: ``(B, A, 4 + classes)``.

    For each of the ``A`` anchors (keras-hub's order: levels P3-P7, then rows, columns
    and the 9 anchors of a position), the 4 box deltas of keras-hub's encoding
    (``center_xywh``: the centre's offset in anchor widths and heights, then the log of
    the size ratios; ``RetinaNetLabelEncoder``'s variances are 1), then one probability
    per class (the sigmoid of the logits). Decoding them into boxes (anchors, deltas to boxes,
    non-maximum suppression) is what ``detector.decode_predictions`` does;
    ``docs/detection.md`` shows it on the exported outputs.
    """
    inputs = keras.Input(tuple(detector.inputs[0].shape[1:]), name="images")
    heads = detector(inputs, training=False)
    probabilities = keras.layers.Activation("sigmoid", name="class_probabilities")(
        heads["cls_logits"]
    )
    joined = keras.layers.Concatenate(axis=-1, name="raw_detections", dtype="float32")(
        [heads["bbox_regression"], probabilities]
    )
    return keras.Model(inputs, joined, name=f"{detector.name}_raw")
