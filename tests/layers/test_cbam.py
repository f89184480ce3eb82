"""CBAM against a NumPy reference: shared-MLP channel gate, then a k^d spatial gate."""

import keras
import numpy as np
import pytest
from layer_reference import cbam, sigmoid

from senet.layers import CBAM


def _randomize(layer, rng):
    layer.set_weights([rng.normal(scale=0.5, size=w.shape) for w in layer.get_weights()])


def _weights(layer):
    mlp = layer.reduce.get_weights() + layer.expand.get_weights()
    spatial = (
        keras.ops.convert_to_numpy(layer.spatial_kernel),
        keras.ops.convert_to_numpy(layer.spatial_bias),
    )
    return mlp, spatial


CBAM_CASES = [
    pytest.param({}, (2, 11, 32), id="k7-1d"),
    pytest.param({}, (2, 9, 8, 32), id="k7-2d"),  # the paper's 7x7, wider than half the map
    pytest.param({"reduction": 4, "kernel_size": 3}, (2, 4, 5, 3, 16), id="k3-3d"),
    pytest.param(
        {"gate": "hard_sigmoid", "activation": "swish", "kernel_size": 5},
        (2, 6, 6, 16),
        id="hsig-swish-2d",
    ),
]


@pytest.mark.parametrize("options,shape", CBAM_CASES)
def test_matches_numpy_reference(options, shape, rng):
    x = rng.normal(size=shape).astype("float32")
    layer = CBAM(**options)
    layer.build(shape)
    _randomize(layer, rng)
    mlp_weights, (kernel, bias) = _weights(layer)
    assert kernel.shape == (options.get("kernel_size", 7),) * (len(shape) - 2) + (2, 1)
    reference_options = {k: v for k, v in options.items() if k in ("gate", "activation")}

    expected = cbam(x.astype("float64"), mlp_weights, kernel, bias, **reference_options)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), expected, rtol=1e-5, atol=1e-5)


def test_excitation_and_spatial_excitation_compose_to_the_output(rng):
    x = rng.normal(size=(2, 6, 6, 16)).astype("float32")
    layer = CBAM(reduction=4, kernel_size=3)
    layer.build(x.shape)
    _randomize(layer, rng)
    channel = keras.ops.convert_to_numpy(layer.excitation(x))
    assert channel.shape == (2, 16)
    refined = x * channel[:, None, None, :]
    spatial = keras.ops.convert_to_numpy(layer.spatial_excitation(refined))
    assert spatial.shape == (2, 6, 6, 1)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer(x)), refined * spatial, rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize(
    "shape,options,hidden,kernel_size",
    [
        ((None, 8, 8, 64), {}, 4, 7),  # r=16, 7x7: the paper's defaults
        ((None, 8, 64), {"reduction": 8}, 8, 7),
        ((None, 4, 4, 4, 32), {"kernel_size": 3}, 2, 3),
        ((None, 8, 8, 8), {}, 1, 7),  # 8 // 16 = 0 -> 1 hidden unit
    ],
)
def test_parameter_count(shape, options, hidden, kernel_size):
    channels, spatial_dims = shape[-1], len(shape) - 2
    layer = CBAM(**options)
    layer.build(shape)
    expected = 2 * channels * hidden + hidden + channels + 2 * kernel_size**spatial_dims + 1
    assert layer.count_params() == expected


def test_gates_reach_both_ends():
    """Strong inputs drive both sigmoids to ~0 and ~1, which a doubled gate cannot do."""
    channels = 4
    layer = CBAM(reduction=1, kernel_size=3)
    x = np.zeros((1, 6, 6, channels), "float32")
    x[..., ::2] = 5.0
    layer.build(x.shape)
    eye = np.eye(channels, dtype="float32")
    # mlp(avg) + mlp(max) = 2 * (10 * relu(z) - 25): -50 for channels at 0, +50 at 5.
    layer.reduce.set_weights([eye, np.zeros(channels)])
    layer.expand.set_weights([10 * eye, np.full(channels, -25.0)])
    spatial_kernel = np.zeros((3, 3, 2, 1), "float32")
    spatial_kernel[1, 1, 0, 0] = 10.0  # centre tap on the channel mean
    layer.spatial_kernel.assign(spatial_kernel)
    layer.spatial_bias.assign(-12.0)

    channel = keras.ops.convert_to_numpy(layer.excitation(x))
    np.testing.assert_allclose(channel[0], [1.0, 0.0, 1.0, 0.0], atol=1e-6)
    # The refined map has channel mean 2.5 everywhere: logit 10 * 2.5 - 12 = 13.
    spatial = keras.ops.convert_to_numpy(layer.spatial_excitation(x * channel[:, None, None, :]))
    np.testing.assert_allclose(spatial, sigmoid(13.0), rtol=1e-6)
    assert spatial.min() > 1 - 1e-5
    dark = keras.ops.convert_to_numpy(layer.spatial_excitation(np.zeros_like(x)))
    np.testing.assert_allclose(dark, sigmoid(-12.0), rtol=1e-4)
    assert dark.max() < 1e-5
