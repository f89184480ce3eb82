"""What every attention layer promises: data formats, config, gradients, dtypes, errors, models."""

import inspect
import json
import re

import keras
import numpy as np
import pytest
from layer_reference import to_channels_first

from senet.layers import (
    CBAM,
    ChannelSpatialSqueezeExcite,
    EfficientChannelAttention,
    SpatialSqueezeExcite,
    SqueezeExcite,
)

# Every layer with options away from its defaults, so a lost option shows.
LAYERS = {
    "se": (SqueezeExcite, {"reduction": 4, "squeeze": "avgmax", "gate": "hard_sigmoid"}),
    "eca": (EfficientChannelAttention, {"kernel_size": 5, "squeeze": "max"}),
    "sse": (SpatialSqueezeExcite, {"gate": "tanh"}),
    "scse": (ChannelSpatialSqueezeExcite, {"reduction": 4, "activation": "swish"}),
    "cbam": (CBAM, {"reduction": 4, "kernel_size": 3}),
}
KINDS = list(LAYERS)
CHANNELS = 8
SPATIAL = {3: (7,), 4: (5, 4), 5: (3, 4, 3)}


def _make(kind, **overrides):
    cls, options = LAYERS[kind]
    return cls(**{**options, **overrides})


def _randomize(layer, rng, scale=0.5):
    layer.set_weights([rng.normal(scale=scale, size=w.shape) for w in layer.get_weights()])


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize("rank", [3, 4, 5])
@pytest.mark.parametrize("kind", KINDS)
def test_channels_first_is_transposed_channels_last(kind, rank, rng):
    x = rng.normal(size=(2, *SPATIAL[rank], CHANNELS)).astype("float32")
    last = _make(kind, data_format="channels_last")
    last.build(x.shape)
    _randomize(last, rng)
    first = _make(kind, data_format="channels_first")
    first.build(to_channels_first(x).shape)
    first.set_weights(last.get_weights())

    np.testing.assert_allclose(
        _numpy(first(to_channels_first(x))),
        to_channels_first(_numpy(last(x))),
        rtol=1e-5,
        atol=1e-6,
    )
    if hasattr(last, "excitation"):
        np.testing.assert_allclose(
            _numpy(first.excitation(to_channels_first(x))),
            _numpy(last.excitation(x)),
            rtol=1e-5,
            atol=1e-6,
        )


def test_data_format_defaults_to_keras_config():
    keras.config.set_image_data_format("channels_first")
    assert all(cls().data_format == "channels_first" for cls, _ in LAYERS.values())
    keras.config.set_image_data_format("channels_last")
    assert all(cls().data_format == "channels_last" for cls, _ in LAYERS.values())


@pytest.mark.parametrize("kind", KINDS)
def test_config_round_trip(kind, rng):
    # Callables (not only names) must survive the config too.
    callables = {"gate": keras.activations.tanh}
    if kind in ("se", "scse", "cbam"):
        callables["activation"] = keras.activations.gelu
    layer = _make(kind, name=f"my_{kind}", data_format="channels_first", **callables)
    config = layer.get_config()

    cls = type(layer)
    arguments = set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"}
    base_keys = set(keras.layers.Layer().get_config())
    assert arguments <= set(config)
    assert set(config) - arguments <= base_keys
    assert {"name", "trainable", "dtype"} <= set(config)
    json.dumps(config)  # a .keras file stores it as JSON

    clone = cls.from_config(config)
    assert clone.get_config() == config
    revived = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(revived) is cls and revived.get_config() == config

    x = rng.normal(size=(2, CHANNELS, 5, 4)).astype("float32")
    layer.build(x.shape)
    _randomize(layer, rng)
    clone.build(x.shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(_numpy(clone(x)), _numpy(layer(x)), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "kind,overrides,shape",
    [
        ("se", {}, (4, 5, 4, CHANNELS)),
        ("se", {"use_bias": False, "squeeze": "max"}, (4, 7, CHANNELS)),
        ("eca", {}, (4, 5, 4, CHANNELS)),
        ("sse", {}, (4, 5, 4, CHANNELS)),
        ("scse", {}, (4, 3, 3, 3, CHANNELS)),
        ("cbam", {}, (4, 5, 4, CHANNELS)),
        ("cbam", {"data_format": "channels_first"}, (4, CHANNELS, 3, 4, 3)),
    ],
)
def test_one_training_step_updates_every_weight(kind, overrides, shape, rng):
    layer = _make(kind, **overrides)
    model = keras.Sequential([keras.Input(shape[1:]), layer])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5), loss="mse")
    before = [w.copy() for w in layer.get_weights()]
    assert len(layer.trainable_weights) == len(before) > 0
    x = rng.normal(size=shape).astype("float32")
    target = rng.normal(size=shape).astype("float32")

    model.train_on_batch(x, target)

    after = layer.get_weights()
    for variable, old, new in zip(layer.weights, before, after, strict=True):
        assert not np.allclose(old, new), f"{variable.path} got no gradient"


