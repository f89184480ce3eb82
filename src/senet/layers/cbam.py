"""Convolutional Block Attention Module (CBAM).

Woo, Park, Lee, Kweon: "CBAM: Convolutional Block Attention Module" (ECCV 2018).
A channel gate from average- and max-pooled descriptors through one shared MLP,
then a spatial gate from a 7x7 convolution over the channel-wise mean and max.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from senet.checks import check_positive
from senet.layers._common import (
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
)
from senet.layers.squeeze_excite import bottleneck_units


@keras.saving.register_keras_serializable(package="senet")
class CBAM(keras.layers.Layer):
    """CBAM: ``x' = x * Mc(x)``, then ``y = x' * Ms(x')``.

    ``Mc(x) = gate(MLP(avgpool(x)) + MLP(maxpool(x)))`` with one shared MLP
    ``C -> h -> C`` (``h = C // reduction``, ReLU), and
    ``Ms(x') = gate(conv_k([mean_c(x'); max_c(x')]))`` with a ``k^d`` kernel over the
    two maps (d = number of spatial dimensions). Parameters: ``2*C*h + h + C`` for the
    MLP (with biases, as the authors' code) and ``2*k^d + 1`` for the spatial conv
    (the authors follow it with BatchNorm; here it carries a bias instead, so the
    layer has no training-mode state).

    Args:
        reduction: MLP reduction ratio, default 16 (paper).
        kernel_size: Spatial kernel size, default 7 (paper).
        gate: Gate activation of both steps, default ``"sigmoid"``.
        activation: Hidden activation of the MLP, default ``"relu"``.
        data_format: ``"channels_last"`` or ``"channels_first"``.
        **kwargs: Base layer arguments.

    Input shape:
        Rank 3, 4 or 5, channels last or first.

    Output shape:
        Same as the input.

    Example:
        >>> import numpy as np
        >>> layer = CBAM(reduction=16)
        >>> layer(np.ones((2, 8, 8, 64), "float32")).shape
        (2, 8, 8, 64)
        >>> layer.count_params()  # (2*64*4 + 4 + 64) + (2*7*7 + 1)
        679
    """

    def __init__(
        self,
        reduction: float = 16,
        *,
        kernel_size: int = 7,
        gate="sigmoid",
        activation="relu",
        data_format: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.reduction = check_positive("reduction", reduction)
        self.kernel_size = check_positive("kernel_size", kernel_size, integer=True)
        self.gate = gate
        self.activation = activation
        self._gate_fn = check_activation("gate", gate)
        check_activation("activation", activation)
        self.data_format = resolve_data_format(data_format)
        self.supports_masking = True

    def build(self, input_shape):
        channels = check_input_shape(type(self).__name__, input_shape, self.data_format)
        self.channels = channels
        hidden = bottleneck_units(channels, self.reduction)
        dtype = self.dtype_policy.variable_dtype
        self.reduce = keras.layers.Dense(
            hidden, activation=self.activation, name="reduce", dtype=dtype
        )
        self.expand = keras.layers.Dense(channels, name="expand", dtype=dtype)
        self.reduce.build((None, channels))
        self.expand.build((None, hidden))
        spatial_dims = len(input_shape) - 2
        self.spatial_kernel = self.add_weight(
            name="spatial_kernel",
            shape=(self.kernel_size,) * spatial_dims + (2, 1),
            initializer="glorot_uniform",
            dtype=dtype,
            autocast=False,  # the spatial gate is computed in float32 under mixed precision
        )
        self.spatial_bias = self.add_weight(
            name="spatial_bias", shape=(), initializer="zeros", dtype=dtype, autocast=False
        )

    def excitation(self, inputs):
        """The channel gate ``Mc`` of shape ``(B, C)``."""
        if not self.built:
            self.build(tuple(inputs.shape))
        descriptors = [squeeze(inputs, mode, self.data_format) for mode in ("avg", "max")]
        return excite(
            descriptors,
            self.reduce,
            self.expand,
            self._gate_fn,
        )

    def spatial_excitation(self, inputs):
        """The spatial gate ``Ms``: the input's shape with one channel."""
        axis = channel_axis(self.data_format)
        x = ops.cast(inputs, self.spatial_kernel.dtype)
        descriptor = ops.concatenate(
            [ops.mean(x, axis=axis, keepdims=True), ops.max(x, axis=axis, keepdims=True)],
            axis=axis,
        )
        # The convolution runs channels_last whatever the layer's format: TensorFlow's CPU
        # Conv2D/Conv3D has no NCHW kernel without oneDNN (CPUs without AVX-512), and the
        # two-channel descriptor costs next to nothing to transpose.
        channels_first = self.data_format == "channels_first"
        if channels_first:
            descriptor = ops.moveaxis(descriptor, 1, -1)
        logits = ops.conv(
            descriptor, self.spatial_kernel, padding="same", data_format="channels_last"
        )
        if channels_first:
            logits = ops.moveaxis(logits, -1, 1)
        return self._gate_fn(logits + self.spatial_bias)

    def call(self, inputs):
        refined = scale(inputs, self.excitation(inputs), self.data_format)
        return refined * ops.cast(self.spatial_excitation(refined), inputs.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def flops(self, input_shape, output_shape=None, *, macs_only: bool = False) -> int:
        """FLOPs of one call on a concrete (batched) input shape. Channel gate: average and
        max pools, the shared MLP on both, their sum, the gate, the scale. Spatial gate: the
        mean and max across channels, the k^n convolution of two channels to one with its
        bias, the gate, the scale. With ``macs_only`` the MLP's and the convolution's
        multiply-accumulates alone."""
        batch, channels = int(input_shape[0]), int(input_shape[channel_axis(self.data_format)])
        hidden = bottleneck_units(channels, self.reduction)
        positions = elements(input_shape) // channels  # batch included
        window = self.kernel_size ** (len(input_shape) - 2)
        macs = batch * 2 * (2 * channels * hidden) + positions * 2 * window
        if macs_only:
            return macs
        channel_gate = 2 * elements(input_shape) + batch * mlp_flops(
            channels, hidden, use_bias=True, descriptors=2
        )
        spatial_gate = 2 * elements(input_shape) + positions * (2 * 2 * window + 2)
        return channel_gate + spatial_gate + 2 * elements(input_shape)  # ... and two scales

    def identity_init(self, gain: float, *, check_only: bool = False) -> None:
        """Start as ``y = gain * x``: each gate the constant ``sqrt(gain)`` (the MLP's last
        kernel and the spatial kernel zero; the channel gate sums the two descriptors'
        logits, so its bias is half the gate's inverse)."""
        if check_only:
            return
        half = math.sqrt(gain)
        constant_gate(self.expand.kernel, self.expand.bias, gate_bias(self._gate_fn, half) / 2)
        constant_gate(self.spatial_kernel, self.spatial_bias, gate_bias(self._gate_fn, half))

    def get_config(self):
        config = super().get_config()
        config.update(
            reduction=self.reduction,
            kernel_size=self.kernel_size,
            gate=serialize_option(self.gate),
            activation=serialize_option(self.activation),
            data_format=self.data_format,
        )
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**deserialize_options(config, ("gate", "activation")))
