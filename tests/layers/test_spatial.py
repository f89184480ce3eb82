"""sSE and scSE against NumPy references (Roy et al.: scSE = x*cSE(x) + x*sSE(x))."""

import keras
import numpy as np
import pytest
from layer_reference import (
    spatial_gate,
    spatial_squeeze_excite,
    squeeze_excite,
    squeeze_excite_gate,
)

from senet.layers import ChannelSpatialSqueezeExcite, SpatialSqueezeExcite


def _randomize(layer, rng):
    layer.set_weights([rng.normal(scale=0.5, size=w.shape) for w in layer.get_weights()])


@pytest.mark.parametrize(
    "gate,shape",
    [("sigmoid", (2, 9, 8)), ("sigmoid", (2, 5, 4, 8)), ("tanh", (2, 3, 4, 2, 8))],
    ids=["1d", "2d", "3d-tanh"],
)
def test_sse_matches_numpy_reference(gate, shape, rng):
    x = rng.normal(size=shape).astype("float32")
    layer = SpatialSqueezeExcite(gate=gate)
    layer.build(shape)
    _randomize(layer, rng)
    kernel, bias = layer.get_weights()
    expected_gate = spatial_gate(x.astype("float64"), kernel, bias, gate=gate)

    got_gate = keras.ops.convert_to_numpy(layer.spatial_excitation(x))
    assert got_gate.shape == shape[:-1] + (1,)
    np.testing.assert_allclose(got_gate, expected_gate, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer(x)),
        spatial_squeeze_excite(x.astype("float64"), kernel, bias, gate=gate),
        rtol=1e-5,
        atol=1e-6,
    )


def test_sse_parameter_count():
    layer = SpatialSqueezeExcite()
    layer.build((None, 6, 6, 48))
    assert layer.count_params() == 48 + 1


def test_sse_sigmoid_gate_reaches_both_ends():
    layer = SpatialSqueezeExcite()
    x = np.zeros((1, 4, 4, 3), "float32")
    x[:, :2, :, 0], x[:, 2:, :, 0] = 3.0, -3.0
    layer.build(x.shape)
    layer.set_weights([np.array([10.0, 0.0, 0.0]), np.array(0.0)])
    gate = keras.ops.convert_to_numpy(layer.spatial_excitation(x))
    assert gate.min() < 1e-3 and gate.max() > 1 - 1e-3


SCSE_CASES = [
    pytest.param({}, (2, 9, 8), id="defaults-1d"),  # r=2 (Roy et al.)
    pytest.param({"reduction": 4, "squeeze": "avgmax"}, (2, 5, 4, 8), id="r4-avgmax-2d"),
    pytest.param({"gate": "hard_sigmoid", "activation": "swish"}, (2, 3, 2, 4, 8), id="hsig-3d"),
]


@pytest.mark.parametrize("options,shape", SCSE_CASES)
def test_scse_matches_numpy_reference(options, shape, rng):
    x = rng.normal(size=shape).astype("float32")
    layer = ChannelSpatialSqueezeExcite(**options)
    layer.build(shape)
    _randomize(layer, rng)
    se_options = {k: v for k, v in options.items() if k in ("squeeze", "gate", "activation")}
    se_weights = layer.channel.get_weights()
    kernel, bias = layer.spatial.get_weights()
    x64 = x.astype("float64")
    expected = squeeze_excite(x64, se_weights, **se_options) + spatial_squeeze_excite(
        x64, kernel, bias, gate=options.get("gate", "sigmoid")
    )

    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer.excitation(x)),
        squeeze_excite_gate(x64, se_weights, **se_options),
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.parametrize("reduction,hidden", [(2, 16), (4, 8), (64, 1)])
def test_scse_parameter_count(reduction, hidden):
    channels = 32
    layer = ChannelSpatialSqueezeExcite(reduction=reduction)
    layer.build((None, 5, 5, channels))
    se = 2 * channels * hidden + hidden + channels
    assert layer.count_params() == se + channels + 1
    assert layer.channel.count_params() == se
    assert (layer.channel.reduce.units, layer.channel.expand.units) == (hidden, channels)


def _large_float16_case(kind, rng):
    """Activations of 2e4-6e4 whose spatial logits (|x . w| > 1e5) overflow float16.

    The gate is softsign, which saturates slowly: the float16 logits' inf gave
    softsign(inf) = inf/inf = NaN, and a large bias would have been lost in the inf too.
    scSE adds two gated copies of ``x``, so its activations stay below 65504 / 2.
    """
    top = 6e4 if kind == "sse" else 3e4
    signs = rng.choice([-1.0, 1.0], size=(2, 3, 4, 8))
    x = (signs * rng.uniform(top / 3, top, size=signs.shape)).astype("float16")
    kernel = rng.choice([-3.0, 3.0], size=8)
    x64 = x.astype("float64")
    with np.errstate(over="ignore"):
        logits = (x.astype("float16") @ kernel.astype("float16")).astype("float64")
    assert np.isinf(logits).any()  # float16 logits overflow here
    return x, x64, kernel


@pytest.mark.parametrize("kind", ["sse", "scse"])
def test_float16_gates_of_large_activations_are_computed_in_float32(kind, rng):
    x, x64, kernel = _large_float16_case(kind, rng)
    keras.config.set_dtype_policy("mixed_float16")
    if kind == "sse":
        layer, spatial = SpatialSqueezeExcite(gate="softsign"), None
    else:
        layer = ChannelSpatialSqueezeExcite(reduction=2, gate="softsign")
    layer.build(x.shape)
    spatial = layer if kind == "sse" else layer.spatial
    spatial.set_weights([kernel.astype("float32"), np.float32(-50.0)])
    output = layer(x)
    keras.config.set_dtype_policy("float32")

    assert keras.backend.standardize_dtype(output.dtype) == "float16"
    got = keras.ops.convert_to_numpy(keras.ops.cast(output, "float32"))
    expected = spatial_squeeze_excite(x64, kernel, -50.0, gate="softsign")
    if kind == "scse":
        channel_weights = layer.channel.get_weights()
        expected = expected + squeeze_excite(x64, channel_weights, gate="softsign")
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, rtol=2e-3, atol=1e-3 * np.abs(x64).max())
