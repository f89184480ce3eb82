"""Pieces the network builders share: attention by kind, naming, argument checks.

Every builder makes channels_last models (TensorFlow runs most convolutions on the CPU only
in that layout), names layers ``<block>_<what>`` in the keras.applications style, and puts
attention under ``<block>_<kind>`` (``"block1_se"``, ``"decoder2_scse"``).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import keras

from senet.layers import attention, kinds

# PyTorch's BatchNorm defaults (momentum 0.1 there is 0.9 here): the same numbers as
# torchvision's networks, and moving statistics that settle within a short training run.
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9


def check_attention(kind) -> str | None:
    """Return the lower-cased kind, or ``None`` for no attention; raise a ValueError otherwise."""
    if kind is None or kind == "none":
        return None
    if not isinstance(kind, str) or kind.lower() not in kinds():
        raise ValueError(
            f"Expected `attention` to be one of {kinds() + ('none',)} or None. "
            f"Received: attention={kind!r}"
        )
    return kind.lower()


def check_attention_options(options: dict | None) -> dict:
    """A copy of ``attention_options``; ``name`` and ``reduction`` are set by the builder."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise ValueError(
            "Expected `attention_options` to be a dict of attention layer arguments or None. "
            f"Received: attention_options={options!r}"
        )
    for reserved in ("name", "reduction"):
        if reserved in options:
            raise ValueError(
                f"`attention_options` may not contain {reserved!r}: the builder sets it "
                f"(use the builder's `{reserved}` argument for the reduction ratio). "
                f"Received: attention_options={options!r}"
            )
    return dict(options)


def check_positive_int(argument: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(
            f"Expected `{argument}` to be a positive integer. Received: {argument}={value!r}"
        )
    return int(value)


def check_input_shape(argument: str, value, ranks: Sequence[int]) -> tuple:
    """``value`` as a tuple of ``len in ranks``, every size a positive int or None, channels known."""
    try:
        shape = tuple(value)
    except TypeError:
        shape = None
    ok = shape is not None and len(shape) in ranks
    ok = ok and all(
        size is None
        or (isinstance(size, numbers.Integral) and not isinstance(size, bool) and size > 0)
        for size in shape
    )
    if not ok or shape[-1] is None:
        wanted = " or ".join(str(rank) for rank in ranks)
        raise ValueError(
            f"Expected `{argument}` to be a tuple of {wanted} positive sizes, channels last and "
            f"known (spatial sizes may be None). Received: {argument}={value!r}"
        )
    return tuple(None if size is None else int(size) for size in shape)


def attention_layer(
    kind: str | None, block: str, *, reduction: float | None, options: dict
) -> keras.layers.Layer | None:
    """``senet.layers.attention`` named ``<block>_<kind>``, channels_last like the network."""
    if kind is None:
        return None
    layer = attention(kind, reduction=reduction, name=f"{block}_{kind}", **options)
    # The layers default to the global image data format; the networks are channels_last.
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        layer = attention(
            kind,
            reduction=reduction,
            name=f"{block}_{kind}",
            **{"data_format": "channels_last", **options},
        )
    return layer


def apply_attention(x, kind: str | None, block: str, *, reduction: float | None, options: dict):
    """``x`` through the block's attention layer, or ``x`` itself when ``kind`` is None."""
    layer = attention_layer(kind, block, reduction=reduction, options=options)
    return x if layer is None else layer(x)


def conv_bn_relu(x, filters: int, name: str, *, rank: int = 2, kernel_size: int = 3, index: int):
    """``<name>_conv{index}`` (no bias, BN follows) -> ``<name>_bn{index}`` -> ``<name>_relu{index}``."""
    conv = {1: keras.layers.Conv1D, 2: keras.layers.Conv2D, 3: keras.layers.Conv3D}[rank]
    x = conv(
        filters,
        kernel_size,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        data_format="channels_last",
        name=f"{name}_conv{index}",
    )(x)
    x = keras.layers.BatchNormalization(
        epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{name}_bn{index}"
    )(x)
    return keras.layers.Activation("relu", name=f"{name}_relu{index}")(x)
