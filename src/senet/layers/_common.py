"""Helpers shared by the attention layers: argument checks, axes, squeeze."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import keras
from keras import ops

SQUEEZE_MODES = ("avg", "max", "avgmax")
_LOW_PRECISION = ("float16", "bfloat16")


def check_choice(argument: str, value, allowed: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``allowed``, else raise a ValueError naming it."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(
            f"Expected `{argument}` to be one of {tuple(allowed)}. Received: {argument}={value!r}"
        )
    return value


def check_positive(argument: str, value, *, integer: bool = False, allow_none: bool = False):
    """Return ``value`` if it is a positive number (an int when ``integer``)."""
    if value is None and allow_none:
        return None
    kind = numbers.Integral if integer else numbers.Real
    # bool is an int to Python, and NaN/inf pass `> 0` checks only to fail later in build().
    if (
        isinstance(value, bool)
        or not isinstance(value, kind)
        or not math.isfinite(value)
        or value <= 0
    ):
        what = "a positive integer" if integer else "a positive number"
        raise ValueError(f"Expected `{argument}` to be {what}. Received: {argument}={value!r}")
    return int(value) if integer else value


def check_number(argument: str, value):
    """Return ``value`` if it is a finite real number (not a bool), else raise a ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(
            f"Expected `{argument}` to be a finite number. Received: {argument}={value!r}"
        )
    return value


def check_activation(argument: str, value):
    """Resolve a Keras activation name or callable, raising a ValueError that names ``argument``."""
    if callable(value):
        return value
    try:
        return keras.activations.get(value)
    except (ValueError, TypeError):
        raise ValueError(
            f"Expected `{argument}` to be a Keras activation name (e.g. 'sigmoid', "
            f"'hard_sigmoid', 'tanh', 'relu') or a callable. Received: {argument}={value!r}"
        ) from None


def resolve_data_format(data_format: str | None) -> str:
    data_format = keras.config.image_data_format() if data_format is None else data_format
    return check_choice("data_format", data_format, ("channels_last", "channels_first"))


def channel_axis(data_format: str) -> int:
    return -1 if data_format == "channels_last" else 1


def spatial_axes(rank: int, data_format: str) -> tuple[int, ...]:
    if data_format == "channels_last":
        return tuple(range(1, rank - 1))
    return tuple(range(2, rank))


def check_input_shape(layer_name: str, input_shape, data_format: str) -> int:
    """Check rank 3-5 and a known channel dimension; return the channel count."""
    input_shape = tuple(input_shape)
    if len(input_shape) not in (3, 4, 5):
        raise ValueError(
            f"{layer_name} expects a rank 3, 4 or 5 input (batch, spatial..., channels) for "
            f"1-D, 2-D or 3-D data. Received: input_shape={input_shape}"
        )
    channels = input_shape[channel_axis(data_format)]
    if channels is None:
        raise ValueError(
            f"{layer_name} needs a known channel dimension (axis "
            f"{channel_axis(data_format)} for data_format={data_format!r}). "
            f"Received: input_shape={input_shape}"
        )
    return int(channels)


def squeeze(x, mode: str, data_format: str):
    """Global pooling over every spatial axis -> ``(B, C)``.

    Low-precision inputs (float16/bfloat16) are averaged in float32 so a large
    feature map neither overflows nor loses the mean to rounding; the result is
    float32 then, and the caller's sub-layers (built with the policy's variable
    dtype) keep the excitation MLP in float32 too.
    """
    axes = spatial_axes(len(x.shape), data_format)
    if keras.backend.standardize_dtype(x.dtype) in _LOW_PRECISION:
        x = ops.cast(x, "float32")
    if mode == "avg":
        return ops.mean(x, axis=axes)
    if mode == "max":
        return ops.max(x, axis=axes)
    return 0.5 * (ops.mean(x, axis=axes) + ops.max(x, axis=axes))


def broadcast_channels(s, rank: int, data_format: str):
    """Turn a ``(B, C)`` gate into a tensor that broadcasts over the spatial axes."""
    for axis in spatial_axes(rank, data_format):
        s = ops.expand_dims(s, axis)
    return s


def scale(x, s, data_format: str):
    """``x * s`` with ``s`` of shape ``(B, C)``, in ``x``'s dtype."""
    return x * ops.cast(broadcast_channels(s, len(x.shape), data_format), x.dtype)


def serialize_option(value):
    """Config value for an activation/initializer/regularizer argument: names stay names."""
    if value is None or isinstance(value, str):
        return value
    return keras.saving.serialize_keras_object(value)


def deserialize_options(config: dict, keys: Sequence[str]) -> dict:
    """Undo :func:`serialize_option` for ``keys`` of a layer config (returns a copy)."""
    config = dict(config)
    for key in keys:
        if isinstance(config.get(key), dict):
            config[key] = keras.saving.deserialize_keras_object(config[key])
    return config
