"""SqueezeExcite against a NumPy reference, its parameter count, weight layout and gate range."""

import keras
import numpy as np
import pytest
from layer_reference import squeeze_excite, squeeze_excite_gate

from senet.layers import SEModule, SqueezeExcite, bottleneck_units


def _randomize(layer, rng, scale=0.5):
    """Random weights, biases included, so every term of the formula shows in the output."""
    layer.set_weights([rng.normal(scale=scale, size=w.shape) for w in layer.get_weights()])
    return layer.get_weights()


# One row per option, spread over 1-D, 2-D and 3-D inputs (rank 3, 4, 5); C = 16.
SE_CASES = [
    pytest.param({}, (2, 6, 5, 16), id="defaults-2d"),
    pytest.param({"reduction": 4, "squeeze": "max"}, (2, 9, 16), id="r4-max-1d"),
    pytest.param({"squeeze": "avgmax", "gate": "hard_sigmoid"}, (2, 3, 4, 5, 16), id="avgmax-3d"),
    pytest.param({"gate": "tanh", "activation": "swish"}, (3, 5, 5, 16), id="tanh-swish-2d"),
    pytest.param({"gate": "relu", "use_bias": False}, (2, 7, 16), id="relu-nobias-1d"),
    pytest.param({"units": 3, "reduction": 2}, (2, 3, 3, 3, 16), id="units-3d"),
    pytest.param({"reduction": 2.5}, (2, 4, 4, 16), id="float-r-2d"),
]


@pytest.mark.parametrize("options,shape", SE_CASES)
def test_matches_numpy_reference(options, shape, rng):
    x = rng.normal(size=shape).astype("float32")
    layer = SqueezeExcite(**options)
    layer.build(shape)
    weights = _randomize(layer, rng)
    reference_options = {k: v for k, v in options.items() if k in ("squeeze", "gate", "activation")}

    expected_gate = squeeze_excite_gate(x.astype("float64"), weights, **reference_options)
    expected = squeeze_excite(x.astype("float64"), weights, **reference_options)

    gate = keras.ops.convert_to_numpy(layer.excitation(x))
    assert gate.shape == (shape[0], shape[-1])
    np.testing.assert_allclose(gate, expected_gate, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "channels,options,hidden",
    [
        (64, {"reduction": 16}, 4),
        (64, {"reduction": 4}, 16),
        (64, {}, 8),  # default r = 8
        (64, {"reduction": 16, "units": 10}, 10),  # units overrides reduction
        (4, {"reduction": 16}, 1),  # 4 // 16 = 0 would be no bottleneck at all: 1 unit
        (30, {"reduction": 4}, 7),  # C // r floors
    ],
)
def test_parameter_count_and_weight_layout(channels, options, hidden):
    layer = SqueezeExcite(**options)
    layer.build((None, 5, 5, channels))
    assert layer.count_params() == 2 * channels * hidden + hidden + channels
    # DESIGN.md: [reduce kernel (C,h), reduce bias (h,), expand kernel (h,C), expand bias (C,)].
    assert [w.shape for w in layer.get_weights()] == [
        (channels, hidden),
        (hidden,),
        (hidden, channels),
        (channels,),
    ]
    expected_variables = [
        layer.reduce.kernel,
        layer.reduce.bias,
        layer.expand.kernel,
        layer.expand.bias,
    ]
    assert [v.path for v in layer.weights] == [v.path for v in expected_variables]
    assert bottleneck_units(channels, options.get("reduction", 8), options.get("units")) == hidden


def test_parameter_count_without_bias():
    layer = SqueezeExcite(reduction=16, use_bias=False)
    layer.build((None, 4, 4, 64))
    assert layer.count_params() == 2 * 64 * 4
    assert [w.shape for w in layer.get_weights()] == [(64, 4), (4, 64)]


def test_sub_layers_and_alias():
    layer = SEModule(reduction=4)
    layer.build((None, 8, 8, 32))
    assert isinstance(layer, SqueezeExcite)
    assert (layer.reduce.name, layer.reduce.units) == ("reduce", 8)
    assert (layer.expand.name, layer.expand.units) == ("expand", 32)


def _strong_input_layer(gate):
    """An SE block whose gate logits are -25 for channels with mean 0 and +25 for mean 5."""
    channels = 4
    layer = SqueezeExcite(units=channels, gate=gate)
    layer.build((None, 6, 6, channels))
    eye = np.eye(channels, dtype="float32")
    layer.set_weights([eye, np.zeros(channels), 10.0 * eye, np.full(channels, -25.0)])
    x = np.zeros((1, 6, 6, channels), "float32")
    x[..., ::2] = 5.0
    return layer, x


@pytest.mark.parametrize(
    "gate,low,high",
    [
        # A second sigmoid on top of the first would squash these into (0.5, 0.73).
        ("sigmoid", (0.0, 1e-3), (1 - 1e-3, 1.0)),
        ("hard_sigmoid", (0.0, 0.0), (1.0, 1.0)),
        ("tanh", (-1.0, -1 + 1e-3), (1 - 1e-3, 1.0)),
        ("relu", (0.0, 0.0), (25.0 - 1e-3, 25.0 + 1e-3)),  # relu gates are unbounded above
    ],
)
def test_gate_range_on_strong_inputs(gate, low, high):
    layer, x = _strong_input_layer(gate)
    gate_values = keras.ops.convert_to_numpy(layer.excitation(x))
    assert gate_values.shape == (1, 4)
    assert low[0] <= gate_values[0, 1] <= low[1]  # channel means 0 -> logit -25
    assert high[0] <= gate_values[0, 0] <= high[1]  # channel means 5 -> logit +25
    output = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(output, x * gate_values[:, None, None, :], rtol=1e-6)
