"""Squeeze-and-Excitation (SE) channel attention.

Hu, Shen, Albanie, Sun, Wu: "Squeeze-and-Excitation Networks" (CVPR 2018, TPAMI 2019).
This is the seed's module with the paper's research options: reduction ratio,
squeeze operator (avg/max/avgmax), gate and hidden activation.
"""

from __future__ import annotations

import keras

from senet.checks import check_choice, check_positive
from senet.layers._common import (
    SQUEEZE_MODES,
    channel_axis,
    check_activation,
    check_input_shape,
    constant_gate,
    deserialize_options,
    elements,
    excite,
    gate_bias,
    mlp_flops,
    resolve_data_format,
    scale,
    serialize_option,
    squeeze,
    squeeze_flops,
)

_OBJECT_OPTIONS = (
    "gate",
    "activation",
    "kernel_initializer",
    "bias_initializer",
    "kernel_regularizer",
    "bias_regularizer",
)


def bottleneck_units(channels: int, reduction: float, units: int | None = None) -> int:
    """Hidden width of the excitation MLP: ``units`` if given, else ``C // r``, at least 1."""
    if units is not None:
        return int(units)
    return max(1, int(channels // reduction))


@keras.saving.register_keras_serializable(package="senet")
class SqueezeExcite(keras.layers.Layer):
    """Squeeze-and-Excitation block: reweights channels by a learned, input-dependent gate.

    For ``x`` of shape ``(B, *spatial, C)`` (channels_last) it computes

    1. squeeze: ``z = pool(x)`` over every spatial axis (``"avg"``, ``"max"`` or
       ``"avgmax"``, the mean of both), shape ``(B, C)``;
    2. excite: ``s = gate(W2 · act(W1 · z + b1) + b2)``, a bottleneck MLP
       ``C -> h -> C`` with ``h = C // reduction`` (or ``units``), at least 1;
    3. scale: ``y = x * s`` broadcast over the spatial axes.

    It adds ``2*C*h + h + C`` parameters (``2*C*h`` without biases). Under a mixed
    precision policy the squeeze and the MLP run in float32 and the output has the
    policy's compute dtype.

    Args:
        reduction: Reduction ratio ``r`` (positive number), default 8.
        units: Explicit bottleneck width; overrides ``reduction`` when given.
        squeeze: ``"avg"`` (the paper's choice), ``"max"`` or ``"avgmax"``.
        gate: Activation that produces the gate: ``"sigmoid"`` (default),
            ``"hard_sigmoid"``, ``"tanh"``, ``"relu"`` or any Keras activation.
        activation: Hidden activation of the MLP, default ``"relu"``.
        use_bias: Whether the two Dense layers use biases.
        data_format: ``"channels_last"`` or ``"channels_first"``; defaults to
            ``keras.config.image_data_format()``.
        kernel_initializer, bias_initializer, kernel_regularizer,
        bias_regularizer: Passed to both Dense layers.
        **kwargs: Base layer arguments (``name``, ``dtype``, ...).

    Input shape:
        Rank 3, 4 or 5: ``(B, *spatial, C)`` or ``(B, C, *spatial)``.

    Output shape:
        Same as the input.

    Example:
        >>> import numpy as np
        >>> layer = SqueezeExcite(reduction=8)
        >>> layer(np.ones((2, 7, 7, 32), "float32")).shape
        (2, 7, 7, 32)
        >>> [w.shape for w in layer.get_weights()]
        [(32, 4), (4,), (4, 32), (32,)]
    """

    def __init__(
        self,
        reduction: float = 8,
        *,
        units: int | None = None,
        squeeze: str = "avg",
        gate="sigmoid",
        activation="relu",
        use_bias: bool = True,
        data_format: str | None = None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.reduction = check_positive("reduction", reduction)
        self.units = check_positive("units", units, integer=True, allow_none=True)
        self.squeeze = check_choice("squeeze", squeeze, SQUEEZE_MODES)
        self.gate = gate
        self.activation = activation
        self._gate_fn = check_activation("gate", gate)
        check_activation("activation", activation)
        self.use_bias = bool(use_bias)
        self.data_format = resolve_data_format(data_format)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer
        self.kernel_regularizer = kernel_regularizer
        self.bias_regularizer = bias_regularizer
        self.supports_masking = True

    def build(self, input_shape):
        channels = check_input_shape(type(self).__name__, input_shape, self.data_format)
        hidden = bottleneck_units(channels, self.reduction, self.units)
        dense_options = dict(
            use_bias=self.use_bias,
            kernel_initializer=self.kernel_initializer,
            bias_initializer=self.bias_initializer,
            kernel_regularizer=self.kernel_regularizer,
            bias_regularizer=self.bias_regularizer,
            # The MLP is tiny: keep it in the variable dtype (float32 under mixed precision).
            dtype=self.dtype_policy.variable_dtype,
        )
        self.reduce = keras.layers.Dense(
            hidden, activation=self.activation, name="reduce", **dense_options
        )
        self.expand = keras.layers.Dense(channels, name="expand", **dense_options)
        self.reduce.build((None, channels))
        self.expand.build((None, hidden))
        self.channels = channels

    def excitation(self, inputs):
        """The gate ``s`` of shape ``(B, C)`` for a batch (builds the layer if needed)."""
        if not self.built:
            self.build(tuple(inputs.shape))
        return excite(
            squeeze(inputs, self.squeeze, self.data_format),
            self.reduce,
            self.expand,
            self._gate_fn,
        )

    def call(self, inputs):
        return scale(inputs, self.excitation(inputs), self.data_format)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def flops(self, input_shape, output_shape=None, *, macs_only: bool = False) -> int:
        """FLOPs of one call on a concrete (batched) input shape, as
        :func:`senet.bench.count_flops` counts them: the squeeze, the MLP and the scale;
        with ``macs_only`` the MLP's multiply-accumulates alone."""
        batch, channels = int(input_shape[0]), int(input_shape[channel_axis(self.data_format)])
        hidden = bottleneck_units(channels, self.reduction, self.units)
        if macs_only:
            return batch * 2 * channels * hidden
        squeezed = squeeze_flops(self.squeeze, input_shape, self.data_format)
        mlp = mlp_flops(channels, hidden, self.use_bias)
        return squeezed + batch * mlp + elements(input_shape)  # ... and the scale

    def identity_init(self, gain: float, *, check_only: bool = False) -> None:
        """Start as ``y = gain * x``: the expand kernel zero, its bias ``gate^-1(gain)``
        (``insert_attention(init="identity")``); ``check_only``: only raise if it cannot."""
        if not self.use_bias:
            raise ValueError(
                "the excitation has no bias (use_bias=False) to hold the gate near 1; "
                "use use_bias=True"
            )
        if not check_only:
            constant_gate(self.expand.kernel, self.expand.bias, gate_bias(self._gate_fn, gain))

    def get_config(self):
        config = super().get_config()
        config.update(
            reduction=self.reduction,
            units=self.units,
            squeeze=self.squeeze,
            use_bias=self.use_bias,
            data_format=self.data_format,
            **{key: serialize_option(getattr(self, key)) for key in _OBJECT_OPTIONS},
        )
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**deserialize_options(config, _OBJECT_OPTIONS))


SEModule = SqueezeExcite
