"""FusedSEResidual: the tail of an SE residual unit fused into one inference layer.

A residual unit with SE in the "standard" placement ends in
``conv -> BN -> SE -> Add(shortcut) -> ReLU``. At inference BN is the per-channel affine
``a * u + b``, so the whole tail is

    y = relu(shortcut + s * (conv(h, K * a) + b'))    with    s = gate(MLP(mean(u)))

and this layer computes it in one call: BN folded into the convolution, the squeeze taken
from the narrow input ``h`` of a 1x1 convolution where the mean is linear (or pooled from
the output otherwise), the SE excitation, then the scale, the shortcut and the ReLU.
:func:`senet.models.fuse_se` builds these layers from a trained model. It lives in
``senet.layers`` so that ``import senet.layers`` (and so ``senet.load_model``) registers
it, like every other layer senet saves.
"""

from __future__ import annotations

import functools
import math

import keras
from keras import ops

from senet.layers._common import (
    SQUEEZE_MODES,
    check_activation,
    check_choice,
    deserialize_options,
    serialize_option,
)

__all__ = ["IMPLEMENTATIONS", "SQUEEZE_SOURCES", "FusedSEResidual"]

#: ``"ops"``: ``keras.ops`` (every backend). ``"tf"``: the same arithmetic in raw
#: TensorFlow ops, arranged for grappler's oneDNN fusions (conv + bias, matmul + bias +
#: activation). ``"xla"``: the tail compiled by XLA as one cluster (TensorFlow only).
#: ``"auto"``: the fastest measured on the backend: ``"tf"`` on TensorFlow, ``"ops"`` else.
IMPLEMENTATIONS = ("auto", "ops", "tf", "xla")
SQUEEZE_SOURCES = ("input", "output")
_OBJECT_OPTIONS = ("gate", "activation")


