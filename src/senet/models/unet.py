"""U-Net for 2-D and 3-D segmentation with attention in the decoder blocks.

Ronneberger, Fischer, Brox: "U-Net" (MICCAI 2015); Roy, Navab, Wachinger: "Concurrent Spatial
and Channel Squeeze & Excitation in Fully Convolutional Networks" (MICCAI 2018), which adds
scSE blocks to U-Net-style networks; this builder puts them after each decoder block.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from senet.checks import check_positive, fail
from senet.models._blocks import (
    apply_attention,
    check_attention,
    check_attention_options,
    check_input_shape,
    conv_bn_relu,
)

_POOL = {2: keras.layers.MaxPooling2D, 3: keras.layers.MaxPooling3D}
_UPCONV = {2: keras.layers.Conv2DTranspose, 3: keras.layers.Conv3DTranspose}
_CONV = {2: keras.layers.Conv2D, 3: keras.layers.Conv3D}


def unet(
    input_shape: Sequence[int | None] = (128, 128, 1),
    num_classes: int = 2,
    attention: str | None = "scse",
    depth: int = 4,
    base_filters: int = 16,
    *,
    reduction: float | None = None,
    attention_options: dict | None = None,
    name: str | None = None,
) -> keras.Model:
    """A U-Net: ``depth`` poolings down, as many transposed convolutions up, skips between.

    Layer names: ``encoder{i}_conv1`` ... ``encoder{i}_relu2`` and ``encoder{i}_pool`` for
    levels ``i = 1..depth`` (level 1 at full resolution, ``base_filters * 2**(i-1)``
    filters), ``bottleneck_conv1`` ... (``base_filters * 2**depth`` filters), then for
    ``i = depth..1`` ``decoder{i}_upconv`` (2x transposed convolution),
    ``decoder{i}_concat`` (with encoder ``i``'s output), ``decoder{i}_conv1`` ...
    ``decoder{i}_relu2`` and the attention layer ``decoder{i}_<kind>``
    (``decoder1_scse`` is the last, at full resolution); finally ``predictions``, a 1x1
    convolution with softmax (sigmoid when ``num_classes == 1``). Convolutions that feed
    BN carry no bias.

    Args:
        input_shape: ``(H, W, C)`` for 2-D or ``(D, H, W, C)`` for 3-D data; the rank
            decides. Every known spatial size must be divisible by ``2 ** depth``.
        num_classes: Output channels: class probabilities per pixel (softmax), or one
            foreground probability (sigmoid) when 1.
        attention: An attention kind from ``senet.kinds()`` (default ``"scse"``) or
            None/"none".
        depth: Number of down-sampling steps.
        base_filters: Filters at the first level; doubled at every level down.
        reduction: Reduction ratio of the attention bottleneck; None keeps the layer's
            default (2 for scSE, as in Roy et al.; 8 for SE).
        attention_options: Further arguments for the attention layers.
        name: Model name; default ``unet`` or ``unet_<kind>``.

    Returns:
        A functional ``keras.Model`` from ``(B, *spatial, C)`` to
        ``(B, *spatial, num_classes)``.

    Raises:
        ValueError: For a spatial size not divisible by ``2 ** depth`` or other bad
            arguments.

    Example:
        >>> model = unet((64, 64, 1), num_classes=3, depth=3)
        >>> model.output_shape
        (None, 64, 64, 3)
        >>> model.get_layer("decoder1_scse").output.shape
        (None, 64, 64, 16)
    """
    input_shape = check_input_shape("input_shape", input_shape, (3, 4))
    num_classes = check_positive("num_classes", num_classes, integer=True)
    depth = check_positive("depth", depth, integer=True)
    base_filters = check_positive("base_filters", base_filters, integer=True)
    kind = check_attention(attention)
    options = check_attention_options(attention_options)
    rank = len(input_shape) - 1
    factor = 2**depth
    if any(size is not None and size % factor for size in input_shape[:-1]):
        raise fail(
            "input_shape",
            f"a shape whose every spatial size is divisible by 2**depth = {factor} "
            f"(depth={depth} poolings, each halving it)",
            input_shape,
        )

    inputs = keras.Input(input_shape, name="image")
    x = inputs
    skips = []
    for level in range(1, depth + 1):
        block = f"encoder{level}"
        filters = base_filters * 2 ** (level - 1)
        x = conv_bn_relu(x, filters, block, rank=rank, index=1)
        x = conv_bn_relu(x, filters, block, rank=rank, index=2)
        skips.append(x)
        x = _POOL[rank](2, data_format="channels_last", name=f"{block}_pool")(x)

    x = conv_bn_relu(x, base_filters * 2**depth, "bottleneck", rank=rank, index=1)
    x = conv_bn_relu(x, base_filters * 2**depth, "bottleneck", rank=rank, index=2)

    for level in range(depth, 0, -1):
        block = f"decoder{level}"
        filters = base_filters * 2 ** (level - 1)
        x = _UPCONV[rank](
            filters,
            2,
            strides=2,
            kernel_initializer="he_normal",
            data_format="channels_last",
            name=f"{block}_upconv",
        )(x)
        x = keras.layers.Concatenate(name=f"{block}_concat")([skips[level - 1], x])
        x = conv_bn_relu(x, filters, block, rank=rank, index=1)
        x = conv_bn_relu(x, filters, block, rank=rank, index=2)
        x = apply_attention(x, kind, block, reduction=reduction, options=options)

    outputs = _CONV[rank](
        num_classes,
        1,
        activation="sigmoid" if num_classes == 1 else "softmax",
        # float32 output, so a mixed-precision model still gives exact probabilities.
        dtype="float32",
        data_format="channels_last",
        name="predictions",
    )(x)
    if name is None:
        name = f"unet_{kind}" if kind else "unet"
    return keras.Model(inputs, outputs, name=name)
