"""ResNets with attention in the residual units, in every placement the SE paper studied.

He, Zhang, Ren, Sun: "Deep Residual Learning for Image Recognition" (CVPR 2016);
Hu, Shen, Albanie, Sun, Wu: "Squeeze-and-Excitation Networks" (TPAMI 2019), Section 6.5,
Fig. 5 and Table 14 for the integration variants, Table 13 for SE in single stages.

ImageNet depths (18, 34: basic blocks; 50, 101, 152: bottlenecks) follow torchvision's
ResNet v1.5 layer for layer (stride on the 3x3 convolution, no conv biases, BN epsilon 1e-5,
PyTorch-style symmetric padding), so parameter counts match torchvision exactly. CIFAR depths
(20, 32, 44, 56, 110 = 6n+2) are He et al.'s three stages of n basic blocks with 16/32/64
filters; where a shortcut changes shape it is a 1x1 projection with BN (the paper's option B,
not option A's zero padding), so ResNet-20 has 272,474 trainable parameters, option A 269,722.

The ImageNet layout also builds the variants timm's SE networks use (Xie et al., "Aggregated
Residual Transformations", CVPR 2017; He et al., "Bag of Tricks", CVPR 2019): ResNeXt
bottlenecks (``cardinality`` groups of ``base_width`` channels in the 3x3 convolution), the
deep 3x3 stems of ResNet-C/D/T (``stem="deep"``: 32, 32, 64 channels; ``"tiered"``: 24, 32, 64)
and ResNet-D's average-pooled projection shortcuts (``downsample="avg"``); depth 26 is timm's
(2, 2, 2, 2) bottleneck network.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import keras

from senet.checks import check_choice, check_positive, fail
from senet.models._blocks import (
    BN_EPSILON,
    BN_MOMENTUM,
    attention_layer,
    check_attention,
    check_attention_options,
    check_input_shape,
)
from senet.names import CIFAR_DEPTHS, IMAGENET_DEPTHS, RESNET_DEPTHS

PLACEMENTS = ("standard", "pre", "post", "identity")
STEMS = ("standard", "deep", "tiered")
DOWNSAMPLES = ("conv", "avg")
#: Normalization layers: BatchNormalization, or GroupNormalization (32 groups, fewer where
#: the channels do not divide by 32), which does not depend on the batch (detectors).
NORMALIZATIONS = ("batch", "group")
_GROUPS = 32
# The three 3x3 convolutions of each deep stem (the last one is followed by conv1_bn).
_DEEP_STEMS = {"deep": (32, 32, 64), "tiered": (24, 32, 64)}

# The depths and their blocks per stage are in senet.names, the one table of model names.
_IMAGENET_WIDTHS = (64, 128, 256, 512)
_CIFAR_WIDTHS = (16, 32, 64)

_STAGE_OUTPUT = re.compile(r"^conv(\d+)_block(\d+)_out$")


def _conv_initializer():
    # torchvision's kaiming_normal_(mode="fan_out", nonlinearity="relu").
    return keras.initializers.VarianceScaling(
        2.0, mode="fan_out", distribution="untruncated_normal"
    )


def make_divisible(value: float, divisor: int) -> int:
    """``value`` rounded to the nearest multiple of ``divisor``, at least ``divisor``.

    timm's ``make_divisible(value, divisor, round_limit=0)``, the rounding of its SE
    bottleneck widths: ``make_divisible(64 / 16, 8) == 8`` where ``64 // 16 == 4``.
    """
    return max(divisor, int(value + divisor / 2) // divisor * divisor)


def _conv(x, filters: int, kernel_size: int, name: str, *, strides: int = 1, groups: int = 1):
    """A bias-free conv (BN follows). Strided 3x3/7x7 convs pad like PyTorch: symmetric."""
    padding = "same"
    if strides > 1 and kernel_size > 1:
        pad = keras.layers.ZeroPadding2D(
            kernel_size // 2, data_format="channels_last", name=name.removesuffix("_conv") + "_pad"
        )
        x = pad(x)
        padding = "valid"
    elif kernel_size == 1:
        padding = "valid"
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        groups=groups,
        use_bias=False,
        kernel_initializer=_conv_initializer(),
        data_format="channels_last",
        name=name,
    )(x)


def _bn(x, name: str, norm: str):
    if norm == "group":
        groups = math.gcd(_GROUPS, int(x.shape[-1]))
        return keras.layers.GroupNormalization(groups, epsilon=BN_EPSILON, name=name)(x)
    return keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)(x)


def _relu(x, name: str):
    return keras.layers.Activation("relu", name=name)(x)


def _residual_branch(
    x,
    block_type: str,
    filters: int,
    strides: int,
    name: str,
    *,
    cardinality: int,
    base_width: int,
    norm: str,
):
    """The residual function F(x), up to its last BN (no ReLU)."""
    if block_type == "basic":
        x = _conv(x, filters, 3, f"{name}_1_conv", strides=strides)
        x = _relu(_bn(x, f"{name}_1_bn", norm), f"{name}_1_relu")
        x = _conv(x, filters, 3, f"{name}_2_conv")
        return _bn(x, f"{name}_2_bn", norm)
    # ResNeXt: `cardinality` groups of `base_width` channels per 64 (1 x 64 is ResNet's width).
    width = (filters * base_width // 64) * cardinality
    x = _conv(x, width, 1, f"{name}_1_conv")
    x = _relu(_bn(x, f"{name}_1_bn", norm), f"{name}_1_relu")
    x = _conv(x, width, 3, f"{name}_2_conv", strides=strides, groups=cardinality)
    x = _relu(_bn(x, f"{name}_2_bn", norm), f"{name}_2_relu")
    x = _conv(x, 4 * filters, 1, f"{name}_3_conv")
    return _bn(x, f"{name}_3_bn", norm)


def _shortcut(x, out_channels: int, strides: int, name: str, downsample: str, norm: str):
    """The identity, or a projection (1x1 conv + BN) where the unit changes shape."""
    if strides == 1 and x.shape[-1] == out_channels:
        return x
    if downsample == "avg" and strides > 1:
        # ResNet-D: average, then project. "same" pooling averages only the real inputs of a
        # window cut by the border: PyTorch's AvgPool2d(ceil_mode=True, count_include_pad=False).
        x = keras.layers.AveragePooling2D(
            strides, strides, padding="same", data_format="channels_last", name=f"{name}_0_pool"
        )(x)
        strides = 1
    return _bn(_conv(x, out_channels, 1, f"{name}_0_conv", strides=strides), f"{name}_0_bn", norm)


def _residual_unit(
    x,
    block_type: str,
    filters: int,
    strides: int,
    name: str,
    *,
    attend,
    placement: str,
    cardinality: int = 1,
    base_width: int = 64,
    downsample: str = "conv",
    norm: str = "batch",
):
    """One residual unit; ``attend(block_name, channels)`` makes its attention layer (or None)."""
    out_channels = filters * (4 if block_type == "bottleneck" else 1)
    layer = attend(name, x.shape[-1] if placement == "pre" else out_channels)
    shortcut = _shortcut(x, out_channels, strides, name, downsample, norm)
    branch_input = x
    if layer is not None and placement == "pre":
        # SE-PRE: recalibrate the unit's input on the residual branch; the identity stays plain.
        branch_input = layer(x)
    residual = _residual_branch(
        branch_input,
        block_type,
        filters,
        strides,
        name,
        cardinality=cardinality,
        base_width=base_width,
        norm=norm,
    )
    if layer is not None and placement == "standard":
        residual = layer(residual)
    elif layer is not None and placement == "identity":
        # SE-Identity: the gate acts on the identity path, in parallel to the residual unit.
        shortcut = layer(shortcut)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, residual])
    if layer is not None and placement == "post":
        # SE-POST: after the summation with the identity and its ReLU; "_out" stays the end.
        x = layer(_relu(x, f"{name}_relu"))
        return keras.layers.Identity(name=f"{name}_out")(x)
    return _relu(x, f"{name}_out")


def _attention_stages(stages, stage_numbers: tuple[int, ...]) -> frozenset[int]:
    """Stage numbers (as in ``conv<N>``) that get attention, from ints or one bool per stage."""
    if stages is None:
        return frozenset(stage_numbers)
    allowed = (
        f"None, a tuple of stage numbers from {stage_numbers} or a tuple of "
        f"{len(stage_numbers)} booleans (one per stage)"
    )
    try:
        stages = tuple(stages)
    except TypeError:
        raise fail("stages", allowed, stages) from None
    if stages and all(isinstance(stage, bool) for stage in stages):
        if len(stages) != len(stage_numbers):
            raise fail("stages", allowed, stages)
        return frozenset(number for number, on in zip(stage_numbers, stages, strict=True) if on)
    if not all(not isinstance(stage, bool) and stage in stage_numbers for stage in stages):
        raise fail("stages", allowed, stages)
    return frozenset(int(stage) for stage in stages)


def resnet(
    depth: int,
    input_shape: Sequence[int | None] | None = None,
    num_classes: int | None = None,
    attention: str | None = None,
    reduction: float = 16,
    placement: str = "standard",
    stages: Sequence[int] | Sequence[bool] | None = None,
    include_top: bool = True,
    pooling: str | None = None,
    attention_options: dict | None = None,
    name: str | None = None,
    *,
    cardinality: int = 1,
    base_width: int = 64,
    stem: str = "standard",
    downsample: str = "conv",
    units_divisor: int | None = None,
    classifier_activation: str | None = "softmax",
    normalization: str = "batch",
) -> keras.Model:
    """A ResNet (ImageNet or CIFAR layout) with optional attention in its residual units.

    Layer names follow keras.applications: ``conv1_conv``, ``conv2_block1_1_conv``,
    ``conv2_block1_0_conv`` (projection shortcut), ``conv2_block1_add``; each unit ends in
    ``<block>_out`` (``conv5_block3_out`` is the last feature map of ResNet-50, see
    :func:`resnet_stage_outputs`) and its attention layer is ``<block>_<kind>``, e.g.
    ``conv2_block1_se``. Top: ``avg_pool`` and ``predictions`` (softmax). A deep stem is
    ``conv1_1_conv`` ... ``conv1_3_conv`` before ``conv1_bn``; an average-pooled shortcut
    starts with ``<block>_0_pool``.

    Args:
        depth: 18, 34 (basic blocks), 26, 50, 101, 152 (bottlenecks; ImageNet layout, stages
            conv2-conv5) or 20, 32, 44, 56, 110 (CIFAR layout, stages conv2-conv4).
        input_shape: ``(H, W, C)``; default ``(224, 224, 3)`` for ImageNet depths and
            ``(32, 32, 3)`` for CIFAR depths. Spatial sizes may be None.
        num_classes: Classifier width; default 1000 (ImageNet) or 10 (CIFAR).
        attention: An attention kind from ``senet.kinds()`` (``"se"``, ...) or None/"none".
        reduction: Reduction ratio of the attention bottleneck (the paper's r = 16).
        placement: Where the attention layer sits in each residual unit (SE paper, Fig. 5):
            ``"standard"`` on the residual branch before the summation; ``"pre"`` before the
            residual unit, on the branch's input (identity unchanged); ``"post"`` after the
            summation with the identity and its ReLU; ``"identity"`` on the identity path
            (after the projection, if any), in parallel to the residual unit.
        stages: Which stages get attention: stage numbers as in the layer names
            (``(4, 5)`` = conv4 and conv5), or one boolean per stage; None = all.
        include_top: Whether to end with global average pooling and the classifier.
        pooling: Without the top: None (4-D feature map), ``"avg"`` or ``"max"`` (2-D).
        attention_options: Further arguments for the attention layers (``squeeze``,
            ``gate``, ...).
        name: Model name; default ``resnet50``, ``se_resnet50``, ``cbam_resnet20``, ...
        cardinality: Groups of the bottleneck's 3x3 convolution (ResNeXt; 1 = ResNet).
            Bottleneck depths only.
        base_width: Channels per group for 64 filters: the bottleneck is
            ``filters * base_width // 64 * cardinality`` wide (ResNeXt-50 32x4d: 32 and 4).
        stem: ``"standard"`` (one 7x7 convolution), ``"deep"`` (three 3x3 convolutions of
            32, 32, 64 channels, ResNet-C/D) or ``"tiered"`` (24, 32, 64, timm's ``t``
            variants). ImageNet depths only.
        downsample: Projection shortcuts that stride: ``"conv"`` (strided 1x1 convolution)
            or ``"avg"`` (2x2 average pooling, then a 1x1 convolution; ResNet-D).
        units_divisor: With ``attention="se"``, round each bottleneck width ``C / reduction``
            to a multiple of this (:func:`make_divisible`, as timm does with 8); None keeps
            ``C // reduction``.
        classifier_activation: Activation of ``predictions``: ``"softmax"`` or None (logits).
        normalization: ``"batch"`` (BatchNormalization, the paper's) or ``"group"``
            (GroupNormalization of 32 groups: the same in training and inference at any
            batch size, for detectors trained on a few images a step). The layers keep
            their ``_bn`` names.

    Returns:
        A functional ``keras.Model``.

    Raises:
        ValueError: For an unknown depth, placement, attention kind, stages, pooling, stem or
            downsample, or a variant the depth cannot take.

    Example:
        >>> model = resnet(20, input_shape=(32, 32, 3), attention="se")
        >>> model.get_layer("conv2_block1_se").name
        'conv2_block1_se'
        >>> resnet_stage_outputs(model)
        ['conv2_block3_out', 'conv3_block3_out', 'conv4_block3_out']
    """
    depth = int(check_choice("depth", depth, RESNET_DEPTHS))
    placement = check_choice("placement", placement, PLACEMENTS)
    kind = check_attention(attention)
    options = check_attention_options(attention_options)
    if pooling is not None:
        pooling = check_choice("pooling", pooling, ("avg", "max"))
    cifar = depth in CIFAR_DEPTHS
    stem = check_choice("stem", stem, STEMS)
    downsample = check_choice("downsample", downsample, DOWNSAMPLES)
    norm = check_choice("normalization", normalization, NORMALIZATIONS)
    cardinality = check_positive("cardinality", cardinality, integer=True)
    base_width = check_positive("base_width", base_width, integer=True)
    bottleneck = not cifar and IMAGENET_DEPTHS[depth][0] == "bottleneck"
    if (cardinality, base_width) != (1, 64) and not bottleneck:
        raise fail("cardinality", "1 (and base_width 64) for basic-block depths", cardinality)
    if stem != "standard" and cifar:
        raise fail("stem", "'standard' for CIFAR depths", stem)
    if units_divisor is not None:
        units_divisor = check_positive("units_divisor", units_divisor, integer=True)
        if kind != "se":
            raise fail("units_divisor", "None unless attention is 'se'", units_divisor)
    if input_shape is None:
        input_shape = (32, 32, 3) if cifar else (224, 224, 3)
    input_shape = check_input_shape("input_shape", input_shape, (3,))
    if num_classes is None:
        num_classes = 10 if cifar else 1000
    num_classes = check_positive("num_classes", num_classes, integer=True)

    if cifar:
        block_type, blocks, widths = "basic", (CIFAR_DEPTHS[depth],) * 3, _CIFAR_WIDTHS
    else:
        (block_type, blocks), widths = IMAGENET_DEPTHS[depth], _IMAGENET_WIDTHS
    stage_numbers = tuple(range(2, 2 + len(blocks)))
    attended = _attention_stages(stages, stage_numbers) if kind else frozenset()

    inputs = keras.Input(input_shape, name="input")
    if cifar:
        x = _conv(inputs, widths[0], 3, "conv1_conv")
        x = _relu(_bn(x, "conv1_bn", norm), "conv1_relu")
    else:
        x = _stem(inputs, stem, norm)

    for stage, (count, filters) in enumerate(zip(blocks, widths, strict=True)):
        number = stage_numbers[stage]
        attend = _attend(kind if number in attended else None, reduction, options, units_divisor)
        for index in range(count):
            strides = 2 if index == 0 and stage > 0 else 1
            x = _residual_unit(
                x,
                block_type,
                filters,
                strides,
                f"conv{number}_block{index + 1}",
                attend=attend,
                placement=placement,
                cardinality=cardinality,
                base_width=base_width,
                downsample=downsample,
                norm=norm,
            )

    x = _top(x, include_top, pooling, num_classes, classifier_activation)
    if name is None:
        name = _default_name(depth, kind, stem, downsample, cardinality, base_width)
    model = keras.Model(inputs, x, name=name)
    if not cifar:
        model.pyramid_outputs = pyramid_outputs(model)
    return model


def _attend(kind, reduction, options, units_divisor):
    """A stage's attention factory, ``attend(block, channels)``: the layer (None without
    ``kind``), with ``units`` rounded to ``units_divisor`` when it is given (timm's SE)."""

    def attend(block, channels):
        if kind is None:
            return None
        layer_options = options
        if units_divisor is not None:
            units = make_divisible(channels / reduction, units_divisor)
            layer_options = {**options, "units": units}
        return attention_layer(kind, block, reduction=reduction, options=layer_options)

    return attend


def _top(x, include_top: bool, pooling, num_classes: int, classifier_activation):
    """The classifier (global average pooling, Dense ``predictions``) or the pooling asked."""
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(data_format="channels_last", name="avg_pool")(x)
        # float32 output, so a mixed-precision model still gives exact probabilities.
        return keras.layers.Dense(
            num_classes, activation=classifier_activation, dtype="float32", name="predictions"
        )(x)
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(data_format="channels_last", name="avg_pool")(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(data_format="channels_last", name="max_pool")(x)
    return x


def _default_name(depth, kind, stem, downsample, cardinality, base_width) -> str:
    """``resnet50``, ``se_resnet50d``, ``se_resnext50_32x4d``, ..., as timm names them."""
    name = f"resnet{depth}" if cardinality == 1 else f"resnext{depth}"
    if stem != "standard" or downsample != "conv":
        name += {"standard": "", "deep": "d", "tiered": "t"}[stem] or "d"
    if cardinality != 1:
        name += f"_{cardinality}x{base_width}d"
    return f"{kind}_{name}" if kind else name


def _stem(inputs, stem: str, norm: str):
    """The ImageNet stem: 7x7/2 conv (or three 3x3 convs, the first strided), BN, ReLU, 3x3/2 max pool."""
    if stem == "standard":
        x = _conv(inputs, _IMAGENET_WIDTHS[0], 7, "conv1_conv", strides=2)
    else:
        x = inputs
        widths = _DEEP_STEMS[stem]
        for index, filters in enumerate(widths, start=1):
            x = _conv(x, filters, 3, f"conv1_{index}_conv", strides=2 if index == 1 else 1)
            if index < len(widths):
                x = _relu(_bn(x, f"conv1_{index}_bn", norm), f"conv1_{index}_relu")
    x = _relu(_bn(x, "conv1_bn", norm), "conv1_relu")
    # Zero padding equals PyTorch's -inf padding here: the input is a ReLU output.
    x = keras.layers.ZeroPadding2D(1, data_format="channels_last", name="pool1_pad")(x)
    return keras.layers.MaxPooling2D(3, strides=2, data_format="channels_last", name="pool1_pool")(
        x
    )


def resnet_stage_outputs(model: keras.Model) -> list[str]:
    """Names of the stage outputs (last unit of each stage) of a :func:`resnet` model.

    Args:
        model: A model built by :func:`resnet` (or any model with ``conv<N>_block<M>_out``
            layer names).

    Returns:
        ``["conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out"]``
        for ResNet-50, in stage order: the features for a detection or segmentation head.
    """
    last: dict[int, int] = {}
    for layer in model.layers:
        match = _STAGE_OUTPUT.match(layer.name)
        if match:
            stage, block = int(match.group(1)), int(match.group(2))
            last[stage] = max(block, last.get(stage, 0))
    return [f"conv{stage}_block{last[stage]}_out" for stage in sorted(last)]


def pyramid_outputs(model: keras.Model) -> dict:
    """A ResNet's feature pyramid as keras-hub's detectors take it (``pyramid_outputs``).

    Level ``N`` is the output of stage ``convN`` (:func:`resnet_stage_outputs`), at stride
    ``2**N`` (its side within one of the input's over ``2**N``): ``P2`` to ``P5`` for an
    ImageNet-layout ResNet. :func:`resnet` sets ``model.pyramid_outputs`` to this; call it
    for a model that never had the attribute: a ``keras.applications`` ResNet (before or
    after :func:`senet.models.insert_attention`), a timm-imported network. A model loaded
    from a file loses the attribute; :func:`pyramid_encoder` makes one that keeps it.

    Args:
        model: A functional model with ``conv<N>_block<M>_out`` layers.

    Returns:
        ``{"P2": tensor, ...}``, the stage outputs as symbolic tensors of ``model``.

    Raises:
        ValueError: When the model has no such layers, or a stage is not at the stride of
            its level (a CIFAR-layout ResNet: its conv2 keeps the input's size).

    Example:
        >>> model = resnet(18, input_shape=(64, 64, 3), include_top=False)
        >>> {level: tuple(t.shape[1:]) for level, t in pyramid_outputs(model).items()}
        {'P2': (16, 16, 64), 'P3': (8, 8, 128), 'P4': (4, 4, 256), 'P5': (2, 2, 512)}
    """
    return {level: model.get_layer(name).output for level, name in _pyramid_layers(model).items()}


def _pyramid_layers(model: keras.Model) -> dict[str, str]:
    """``{"P2": "conv2_block2_out", ...}``: the layer of each level, checked as
    :func:`pyramid_outputs` says."""
    names = resnet_stage_outputs(model)
    if not names:
        raise ValueError(
            f"model {model.name!r} has no conv<N>_block<M>_out layers, so no ResNet stages "
            "to take a feature pyramid from"
        )
    height = model.inputs[0].shape[1] if model.inputs else None
    out = {}
    for name in names:
        level = int(_STAGE_OUTPUT.match(name).group(1))
        size = model.get_layer(name).output.shape[1]
        if height is not None and size is not None and abs(size - height / 2**level) >= 1:
            raise ValueError(
                f"model {model.name!r}: stage {name} is {size} high for a {height}-high "
                f"input, not at stride {2**level} (P{level}); a CIFAR-layout ResNet has no "
                "detection pyramid"
            )
        out[f"P{level}"] = name
    return out


def pyramid_encoder(model: keras.Model):
    """``model`` (a ResNet of any kind, with or without its classifier) as a detector's
    image encoder (a :class:`senet.layers.PyramidEncoder`): its layers up to the last
    stage, with ``pyramid_outputs``
    (:func:`pyramid_outputs`) that survive saving and loading, and an empty
    :class:`senet.layers.TrainingInfo` at its output (where a detector senet trains keeps
    its training record). The layers and weights are ``model``'s own, shared, not copied.

    Example:
        >>> encoder = pyramid_encoder(resnet(18, input_shape=(64, 64, 3), attention="se"))
        >>> sorted(encoder.pyramid_outputs), encoder.output.shape[1:]
        (['P2', 'P3', 'P4', 'P5'], (2, 2, 512))
    """
    from senet.layers.info import TrainingInfo
    from senet.layers.pyramid import PyramidEncoder

    layers = _pyramid_layers(model)
    last = model.get_layer(layers[max(layers, key=lambda level: int(level[1:]))]).output
    # an empty record at the output: a detector trained by senet keeps its record here
    # (senet.layers.with_training_info), since the detector itself has no single output
    record = TrainingInfo({}, name="training_info")(last)
    return PyramidEncoder(model.inputs, record, name=f"{model.name}_encoder", pyramid_layers=layers)