@keras.saving.register_keras_serializable(package="senet")
class FusedSEResidual(keras.layers.Layer):
    """The tail of a residual unit with SE, fused for inference.

    Takes ``[h, shortcut]``: ``h`` is the input of the unit's last convolution and
    ``shortcut`` the identity (or projection) path, and computes

        u = conv(h, kernel) + bias                (the convolution with BN folded in)
        z = mean(h)  if squeeze_from == "input"   (1x1 stride-1 conv: the mean is linear)
            pool(u)  if squeeze_from == "output"
        s = gate(expand(activation(reduce(z))))   (the SE excitation, shape (B, C))
        y = relu(shortcut + s * u)

    With ``squeeze_from="input"`` the ``reduce`` kernel has absorbed the convolution:
    ``reduce_kernel = kernel @ W1`` and ``reduce_bias = bias @ W1 + b1``. With
    ``excite=False`` there is no SE (``y = relu(shortcut + u)``), which folds BN into
    the plain units of a network the same way, for a like-for-like baseline.

    Built by :func:`fuse_se` from a trained model; its weights are not trainable and
    calling it with ``training=True`` raises a ``RuntimeError``.

    Args:
        kernel_size: Size of the convolution, ``(kh, kw)`` or an int.
        strides: Strides of the convolution.
        padding: ``"valid"`` or ``"same"``.
        units: Width of the excitation MLP's hidden layer (ignored if not ``excite``).
        squeeze_from: ``"input"`` (only for a 1x1 stride-1 convolution and ``"avg"``
            squeeze) or ``"output"``.
        squeeze: ``"avg"``, ``"max"`` or ``"avgmax"`` (``"input"`` needs ``"avg"``).
        gate: The gate activation (default ``"sigmoid"``).
        activation: The MLP's hidden activation (default ``"relu"``).
        excite: Whether there is an SE excitation at all.
        implementation: One of ``IMPLEMENTATIONS``.
        **kwargs: Base layer arguments (``name``, ``dtype``).

    Input shape:
        ``[h, shortcut]``: ``(B, H, W, C_in)`` and ``(B, H', W', C)`` (channels_last), where
        ``(H', W')`` is the convolution's output size.

    Output shape:
        ``(B, H', W', C)``.

    Example:
        >>> import numpy as np
        >>> layer = FusedSEResidual(units=4, squeeze_from="input")
        >>> h, shortcut = np.ones((2, 7, 7, 16), "float32"), np.ones((2, 7, 7, 64), "float32")
        >>> layer([h, shortcut]).shape
        (2, 7, 7, 64)
    """

    def __init__(
        self,
        kernel_size=1,
        strides=1,
        padding: str = "valid",
        units: int = 1,
        squeeze_from: str = "input",
        squeeze: str = "avg",
        gate="sigmoid",
        activation="relu",
        excite: bool = True,
        implementation: str = "auto",
        **kwargs,
    ):
        kwargs["trainable"] = False
        super().__init__(**kwargs)
        self.kernel_size = _pair("kernel_size", kernel_size)
        self.strides = _pair("strides", strides)
        self.padding = check_choice("padding", padding, ("valid", "same"))
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ValueError(
                f"Expected `units` to be a positive integer. Received: units={units!r}"
            )
        self.units = units
        self.squeeze_from = check_choice("squeeze_from", squeeze_from, SQUEEZE_SOURCES)
        self.squeeze = check_choice("squeeze", squeeze, SQUEEZE_MODES)
        if squeeze_from == "input" and (
            squeeze != "avg" or self.kernel_size != (1, 1) or self.strides != (1, 1)
        ):
            raise ValueError(
                "`squeeze_from='input'` needs a 1x1 stride-1 convolution and squeeze='avg' "
                "(the mean is linear; other pools and strides are not). Received: "
                f"kernel_size={self.kernel_size}, strides={self.strides}, squeeze={squeeze!r}"
            )
        self.gate = gate
        self.activation = activation
        self._gate_fn = check_activation("gate", gate)
        self._activation_fn = check_activation("activation", activation)
        self.excite = bool(excite)
        self.implementation = check_choice("implementation", implementation, IMPLEMENTATIONS)

    def build(self, input_shape):
        if not isinstance(input_shape, list | tuple) or len(input_shape) != 2:
            raise ValueError(
                "FusedSEResidual takes two inputs [h, shortcut]. "
                f"Received: input_shape={input_shape}"
            )
        h_shape, shortcut_shape = (tuple(shape) for shape in input_shape)
        if len(h_shape) != 4 or h_shape[-1] is None or shortcut_shape[-1] is None:
            raise ValueError(
                "FusedSEResidual needs rank-4 channels_last inputs with known channels. "
                f"Received: input_shape={input_shape}"
            )
        in_channels, channels = int(h_shape[-1]), int(shortcut_shape[-1])
        zeros = keras.initializers.Zeros()
        self.kernel = self.add_weight(
            shape=(*self.kernel_size, in_channels, channels),
            initializer="glorot_uniform",
            name="kernel",
            trainable=False,
        )
        self.bias = self.add_weight(
            shape=(channels,), initializer=zeros, name="bias", trainable=False
        )
        if self.excite:
            squeezed = in_channels if self.squeeze_from == "input" else channels
            self.reduce_kernel = self.add_weight(
                shape=(squeezed, self.units),
                initializer="glorot_uniform",
                name="reduce_kernel",
                trainable=False,
            )
            self.reduce_bias = self.add_weight(
                shape=(self.units,), initializer=zeros, name="reduce_bias", trainable=False
            )
            self.expand_kernel = self.add_weight(
                shape=(self.units, channels),
                initializer="glorot_uniform",
                name="expand_kernel",
                trainable=False,
            )
            self.expand_bias = self.add_weight(
                shape=(channels,), initializer=zeros, name="expand_bias", trainable=False
            )

    # --------------------------------------------------------------------- call

    def call(self, inputs, training=None):
        if training:
            raise RuntimeError(
                f"{self.name}: FusedSEResidual is inference-only (batch norm is folded into "
                "its weights). Train the unfused model and call fuse_se() again."
            )
        h, shortcut = inputs
        implementation = self.implementation
        if implementation == "auto":
            implementation = "tf" if keras.backend.backend() == "tensorflow" else "ops"
        if implementation in ("tf", "xla") and keras.backend.backend() != "tensorflow":
            raise ValueError(
                f"implementation={implementation!r} needs the TensorFlow backend; this is "
                f"{keras.backend.backend()!r}. Use 'auto' or 'ops'."
            )
        if implementation == "ops":
            return self._call_ops(h, shortcut)
        import tensorflow as tf

        # Plain tensors (variable reads), which the XLA function's tracing accepts.
        weights = [tf.convert_to_tensor(w) for w in self._weight_tensors()]
        if implementation == "xla":
            return _xla_tail(self._static_options())(h, shortcut, *weights)
        return _tf_tail(h, shortcut, *weights, **self._static_options())

    def _weight_tensors(self):
        names = ("kernel", "bias")
        if self.excite:
            names += ("reduce_kernel", "reduce_bias", "expand_kernel", "expand_bias")
        return [ops.convert_to_tensor(getattr(self, name)) for name in names]

    def _static_options(self):
        return dict(
            strides=self.strides,
            padding=self.padding,
            squeeze_from=self.squeeze_from if self.excite else None,
            squeeze=self.squeeze,
            gate=self._gate_fn,
            activation=self._activation_fn,
        )

    def _call_ops(self, h, shortcut):
        u = ops.conv(h, self.kernel, strides=self.strides, padding=self.padding) + self.bias
        if not self.excite:
            return ops.relu(shortcut + u)
        # The mean of the narrow input, or SE's own pool of the output.
        z = ops.mean(h, axis=(1, 2)) if self.squeeze_from == "input" else _pool(u, self.squeeze)
        hidden = self._activation_fn(ops.matmul(z, self.reduce_kernel) + self.reduce_bias)
        s = self._gate_fn(ops.matmul(hidden, self.expand_kernel) + self.expand_bias)
        return ops.relu(shortcut + u * s[:, None, None, :])

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[1])

    def flops(self, input_shapes, output_shape, *, macs_only: bool = False) -> int:
        """FLOPs of one call with concrete shapes, in :func:`senet.bench.count_flops`' convention."""
        (batch, *_, in_channels), out = input_shapes[0], output_shape
        channels = out[-1]
        out_elems = math.prod(out)
        conv_macs = out_elems * math.prod(self.kernel_size) * in_channels
        mlp_macs = 0
        if self.excite:
            mlp_macs = batch * self.units * (self.reduce_kernel.shape[0] + channels)
        if macs_only:
            return conv_macs + mlp_macs
        flops = 2 * conv_macs + out_elems  # convolution and bias
        flops += 2 * out_elems  # add shortcut, ReLU
        if self.excite:
            pooled = math.prod(input_shapes[0]) if self.squeeze_from == "input" else out_elems
            pools = 2 if self.squeeze == "avgmax" else 1
            flops += pools * pooled + 2 * mlp_macs + 2 * batch * (self.units + channels)
            flops += out_elems  # the scale
        return int(flops)

    def get_config(self):
        config = super().get_config()
        config.pop("trainable", None)
        config.update(
            kernel_size=self.kernel_size,
            strides=self.strides,
            padding=self.padding,
            units=self.units,
            squeeze_from=self.squeeze_from,
            squeeze=self.squeeze,
            excite=self.excite,
            implementation=self.implementation,
            **{key: serialize_option(getattr(self, key)) for key in _OBJECT_OPTIONS},
        )
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**deserialize_options(config, _OBJECT_OPTIONS))


