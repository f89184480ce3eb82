"""What the attention layers share: the one squeeze, the one excitation, axes and checks.

Every channel gate in senet (SqueezeExcite, the channel branch of scSE, CBAM's channel
gate and the fused inference tail FusedSEResidual) is :func:`excite` on descriptors from
:func:`squeeze`; the layers differ only in where the descriptors come from and where the
gate is applied. Generic argument checks live in :mod:`senet.checks`; the layer-specific
ones here use its message shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import keras
import numpy as np
from keras import ops

from senet.checks import check_choice, fail

SQUEEZE_MODES = ("avg", "max", "avgmax")
_LOW_PRECISION = ("float16", "bfloat16")


def check_activation(argument: str, value):
    """Resolve a Keras activation name or callable, raising a ValueError that names ``argument``."""
    if callable(value):
        return value
    try:
        return keras.activations.get(value)
    except (ValueError, TypeError):
        raise fail(
            argument,
            "a Keras activation name (e.g. 'sigmoid', 'hard_sigmoid', 'tanh', 'relu') "
            "or a callable",
            value,
        ) from None


def resolve_data_format(data_format: str | None) -> str:
    """``data_format``, or Keras' global image data format when it is ``None``."""
    data_format = keras.config.image_data_format() if data_format is None else data_format
    return check_choice("data_format", data_format, ("channels_last", "channels_first"))


def channel_axis(data_format: str) -> int:
    """The channel axis of a tensor in ``data_format`` (-1 or 1)."""
    return -1 if data_format == "channels_last" else 1


def spatial_axes(rank: int, data_format: str) -> tuple[int, ...]:
    """The spatial axes of a rank-``rank`` tensor in ``data_format``."""
    if data_format == "channels_last":
        return tuple(range(1, rank - 1))
    return tuple(range(2, rank))


def check_input_shape(layer_name: str, input_shape, data_format: str) -> int:
    """Check rank 3-5 and a known channel dimension; return the channel count."""
    input_shape = tuple(input_shape)
    if len(input_shape) not in (3, 4, 5):
        raise fail(
            "input_shape",
            f"rank 3, 4 or 5 for {layer_name} ((batch, spatial..., channels) for 1-D, 2-D "
            "or 3-D data)",
            input_shape,
        )
    axis = channel_axis(data_format)
    channels = input_shape[axis]
    if channels is None:
        raise fail(
            "input_shape",
            f"a shape with a known channel dimension for {layer_name} (axis {axis} for "
            f"data_format={data_format!r})",
            input_shape,
        )
    return int(channels)


def squeeze(x, mode: str, data_format: str):
    """Global pooling over every spatial axis -> ``(B, C)``: the one squeeze.

    ``mode`` is ``"avg"``, ``"max"`` or ``"avgmax"`` (the mean of both). Low-precision
    inputs (float16/bfloat16) are pooled in float32 so a large feature map neither
    overflows nor loses the mean to rounding; the result is float32 then. On the
    TensorFlow backend ``keras.ops.mean``/``max`` trace to one ``Mean``/``Max`` op each.
    """
    axes = spatial_axes(len(x.shape), data_format)
    if keras.backend.standardize_dtype(x.dtype) in _LOW_PRECISION:
        x = ops.cast(x, "float32")
    if mode == "avg":
        return ops.mean(x, axis=axes)
    if mode == "max":
        return ops.max(x, axis=axes)
    return 0.5 * (ops.mean(x, axis=axes) + ops.max(x, axis=axes))


def excite(descriptors, reduce: Callable, expand: Callable, gate: Callable):
    """The one SE excitation: ``s = gate(sum_d expand(reduce(d)))``.

    With ``reduce(z) = act(W1 · z + b1)`` and ``expand(t) = W2 · t + b2`` this is the
    bottleneck MLP of SE, ``s = gate(W2 · act(W1 · z + b1) + b2)``.

    Args:
        descriptors: One pooled descriptor ``(B, C_in)`` (SE: ``squeeze(x)``), or a list
            of them that share the MLP and whose logits are summed before the gate (CBAM:
            ``[avg, max]``).
        reduce: The MLP's first layer with its activation: a ``Dense(h, activation=act)``
            (whose float32 dtype policy keeps the MLP in float32 under mixed precision),
            or :func:`affine` of raw weights.
        expand: The MLP's second layer, ``Dense(C)`` or :func:`affine`.
        gate: The gate activation (callable).

    Returns:
        The gate ``s``, shape ``(B, C)``, in ``expand``'s dtype.
    """
    if not isinstance(descriptors, list | tuple):
        descriptors = [descriptors]
    logits = None
    for descriptor in descriptors:
        term = expand(reduce(descriptor))
        logits = term if logits is None else logits + term
    return gate(logits)


