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

from senet.checks import check_choice, check_positive, fail
from senet.layers._common import (
    SQUEEZE_MODES,
    affine,
    check_activation,
    deserialize_options,
    excite,
    serialize_option,
    squeeze,
)

__all__ = ["IMPLEMENTATIONS", "SQUEEZE_SOURCES", "FusedSEResidual", "fused_tail", "scales_kernel"]

#: ``"ops"``: :func:`fused_tail` on the layer's variables (every backend). ``"tf"``: the
#: same function (TensorFlow only), which traces to the graph grappler's oneDNN fusions
#: take (conv + bias, matmul + bias + activation). ``"xla"``: the tail compiled by XLA as
#: one cluster (TensorFlow only). ``"auto"``: ``"tf"`` on TensorFlow, ``"ops"`` elsewhere;
#: a model saved with ``"auto"`` loads on every backend.
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
        self.units = check_positive("units", units, integer=True)
        self.squeeze_from = check_choice("squeeze_from", squeeze_from, SQUEEZE_SOURCES)
        self.squeeze = check_choice("squeeze", squeeze, SQUEEZE_MODES)
        if self.squeeze_from == "input" and (
            self.squeeze != "avg" or self.kernel_size != (1, 1) or self.strides != (1, 1)
        ):
            # The mean is linear; other pools, kernels and strides do not commute with it.
            raise fail(
                "squeeze_from",
                "'output' unless the convolution is 1x1 with stride 1 and squeeze='avg' "
                f"(kernel_size={self.kernel_size}, strides={self.strides}, "
                f"squeeze={self.squeeze!r})",
                squeeze_from,
            )
        self.gate = gate
        self.activation = activation
        self._gate_fn = check_activation("gate", gate)
        self._activation_fn = check_activation("activation", activation)
        self.excite = bool(excite)
        self.implementation = check_choice("implementation", implementation, IMPLEMENTATIONS)
        # Early, so loading a "tf"/"xla" model on JAX or PyTorch says why it cannot run.
        _check_backend(self.implementation)

    def build(self, input_shape):
        if not isinstance(input_shape, list | tuple) or len(input_shape) != 2:
            raise fail("input_shape", "two shapes, of [h, shortcut]", input_shape)
        h_shape, shortcut_shape = (tuple(shape) for shape in input_shape)
        if len(h_shape) != 4 or h_shape[-1] is None or shortcut_shape[-1] is None:
            raise fail(
                "input_shape", "rank-4 channels_last shapes with known channels", input_shape
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
        implementation = _check_backend(self.implementation)
        weights = self._weight_tensors()
        if implementation == "xla":
            import tensorflow as tf

            # tf.Tensor reads: inside an outer tf.function, the XLA function's tracing
            # cannot take Keras' variable wrappers (it asks them for a NumPy value).
            weights = [tf.convert_to_tensor(w) for w in weights]
            return _xla_tail(self._static_options())(h, shortcut, *weights)
        return fused_tail(h, shortcut, *weights, **self._static_options())

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
            squeeze_mode=self.squeeze,
            gate=self._gate_fn,
            activation=self._activation_fn,
        )

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


def _pair(argument: str, value) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair
    ):
        raise fail(argument, "a positive int or a pair of them", value)
    return pair


def _check_backend(implementation: str) -> str:
    """The implementation to run on this backend (``"auto"`` resolved), or a clear error."""
    backend = keras.backend.backend()
    if implementation == "auto":
        return "tf" if backend == "tensorflow" else "ops"
    if implementation in ("tf", "xla") and backend != "tensorflow":
        raise fail(
            "implementation",
            f"'auto' or 'ops' on the {backend!r} backend ({implementation!r} compiles "
            "TensorFlow graphs and needs KERAS_BACKEND=tensorflow; re-fuse the model with "
            "implementation='auto' to run it here)",
            implementation,
        )
    return implementation


