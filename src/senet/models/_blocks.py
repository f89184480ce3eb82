"""Pieces the network builders share: attention by kind, naming, argument checks.

Every builder makes channels_last models (TensorFlow runs most convolutions on the CPU only
in that layout), names layers ``<block>_<what>`` in the keras.applications style, and puts
attention under ``<block>_<kind>`` (``"block1_se"``, ``"decoder2_scse"``).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import keras

from senet.checks import fail
from senet.layers import attention
from senet.layers.registry import check_kind

# PyTorch's BatchNorm defaults (momentum 0.1 there is 0.9 here): the same numbers as
# torchvision's networks, and moving statistics that settle within a short training run.
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9


def check_attention(kind) -> str | None:
    """Return the lower-cased kind, or ``None`` for no attention (``None``/``"none"``, any case)."""
    return check_kind("attention", kind)


def check_attention_options(options: dict | None) -> dict:
    """A copy of ``attention_options``; ``name`` and ``reduction`` are set by the builder."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise fail("attention_options", "a dict of attention layer arguments or None", options)
    for reserved in ("name", "reduction"):
        if reserved in options:
            raise fail(
                "attention_options",
                f"a dict without {reserved!r} (the builder sets it; use the builder's "
                "`reduction` argument for the reduction ratio)",
                options,
            )
    return dict(options)


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
        raise fail(
            argument,
            f"a tuple of {wanted} positive sizes, channels last and known (spatial sizes "
            "may be None)",
            value,
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