def _pair(argument, value) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair
    ):
        raise ValueError(
            f"Expected `{argument}` to be a positive int or a pair of them. "
            f"Received: {argument}={value!r}"
        )
    return pair


def _pool(x, mode: str):
    if mode == "avg":
        return ops.mean(x, axis=(1, 2))
    if mode == "max":
        return ops.max(x, axis=(1, 2))
    return 0.5 * (ops.mean(x, axis=(1, 2)) + ops.max(x, axis=(1, 2)))


# ------------------------------------------------------------------- TensorFlow paths


def _tf_tail(
    h,
    shortcut,
    kernel,
    bias,
    *excitation,
    strides,
    padding,
    squeeze_from,
    squeeze,
    gate,
    activation,
):
    """The tail in raw TF ops, shaped for grappler's oneDNN fusions.

    conv + bias becomes one ``_FusedConv2D``; each MLP layer one ``_FusedMatMul`` with its
    bias and activation; the scale stays one broadcast multiply (no expand_dims/cast
    chains). Folding ``s`` into a per-sample kernel was slower: a kernel computed at run
    time loses the conv + bias fusion.
    """
    import tensorflow as tf

    u = tf.nn.bias_add(tf.nn.conv2d(h, kernel, strides=strides, padding=padding.upper()), bias)
    if squeeze_from is None:
        return tf.nn.relu(u + shortcut)
    reduce_kernel, reduce_bias, expand_kernel, expand_bias = excitation
    if squeeze_from == "input":
        z = tf.reduce_mean(h, axis=(1, 2))
    elif squeeze == "avg":
        z = tf.reduce_mean(u, axis=(1, 2))
    elif squeeze == "max":
        z = tf.reduce_max(u, axis=(1, 2))
    else:
        z = 0.5 * (tf.reduce_mean(u, axis=(1, 2)) + tf.reduce_max(u, axis=(1, 2)))
    hidden = activation(tf.nn.bias_add(tf.matmul(z, reduce_kernel), reduce_bias))
    s = gate(tf.nn.bias_add(tf.matmul(hidden, expand_kernel), expand_bias))
    s = tf.reshape(s, (-1, 1, 1, s.shape[-1]))
    return tf.nn.relu(u * s + shortcut)


@functools.cache
def _xla_tail_cached(strides, padding, squeeze_from, squeeze, gate, activation):
    import tensorflow as tf

    def tail(h, shortcut, *weights):
        return _tf_tail(
            h,
            shortcut,
            *weights,
            strides=strides,
            padding=padding,
            squeeze_from=squeeze_from,
            squeeze=squeeze,
            gate=gate,
            activation=activation,
        )

    return tf.function(tail, jit_compile=True)


def _xla_tail(options: dict):
    """One XLA-compiled function per tail configuration, shared by the layers that use it."""
    return _xla_tail_cached(**options)