def fused_tail(
    h,
    shortcut,
    kernel,
    bias,
    *excitation,
    strides,
    padding: str,
    squeeze_from: str | None,
    squeeze_mode: str,
    gate,
    activation,
):
    """``relu(shortcut + s * (conv(h, kernel) + bias))`` with the SE gate ``s``: the tail.

    The SE part is the layers' own :func:`~senet.layers._common.squeeze` and
    :func:`~senet.layers._common.excite`; what differs from ``SqueezeExcite`` is only where
    the squeeze comes from (``h``, whose mean the reduce kernel turns into the mean of
    the output, or the output ``u``) and where the scale is applied (on ``u``, with the
    shortcut and the ReLU right behind it). ``squeeze_from=None``: no SE.

    Written in ``keras.ops``, which on TensorFlow trace to exactly the graph grappler's
    oneDNN remapper fuses: ``Conv2D`` + ``BiasAdd`` into one ``_FusedConv2D``, each MLP
    layer's ``MatMul`` + ``BiasAdd`` + activation into one ``_FusedMatMul``, the scale one
    broadcast ``Mul`` of a reshaped ``(B, 1, 1, C)`` gate.

    One exception, :func:`scales_kernel`: with one sample (a static batch of 1) and a
    squeeze from the input, ``s * (conv(h, K) + b) = conv(h, K * s) + b * s``, and where
    the kernel has fewer elements than the output, scaling the kernel is the smaller
    pass: the convolution's output goes straight to the shortcut and the ReLU, as in the
    plain folded unit, and the full-size ``Mul`` is gone (SE-ResNet-50 at batch 1: +7.9%
    over the plain folded model against +9.5% with the ``Mul``, 200 interleaved rounds).
    With more samples a per-sample kernel is a batched product that loses the oneDNN
    convolution, so the scale stays a ``Mul`` there.
    """
    if squeeze_from is None:
        u = ops.add(
            ops.conv(h, kernel, strides=strides, padding=padding, data_format="channels_last"), bias
        )
        return ops.relu(u + shortcut)
    reduce_kernel, reduce_bias, expand_kernel, expand_bias = excitation
    mlp = (affine(reduce_kernel, reduce_bias, activation), affine(expand_kernel, expand_bias))
    if scales_kernel(h.shape, kernel.shape, squeeze_from):
        s = excite(squeeze(h, squeeze_mode, "channels_last"), *mlp, gate)[0]
        u = ops.conv(h, kernel * s, strides=strides, padding=padding, data_format="channels_last")
        return ops.relu(ops.add(u, bias * s) + shortcut)
    u = ops.add(
        ops.conv(h, kernel, strides=strides, padding=padding, data_format="channels_last"), bias
    )
    source = h if squeeze_from == "input" else u
    s = excite(squeeze(source, squeeze_mode, "channels_last"), *mlp, gate)
    s = ops.reshape(s, (-1, 1, 1, s.shape[-1]))
    return ops.relu(u * s + shortcut)


def scales_kernel(h_shape, kernel_shape, squeeze_from) -> bool:
    """Whether :func:`fused_tail` applies the SE scale to the kernel instead of the output.

    The rule, fixed from the sizes alone: a squeeze from the input (so the gate does not
    depend on the convolution's output), a batch known to be 1 when the graph is built,
    and a kernel with fewer elements than the output it scales (``kh * kw * C_in <
    H' * W'``, per output channel). In SE-ResNet-50 at 224x224 that is the tails of
    stages 2 and 3 (56x56 and 28x28 maps, 64- and 128-channel inputs), not those of
    stages 4 and 5, whose kernels outweigh their 14x14 and 7x7 maps.
    """
    if squeeze_from != "input" or h_shape[0] != 1 or None in h_shape[1:3]:
        return False
    # A squeeze from the input means a 1x1 stride-1 convolution: the output has h's pixels.
    return math.prod(kernel_shape[:3]) < h_shape[1] * h_shape[2]


@functools.cache
def _xla_tail_cached(strides, padding, squeeze_from, squeeze_mode, gate, activation):
    import tensorflow as tf

    def tail(h, shortcut, *weights):
        return fused_tail(
            h,
            shortcut,
            *weights,
            strides=strides,
            padding=padding,
            squeeze_from=squeeze_from,
            squeeze_mode=squeeze_mode,
            gate=gate,
            activation=activation,
        )

    return tf.function(tail, jit_compile=True)


def _xla_tail(options: dict):
    """One XLA-compiled function per tail configuration, shared by the layers that use it."""
    return _xla_tail_cached(**options)
