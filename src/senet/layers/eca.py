"""Efficient Channel Attention (ECA).

Wang, Wu, Zhu, Li, Zuo, Hu: "ECA-Net: Efficient Channel Attention for Deep
Convolutional Neural Networks" (CVPR 2020). SE without the bottleneck: the gate
comes from a 1-D convolution across the pooled channel vector, whose kernel size
grows with log2(C), so each channel attends to its k neighbours with k weights.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from senet.checks import check_choice, check_number, check_positive, fail
from senet.layers._common import (
    SQUEEZE_MODES,
    channel_axis,
    check_activation,
    check_input_shape,
    deserialize_options,
    elements,
    resolve_data_format,
    scale,
    serialize_option,
    squeeze,
    squeeze_flops,
)


def eca_kernel_size(channels: int, gamma: float = 2, b: float = 1) -> int:
    """ECA-Net's adaptive kernel size: ``|(log2 C + b) / gamma|`` made odd, at least 3."""
    t = int(abs((math.log2(channels) + b) / gamma))
    k = t if t % 2 else t + 1
    return max(3, k)


@keras.saving.register_keras_serializable(package="senet")
class EfficientChannelAttention(keras.layers.Layer):
    """ECA: ``y = x * gate(conv1d_k(pool(x)))`` with a k-tap convolution across channels.

    Adds ``k`` parameters (no bias), with ``k = eca_kernel_size(C, gamma, b)`` unless
    ``kernel_size`` is given: 3 for C=64, 5 for C=256 and C=512 (gamma=2, b=1).

    Args:
        kernel_size: Odd kernel size; ``None`` (default) picks it from C.
        gamma, b: Constants of the adaptive kernel size (paper: 2 and 1).
        squeeze: ``"avg"`` (default), ``"max"`` or ``"avgmax"``.
        gate: Gate activation, default ``"sigmoid"``.
        data_format: ``"channels_last"`` or ``"channels_first"``.
        kernel_initializer: Initializer of the 1-D kernel.
        **kwargs: Base layer arguments.

    Input shape:
        Rank 3, 4 or 5, channels last or first.

    Output shape:
        Same as the input.

    Example:
        >>> import numpy as np
        >>> layer = EfficientChannelAttention()
        >>> layer(np.ones((2, 8, 8, 256), "float32")).shape
        (2, 8, 8, 256)
        >>> layer.count_params()
        5
    """

    def __init__(
        self,
        kernel_size: int | None = None,
        *,
        gamma: float = 2,
        b: float = 1,
        squeeze: str = "avg",
        gate="sigmoid",
        data_format: str | None = None,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.kernel_size = check_positive("kernel_size", kernel_size, integer=True, allow_none=True)
        if self.kernel_size is not None and self.kernel_size % 2 == 0:
            # An even kernel would shift the gate off its channel.
            raise fail("kernel_size", "an odd positive integer or None", kernel_size)
        self.gamma = check_positive("gamma", gamma)
        self.b = check_number("b", b)
        self.squeeze = check_choice("squeeze", squeeze, SQUEEZE_MODES)
        self.gate = gate
        self._gate_fn = check_activation("gate", gate)
        self.data_format = resolve_data_format(data_format)
        self.kernel_initializer = kernel_initializer
        self.supports_masking = True

    def build(self, input_shape):
        channels = check_input_shape(type(self).__name__, input_shape, self.data_format)
        self.channels = channels
        self.kernel_size_ = self.kernel_size or eca_kernel_size(channels, self.gamma, self.b)
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.kernel_size_, 1, 1),
            initializer=self.kernel_initializer,
            dtype=self.dtype_policy.variable_dtype,
            autocast=False,  # the gate is computed in float32 under mixed precision
        )

    def excitation(self, inputs):
        """The gate ``s`` of shape ``(B, C)``."""
        if not self.built:
            self.build(tuple(inputs.shape))
        z = ops.cast(squeeze(inputs, self.squeeze, self.data_format), self.kernel.dtype)
        # Channels become the "time" axis of a 1-D convolution with one feature.
        z = ops.conv(
            ops.expand_dims(z, -1), self.kernel, padding="same", data_format="channels_last"
        )
        return self._gate_fn(ops.squeeze(z, -1))

    def call(self, inputs):
        return scale(inputs, self.excitation(inputs), self.data_format)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def flops(self, input_shape, output_shape=None, *, macs_only: bool = False) -> int:
        """FLOPs of one call on a concrete (batched) input shape: the squeeze, the 1-D
        convolution across channels (no bias), the gate and the scale; with ``macs_only``
        the convolution's multiply-accumulates alone."""
        batch, channels = int(input_shape[0]), int(input_shape[channel_axis(self.data_format)])
        kernel = self.kernel_size or eca_kernel_size(channels, self.gamma, self.b)
        if macs_only:
            return batch * channels * kernel
        squeezed = squeeze_flops(self.squeeze, input_shape, self.data_format)
        return squeezed + batch * (2 * channels * kernel + channels) + elements(input_shape)

    def identity_init(self, gain: float, *, check_only: bool = False) -> None:
        """ECA cannot start as a constant gain: its gate has no bias to hold."""
        raise ValueError("ECA has no bias, so its gate cannot start near 1")

    def get_config(self):
        config = super().get_config()
        config.update(
            kernel_size=self.kernel_size,
            gamma=self.gamma,
            b=self.b,
            squeeze=self.squeeze,
            data_format=self.data_format,
            gate=serialize_option(self.gate),
            kernel_initializer=serialize_option(self.kernel_initializer),
        )
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**deserialize_options(config, ("gate", "kernel_initializer")))


ECA = EfficientChannelAttention
