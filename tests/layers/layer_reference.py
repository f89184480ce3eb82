"""NumPy references for the attention layers, written from the papers' formulas.

Nothing here imports senet: every function takes plain arrays (weights read with
``get_weights()``) and recomputes the layer in float64, channels_last.
"""

from __future__ import annotations

import itertools

import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# Keras 3 definitions: hard_sigmoid = clip(x / 6 + 1/2, 0, 1); swish = x * sigmoid(x);
# softsign = x / (1 + |x|).
ACTIVATIONS = {
    "sigmoid": sigmoid,
    "hard_sigmoid": lambda x: np.clip(x / 6.0 + 0.5, 0.0, 1.0),
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0.0),
    "swish": lambda x: x * sigmoid(x),
    "linear": lambda x: x,
    "softsign": lambda x: x / (1.0 + np.abs(x)),
}


def spatial_pool(x, mode):
    """Global pooling of a channels_last ``(B, *spatial, C)`` array to ``(B, C)``."""
    axes = tuple(range(1, x.ndim - 1))
    mean, peak = x.mean(axis=axes), x.max(axis=axes)
    return {"avg": mean, "max": peak, "avgmax": 0.5 * (mean + peak)}[mode]


def dense(z, kernel, bias=None):
    out = z @ kernel
    return out if bias is None else out + bias


def same_correlation(x, kernel):
    """'same' zero-padded cross-correlation, stride 1, odd kernel, any number of spatial dims.

    ``x``: ``(B, *spatial, C_in)``; ``kernel``: ``(*k, C_in, C_out)`` (the Keras layout).
    """
    sizes = kernel.shape[:-2]
    pads = [(0, 0)] + [(k // 2, k // 2) for k in sizes] + [(0, 0)]
    padded = np.pad(x, pads)
    spatial = x.shape[1:-1]
    out = np.zeros(x.shape[:-1] + (kernel.shape[-1],))
    for offset in itertools.product(*(range(k) for k in sizes)):
        window = padded[
            (slice(None),) + tuple(slice(o, o + n) for o, n in zip(offset, spatial, strict=True))
        ]
        out += window @ kernel[offset]
    return out


def squeeze_excite(x, weights, *, squeeze="avg", gate="sigmoid", activation="relu"):
    """SE: ``x * gate(W2 act(W1 pool(x) + b1) + b2)``; weights = get_weights() (2 or 4 arrays)."""
    gate_s = squeeze_excite_gate(x, weights, squeeze=squeeze, gate=gate, activation=activation)
    return x * gate_s.reshape(gate_s.shape[:1] + (1,) * (x.ndim - 2) + gate_s.shape[1:])


def squeeze_excite_gate(x, weights, *, squeeze="avg", gate="sigmoid", activation="relu"):
    if len(weights) == 4:
        w1, b1, w2, b2 = weights
    else:
        (w1, w2), b1, b2 = weights, None, None
    z = spatial_pool(x, squeeze)
    hidden = ACTIVATIONS[activation](dense(z, w1, b1))
    return ACTIVATIONS[gate](dense(hidden, w2, b2))


def eca_gate(x, kernel, *, squeeze="avg", gate="sigmoid"):
    """ECA: a k-tap 'same' correlation across the pooled channel vector; kernel ``(k, 1, 1)``."""
    z = spatial_pool(x, squeeze)[..., None]  # channels act as the length of a 1-D signal
    return ACTIVATIONS[gate](same_correlation(z, kernel)[..., 0])


def eca(x, kernel, *, squeeze="avg", gate="sigmoid"):
    s = eca_gate(x, kernel, squeeze=squeeze, gate=gate)
    return x * s.reshape(s.shape[:1] + (1,) * (x.ndim - 2) + s.shape[1:])


def spatial_gate(x, kernel, bias, *, gate="sigmoid"):
    """sSE gate: a 1x1 convolution C -> 1 then the gate; shape ``(B, *spatial, 1)``."""
    return ACTIVATIONS[gate](x @ kernel.reshape(-1, 1) + bias)


def spatial_squeeze_excite(x, kernel, bias, *, gate="sigmoid"):
    return x * spatial_gate(x, kernel, bias, gate=gate)


def cbam(x, mlp_weights, spatial_kernel, spatial_bias, *, gate="sigmoid", activation="relu"):
    """CBAM: ``x' = x * Mc(x)``, ``y = x' * Ms(x')`` (Woo et al., eq. 1-3)."""
    w1, b1, w2, b2 = mlp_weights

    def mlp(z):
        return dense(ACTIVATIONS[activation](dense(z, w1, b1)), w2, b2)

    channel = ACTIVATIONS[gate](mlp(spatial_pool(x, "avg")) + mlp(spatial_pool(x, "max")))
    refined = x * channel.reshape(channel.shape[:1] + (1,) * (x.ndim - 2) + channel.shape[1:])
    descriptor = np.concatenate(
        [refined.mean(axis=-1, keepdims=True), refined.max(axis=-1, keepdims=True)], axis=-1
    )
    spatial = ACTIVATIONS[gate](same_correlation(descriptor, spatial_kernel) + spatial_bias)
    return refined * spatial


def to_channels_first(x):
    return np.moveaxis(x, -1, 1)


def to_channels_last(x):
    return np.moveaxis(x, 1, -1)
