"""Spatial SE (sSE) and concurrent spatial and channel SE (scSE).

Roy, Navab, Wachinger: "Concurrent Spatial and Channel 'Squeeze & Excitation' in
Fully Convolutional Networks" (MICCAI 2018). sSE squeezes channels instead of
space: a 1x1 convolution to one map and a sigmoid say *where* to look; scSE adds
the channel (cSE = SE) and spatial recalibrations: ``x*cSE(x) + x*sSE(x)``.
"""

from __future__ import annotations

import keras
from keras import ops

from senet.layers._common import (
    channel_axis,
    check_activation,
    check_input_shape,
    constant_gate,
    deserialize_options,
    elements,
    gate_bias,
    resolve_data_format,
    serialize_option,
)
from senet.layers.squeeze_excite import SqueezeExcite


@keras.saving.register_keras_serializable(package="senet")
class SpatialSqueezeExcite(keras.layers.Layer):
    """sSE: ``y = x * gate(conv1x1(x))``, one gate value per position shared by all channels.

    Adds ``C + 1`` parameters (a 1x1 convolution from C channels to 1, with bias).

    Args:
        gate: Gate activation, default ``"sigmoid"``.
        data_format: ``"channels_last"`` or ``"channels_first"``.
        kernel_initializer, bias_initializer: Of the 1x1 convolution.
        **kwargs: Base layer arguments.

    Input shape:
        Rank 3, 4 or 5, channels last or first.

    Output shape:
        Same as the input.

    Example:
        >>> import numpy as np
        >>> layer = SpatialSqueezeExcite()
        >>> layer(np.ones((2, 8, 8, 16), "float32")).shape
        (2, 8, 8, 16)
        >>> layer.count_params()
        17
    """

    def __init__(
        self,
        *,
        gate="sigmoid",
        data_format: str | None = None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.gate = gate
        self._gate_fn = check_activation("gate", gate)
        self.data_format = resolve_data_format(data_format)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer
        self.supports_masking = True

    def build(self, input_shape):
        channels = check_input_shape(type(self).__name__, input_shape, self.data_format)
        self.channels = channels
        # autocast=False: the gate is computed in the variable dtype (see spatial_excitation).
        self.kernel = self.add_weight(
            name="kernel",
            shape=(channels,),
            initializer=self.kernel_initializer,
            dtype=self.dtype_policy.variable_dtype,
            autocast=False,
        )
        self.bias = self.add_weight(
            name="bias",
            shape=(),
            initializer=self.bias_initializer,
            dtype=self.dtype_policy.variable_dtype,
            autocast=False,
        )

    def spatial_excitation(self, inputs):
        """The spatial gate (in the variable dtype): the input's shape with one channel."""
        if not self.built:
            self.build(tuple(inputs.shape))
        axis = channel_axis(self.data_format) % len(inputs.shape)
        # The gate is computed in the variable dtype (float32 under mixed precision), as
        # SE's: in float16 the logits of activations above ~3e4 overflow to inf, which a
        # bias or a gate other than sigmoid (softsign: inf/inf) turns into a wrong gate.
        x = ops.cast(inputs, self.kernel.dtype)
        # A 1x1 convolution to one channel is a contraction over the channel axis.
        logits = ops.tensordot(x, self.kernel, axes=[[axis], [0]]) + self.bias
        return ops.expand_dims(self._gate_fn(logits), axis)

    def call(self, inputs):
        return inputs * ops.cast(self.spatial_excitation(inputs), inputs.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def flops(self, input_shape, output_shape=None, *, macs_only: bool = False) -> int:
        """FLOPs of one call on a concrete (batched) input shape: the 1x1 convolution to one
        channel with its bias, the gate and the scale; with ``macs_only`` the convolution's
        multiply-accumulates alone."""
        channels = int(input_shape[channel_axis(self.data_format)])
        positions = elements(input_shape) // channels  # batch included
        if macs_only:
            return positions * channels
        return 2 * positions * channels + 2 * positions + elements(input_shape)

    def identity_init(self, gain: float, *, check_only: bool = False) -> None:
        """Start as ``y = gain * x``: the kernel zero, the bias ``gate^-1(gain)``."""
        if not check_only:
            constant_gate(self.kernel, self.bias, gate_bias(self._gate_fn, gain))

    def get_config(self):
        config = super().get_config()
        config.update(
            gate=serialize_option(self.gate),
            data_format=self.data_format,
            kernel_initializer=serialize_option(self.kernel_initializer),
            bias_initializer=serialize_option(self.bias_initializer),
        )
        return config

    @classmethod
    def from_config(cls, config):
        keys = ("gate", "kernel_initializer", "bias_initializer")
        return cls(**deserialize_options(config, keys))


@keras.saving.register_keras_serializable(package="senet")
class ChannelSpatialSqueezeExcite(keras.layers.Layer):
    """scSE: ``y = x * cSE(x) + x * sSE(x)`` (Roy et al.'s addition of both recalibrations).

    Adds ``2*C*h + h + C`` (cSE, an SE block with ``h = C // reduction``) plus
    ``C + 1`` (sSE) parameters.

    Args:
        reduction: Reduction ratio of the channel branch; default 2 as in Roy et al.
        squeeze: Squeeze of the channel branch (``"avg"``, ``"max"``, ``"avgmax"``).
        gate: Gate activation of both branches, default ``"sigmoid"``.
        activation: Hidden activation of the channel branch, default ``"relu"``.
        data_format: ``"channels_last"`` or ``"channels_first"``.
        **kwargs: Base layer arguments.

    Input shape:
        Rank 3, 4 or 5, channels last or first.

    Output shape:
        Same as the input.

    Example:
        >>> import numpy as np
        >>> layer = ChannelSpatialSqueezeExcite(reduction=2)
        >>> layer(np.ones((2, 8, 8, 16), "float32")).shape
        (2, 8, 8, 16)
        >>> layer.count_params()  # (2*16*8 + 8 + 16) + (16 + 1)
        297
    """

    def __init__(
        self,
        reduction: float = 2,
        *,
        squeeze: str = "avg",
        gate="sigmoid",
        activation="relu",
        data_format: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.reduction = reduction
        self.squeeze = squeeze
        self.gate = gate
        self.activation = activation
        self.data_format = resolve_data_format(data_format)
        # Sub-layers are made here so invalid options fail at construction.
        self.channel = SqueezeExcite(
            reduction,
            squeeze=squeeze,
            gate=gate,
            activation=activation,
            data_format=self.data_format,
            dtype=self.dtype_policy,
            name="channel",
        )
        self.spatial = SpatialSqueezeExcite(
            gate=gate, data_format=self.data_format, dtype=self.dtype_policy, name="spatial"
        )
        self.supports_masking = True

    def build(self, input_shape):
        check_input_shape(type(self).__name__, input_shape, self.data_format)
        self.channel.build(input_shape)
        self.spatial.build(input_shape)

    def excitation(self, inputs):
        """The channel gate ``(B, C)`` of the cSE branch."""
        return self.channel.excitation(inputs)

    def call(self, inputs):
        return self.channel(inputs) + self.spatial(inputs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def flops(self, input_shape, output_shape=None, *, macs_only: bool = False) -> int:
        """FLOPs of one call: the cSE and sSE branches and their sum."""
        branches = self.channel.flops(input_shape, macs_only=macs_only)
        branches += self.spatial.flops(input_shape, macs_only=macs_only)
        return branches if macs_only else branches + elements(input_shape)

    def identity_init(self, gain: float, *, check_only: bool = False) -> None:
        """Start as ``y = x``: ``x*cSE + x*sSE`` with two constant gates of 0.5 (``gain``
        is not used: the sum of the branches is the identity)."""
        self.channel.identity_init(0.5, check_only=True)
        if not check_only:
            self.channel.identity_init(0.5)
            self.spatial.identity_init(0.5)

    def get_config(self):
        config = super().get_config()
        config.update(
            reduction=self.reduction,
            squeeze=self.squeeze,
            gate=serialize_option(self.gate),
            activation=serialize_option(self.activation),
            data_format=self.data_format,
        )
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**deserialize_options(config, ("gate", "activation")))