def affine(kernel, bias=None, activation: Callable | None = None) -> Callable:
    """``z -> activation(z @ kernel + bias)``: a Dense layer's arithmetic on given weights.

    For :func:`excite` where the weights are not a Dense layer's (the fused inference tail,
    whose first kernel has absorbed a convolution). On TensorFlow it traces to ``MatMul``
    and ``BiasAdd`` (``keras.ops.add`` of a 1-D bias), which grappler fuses with the
    activation into one ``_FusedMatMul``.
    """

    def layer(z):
        out = ops.matmul(z, kernel)
        if bias is not None:
            out = ops.add(out, bias)
        return out if activation is None else activation(out)

    return layer


def broadcast_channels(s, rank: int, data_format: str):
    """Turn a ``(B, C)`` gate into a tensor that broadcasts over the spatial axes.

    One reshape to ``(B, 1, ..., C)`` (or ``(B, C, 1, ...)``) where ``C`` is known: an
    ``expand_dims`` per spatial axis converts to TFLite ``EXPAND_DIMS`` ops, which LiteRT's
    XNNPACK delegate does not take, so every SE block split the delegated graph (the SE
    emotion CNN ran as five partitions instead of one; SE's overhead over the plain CNN
    at batch 1 in LiteRT was +5.6% that way, +3.8% with one reshape, 400 rounds).
    """
    channels = s.shape[-1]
    if channels is None:
        for axis in spatial_axes(rank, data_format):
            s = ops.expand_dims(s, axis)
        return s
    shape = [-1] + [1] * (rank - 1)
    shape[-1 if data_format == "channels_last" else 1] = channels
    return ops.reshape(s, shape)


def scale(x, s, data_format: str):
    """``x * s`` with ``s`` of shape ``(B, C)``, in ``x``'s dtype."""
    return x * ops.cast(broadcast_channels(s, len(x.shape), data_format), x.dtype)


def elements(shape) -> int:
    """The number of elements of a concrete shape."""
    return math.prod(int(d) for d in shape)


def squeeze_flops(mode: str, input_shape, data_format: str) -> int:
    """FLOPs of :func:`squeeze` on a concrete (batched) input shape: one per element read,
    and for ``"avgmax"`` both pools and their mean (one per channel)."""
    if mode != "avgmax":
        return elements(input_shape)
    batch, channels = int(input_shape[0]), int(input_shape[channel_axis(data_format)])
    return 2 * elements(input_shape) + batch * channels


def mlp_flops(channels: int, hidden: int, use_bias: bool, descriptors: int = 1) -> int:
    """FLOPs of :func:`excite`'s MLP for one sample: ``descriptors`` pooled vectors through
    ``C -> h (activation) -> C``, their logits summed, then the gate. A multiply-add is 2."""
    per_descriptor = 2 * (2 * channels * hidden) + hidden  # two matmuls, hidden activation
    if use_bias:
        per_descriptor += hidden + channels
    return descriptors * per_descriptor + (descriptors - 1) * channels + channels


def gate_bias(gate_fn: Callable, target: float) -> float:
    """The smallest ``b`` with ``gate(b) >= target`` (bisection; the gate must be monotone):
    the bias that makes a gate whose input weights are zero the constant ``target``."""

    def gate(value: float) -> float:
        return float(ops.convert_to_numpy(gate_fn(np.array([value], "float32")))[0])

    low, high = -50.0, 1.0
    while gate(high) < target:
        high *= 2
        if high > 1e6:
            raise ValueError(
                f"init='identity' needs a gate that reaches {target}; this gate stays "
                f"below it (gate(1e6) = {gate(high)}). Use init='random'."
            )
    if gate(low) >= target:
        raise ValueError(
            f"init='identity' needs a gate that is below {target} somewhere; "
            f"gate(-50) = {gate(low)}. Use init='random'."
        )
    for _ in range(80):
        middle = 0.5 * (low + high)
        if gate(middle) >= target:
            high = middle
        else:
            low = middle
    return high


def zero(variable) -> None:
    # Not `ops.zeros_like(variable)`: JAX cannot take a Keras variable's dtype from it.
    variable.assign(ops.zeros(variable.shape, dtype=variable.dtype))


def constant_gate(kernel, bias, value: float) -> None:
    """Zero ``kernel`` and fill ``bias`` with ``value``: a gate that ignores its input."""
    zero(kernel)
    bias.assign(ops.full(bias.shape, value, dtype=bias.dtype))


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