@pytest.mark.parametrize(
    "policy,compute_dtype,tolerance",
    # Measured worst |error| / (1 + |y|) over 5 seeds and 3 backends: 1.5e-3 and 1.05e-2 (sSE).
    [("mixed_float16", "float16", 5e-3), ("mixed_bfloat16", "bfloat16", 3e-2)],
)
@pytest.mark.parametrize("kind", KINDS)
def test_mixed_precision(kind, policy, compute_dtype, tolerance, rng):
    x = rng.normal(size=(2, 6, 5, CHANNELS)).astype("float32")
    keras.config.set_dtype_policy(policy)
    layer = _make(kind)
    layer.build(x.shape)
    _randomize(layer, rng)
    output = layer(x)
    keras.config.set_dtype_policy("float32")

    assert keras.backend.standardize_dtype(output.dtype) == compute_dtype
    assert {keras.backend.standardize_dtype(w.dtype) for w in layer.weights} == {"float32"}
    reference = _make(kind)
    reference.build(x.shape)
    reference.set_weights(layer.get_weights())
    expected = _numpy(reference(x))
    got = _numpy(keras.ops.cast(output, "float32"))
    np.testing.assert_allclose(got, expected, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("kind", ["scse", "cbam"])
def test_per_layer_mixed_policy_reaches_sub_layers(kind, rng):
    x = rng.normal(size=(2, 6, 5, CHANNELS)).astype("float32")
    layer = _make(kind, dtype="mixed_bfloat16")  # the global policy stays float32
    output = layer(x)
    assert keras.backend.standardize_dtype(output.dtype) == "bfloat16"
    assert {keras.backend.standardize_dtype(w.dtype) for w in layer.weights} == {"float32"}
    reference = _make(kind)
    reference.build(x.shape)
    reference.set_weights(layer.get_weights())
    np.testing.assert_allclose(
        _numpy(keras.ops.cast(output, "float32")), _numpy(reference(x)), rtol=3e-2, atol=3e-2
    )


def _linear_probe(kind, rng):
    """A layer whose gate is linear in the pooled input, to read the squeeze back exactly."""
    eye = np.eye(CHANNELS, dtype="float32")
    if kind == "se":
        layer = SqueezeExcite(units=CHANNELS, gate="linear", activation="linear")
        return layer, lambda: layer.set_weights([1e-3 * eye, 0 * eye[0], eye, 0 * eye[0]])
    if kind == "eca":
        layer = EfficientChannelAttention(kernel_size=3, gate="linear")
        return layer, lambda: layer.set_weights([np.array([0.0, 1e-3, 0.0]).reshape(3, 1, 1)])
    layer = CBAM(reduction=1, kernel_size=3, gate="linear", activation="linear")

    def set_weights():
        layer.reduce.set_weights([1e-3 * eye, 0 * eye[0]])
        layer.expand.set_weights([eye, 0 * eye[0]])
        layer.spatial_kernel.assign(np.zeros((3, 3, 2, 1)))  # spatial gate == 1
        layer.spatial_bias.assign(1.0)

    return layer, set_weights


@pytest.mark.parametrize("kind", ["se", "eca", "cbam"])
def test_float16_squeeze_of_a_large_map_is_finite_and_exact(kind, rng):
    x = (1000.0 + 30.0 * rng.normal(size=(1, 64, 64, CHANNELS))).astype("float16")
    with np.errstate(over="ignore"):
        assert np.isinf(x.sum(axis=(1, 2), dtype="float16")).all()  # a float16 sum overflows
    keras.config.set_dtype_policy("mixed_float16")
    layer, set_weights = _linear_probe(kind, rng)
    layer.build(x.shape)
    set_weights()
    output = _numpy(keras.ops.cast(layer(x), "float32"))
    keras.config.set_dtype_policy("float32")

    exact = x.astype("float64")
    mean = exact.mean(axis=(1, 2))
    # CBAM's gate is MLP(avg) + MLP(max); SE and ECA read the average alone.
    expected_gate = 1e-3 * (mean + exact.max(axis=(1, 2)) if kind == "cbam" else mean)
    gate = _numpy(layer.excitation(x))
    np.testing.assert_allclose(gate, expected_gate, rtol=1e-3)
    assert np.isfinite(output).all()
    np.testing.assert_allclose(output, exact * expected_gate[:, None, None, :], rtol=5e-3)


def test_scse_is_finite_on_a_large_float16_map(rng):
    x = (1000.0 + 30.0 * rng.normal(size=(2, 64, 64, CHANNELS))).astype("float16")
    keras.config.set_dtype_policy("mixed_float16")
    layer = ChannelSpatialSqueezeExcite(reduction=2)
    output = _numpy(keras.ops.cast(layer(x), "float32"))
    keras.config.set_dtype_policy("float32")
    reference = ChannelSpatialSqueezeExcite(reduction=2)
    reference.build(x.shape)
    reference.set_weights(layer.get_weights())
    assert np.isfinite(output).all()
    expected = _numpy(reference(x.astype("float32")))
    np.testing.assert_allclose(output, expected, rtol=1e-2, atol=1.0)


# Invalid arguments: ValueError naming the argument and the value received.
BAD_ARGUMENTS = [
    *[(kind, {"data_format": "NHWC"}, "data_format='NHWC'") for kind in KINDS],
    *[(kind, {"gate": "bogus"}, "gate='bogus'") for kind in KINDS],
    *[(kind, {"squeeze": "mean"}, "squeeze='mean'") for kind in ("se", "eca", "scse")],
    *[(kind, {"activation": "bogus"}, "activation='bogus'") for kind in ("se", "scse", "cbam")],
    *[
        (kind, {"reduction": value}, f"reduction={value!r}")
        for kind in ("se", "scse", "cbam")
        for value in (0, -2, "8", True)
    ],
    ("se", {"reduction": float("nan")}, "reduction=nan"),
    ("se", {"units": 0}, "units=0"),
    ("eca", {"gamma": 0}, "gamma=0"),
    ("eca", {"b": "1"}, "b='1'"),
    ("eca", {"kernel_size": 4}, "kernel_size=4"),
    ("eca", {"kernel_size": 0}, "kernel_size=0"),
    ("cbam", {"kernel_size": 2.5}, "kernel_size=2.5"),
]


@pytest.mark.parametrize("kind,arguments,received", BAD_ARGUMENTS)
def test_bad_argument_raises_value_error(kind, arguments, received):
    (argument,) = arguments
    value = re.escape(received.split("=", 1)[1])
    with pytest.raises(ValueError, match=rf"`{argument}` must be .*, got {value}$"):
        _make(kind, **arguments)


@pytest.mark.parametrize(
    "shape,data_format,message",
    [
        ((None, 6, 6, None), "channels_last", "channel"),
        ((None, None, 6, 6), "channels_first", "channel"),
        ((None, 16), "channels_last", "rank 3, 4 or 5"),
        ((None, 2, 2, 2, 2, 16), "channels_last", "rank 3, 4 or 5"),
    ],
)
@pytest.mark.parametrize("kind", KINDS)
def test_bad_input_shape_raises_value_error(kind, shape, data_format, message):
    layer = _make(kind, data_format=data_format)
    expected = rf"(?s)`input_shape` must be .*{message}.*, got {re.escape(str(shape))}"
    with pytest.raises(ValueError, match=expected):
        layer(keras.Input(batch_shape=shape))


@pytest.mark.parametrize("kind", KINDS)
def test_functional_and_sequential_with_dynamic_shapes(kind, rng):
    layer = _make(kind)
    inputs = keras.Input((None, None, CHANNELS))  # batch and spatial sizes unknown
    functional = keras.Model(inputs, layer(inputs))
    assert functional.output_shape == (None, None, None, CHANNELS)
    sequential = keras.Sequential(
        [keras.Input((6, 6, CHANNELS)), layer, keras.layers.GlobalAveragePooling2D()]
    )
    for shape in [(3, 6, 6, CHANNELS), (5, 4, 7, CHANNELS)]:
        x = rng.normal(size=shape).astype("float32")
        direct = _numpy(layer(x))
        np.testing.assert_allclose(functional.predict(x, verbose=0), direct, rtol=1e-5, atol=1e-6)
    x = rng.normal(size=(5, 6, 6, CHANNELS)).astype("float32")
    np.testing.assert_allclose(
        _numpy(sequential(x)), _numpy(layer(x)).mean(axis=(1, 2)), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("kind", KINDS)
def test_mask_passes_through(kind, rng):
    layer = _make(kind)
    x = rng.normal(size=(2, 5, CHANNELS)).astype("float32")
    x[:, -2:] = 0.0
    model = keras.Sequential([keras.Input((5, CHANNELS)), keras.layers.Masking(0.0), layer])
    assert model(x).shape == x.shape
    mask = np.array([[True, True, True, False, False]] * 2)
    np.testing.assert_array_equal(_numpy(layer.compute_mask(x, mask)), mask)
