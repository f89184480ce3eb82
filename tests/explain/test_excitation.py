"""excitations, class_profiles, class_specificity and pick_depths against independent references."""

import keras
import numpy as np
import pytest

import senet
from senet.explain import class_profiles, class_specificity, excitations, pick_depths


def _numpy(tensor):
    return keras.ops.convert_to_numpy(tensor)


def _se_gate_numpy(layer, features):
    """SqueezeExcite's gate from its weights: sigmoid(relu(mean(x) W1 + b1) W2 + b2)."""
    w1, b1, w2, b2 = layer.get_weights()
    hidden = np.maximum(features.mean(axis=(1, 2)) @ w1 + b1, 0.0)
    return 1.0 / (1.0 + np.exp(-(hidden @ w2 + b2)))


@pytest.fixture
def images(rng):
    return rng.uniform(0.0, 1.0, (5, 8, 8, 3)).astype("float32")


def _functional_model():
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    h = senet.SqueezeExcite(2, name="se1")(h)
    h = keras.layers.Conv2D(8, 3, padding="same", name="conv2")(h)
    h = senet.ECA(name="eca")(h)
    h = senet.CBAM(2, kernel_size=3, name="cbam")(h)
    h = senet.ChannelSpatialSqueezeExcite(2, name="scse")(h)
    outputs = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(h))
    return keras.Model(inputs, outputs)


def test_functional_model_gates_equal_each_layers_own_excitation(images):
    model = _functional_model()
    gates = excitations(model, images)
    assert list(gates) == ["se1", "eca", "cbam", "scse"]

    # Reference: run the layers one by one and ask each for the gate of its input.
    reference, h = {}, keras.ops.convert_to_tensor(images)
    h = model.get_layer("conv1")(h)
    conv1_features = _numpy(h)
    for name in ["se1", "conv2", "eca", "cbam", "scse"]:
        layer = model.get_layer(name)
        if name != "conv2":
            reference[name] = _numpy(layer.excitation(h))
        h = layer(h)
    for name, gate in gates.items():
        assert gate.shape == (5, 8)
        np.testing.assert_allclose(gate, reference[name], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        gates["se1"], _se_gate_numpy(model.get_layer("se1"), conv1_features), rtol=1e-4, atol=1e-5
    )


def test_model_is_unchanged_and_batch_size_gives_the_same_gates(images):
    model = _functional_model()
    before = _numpy(model(images))
    gates = excitations(model, images)
    chunked = excitations(model, images, batch_size=2)
    for name in gates:
        np.testing.assert_allclose(chunked[name], gates[name], rtol=1e-5, atol=1e-6)
    # No extra graph nodes: `.input`/`.output` raise when a layer has several.
    for layer in model.layers:
        assert layer.output is not None
    np.testing.assert_allclose(_numpy(model(images)), before, rtol=1e-6)


def test_sequential_model(images):
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(6, 3, activation="relu", name="conv"),
            senet.SqueezeExcite(2, name="se"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2),
        ]
    )
    gates = excitations(model, images)
    assert list(gates) == ["se"]
    features = _numpy(model.get_layer("conv")(images))
    assert gates["se"].shape == (5, 6)
    np.testing.assert_allclose(
        gates["se"], _se_gate_numpy(model.get_layer("se"), features), rtol=1e-4, atol=1e-5
    )


def test_nested_sequential_and_functional_models(images):
    inner_sequential = keras.Sequential(
        [
            keras.Input((8, 8, 4)),
            keras.layers.Conv2D(4, 1, name="seq_conv"),
            senet.SqueezeExcite(2, name="seq_se"),
        ],
        name="seq_block",
    )
    block_in = keras.Input((8, 8, 4))
    block = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="fn_conv")(block_in)
    block = senet.ECA(name="fn_eca")(block)
    inner_functional = keras.Model(block_in, block, name="fn_block")

    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", name="stem")(inputs)
    h = inner_functional(inner_sequential(h))
    h = senet.SqueezeExcite(2, name="head_se")(h)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(h))

    gates = excitations(model, images)
    assert list(gates) == ["seq_block/seq_se", "fn_block/fn_eca", "head_se"]

    h = model.get_layer("stem")(images)
    h = inner_sequential.get_layer("seq_conv")(h)
    expected = {"seq_block/seq_se": inner_sequential.get_layer("seq_se").excitation(h)}
    h = inner_functional.get_layer("fn_conv")(inner_sequential.get_layer("seq_se")(h))
    expected["fn_block/fn_eca"] = inner_functional.get_layer("fn_eca").excitation(h)
    expected["head_se"] = model.get_layer("head_se").excitation(
        inner_functional.get_layer("fn_eca")(h)
    )
    for name, gate in gates.items():
        np.testing.assert_allclose(gate, _numpy(expected[name]), rtol=1e-5, atol=1e-6)
    assert gates["fn_block/fn_eca"].shape == (5, 6)


def test_shared_layer_gets_one_key_per_call_and_model_without_attention_gets_none(images):
    inputs = keras.Input((8, 8, 3))
    shared = senet.SqueezeExcite(1, name="shared_se")
    left = shared(keras.layers.Conv2D(4, 1, name="left")(inputs))
    right = shared(keras.layers.Conv2D(4, 3, padding="same", name="right")(inputs))
    model = keras.Model(inputs, keras.layers.Add()([left, right]))
    gates = excitations(model, images)
    assert sorted(gates) == ["shared_se", "shared_se:1"]
    expected = sorted(
        [_numpy(shared.excitation(model.get_layer(name)(images))) for name in ("left", "right")],
        key=lambda gate: float(gate.sum()),
    )
    found = sorted(gates.values(), key=lambda gate: float(gate.sum()))
    for gate, reference in zip(found, expected, strict=True):
        np.testing.assert_allclose(gate, reference, rtol=1e-5, atol=1e-6)

    plain = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3)])
    assert excitations(plain, images) == {}


def test_class_profiles_are_per_class_means(rng):
    model = _functional_model()
    x = rng.uniform(0.0, 1.0, (12, 8, 8, 3)).astype("float32")
    y = np.array([0, 1, 2, 0, 1, 2, 0, 0, 1, 2, 2, 1])  # class 3 has no images
    profiles = class_profiles(model, x, y, num_classes=4)
    gates = excitations(model, x)
    assert list(profiles) == list(gates)
    for name, profile in profiles.items():
        assert profile.shape == (4, gates[name].shape[1])
        for k in range(3):
            np.testing.assert_allclose(profile[k], gates[name][y == k].mean(axis=0), rtol=1e-5)
        assert np.isnan(profile[3]).all()

    one_hot = np.eye(4)[y]
    chosen = class_profiles(model, x, one_hot, num_classes=4, layers=["cbam"], batch_size=5)
    assert list(chosen) == ["cbam"]
    np.testing.assert_allclose(chosen["cbam"], profiles["cbam"], rtol=1e-5)

    with pytest.raises(ValueError, match="class indices"):
        class_profiles(model, x, y, num_classes=2)
    with pytest.raises(ValueError, match="num_classes"):
        class_profiles(model, x, y, num_classes=0)
    with pytest.raises(ValueError, match="layers"):
        class_profiles(model, x, y, num_classes=4, layers=["nope"])


def test_class_specificity_by_hand():
    same = np.tile(np.array([[0.2, 0.9, 0.5]]), (4, 1))
    assert class_specificity({"same": same}) == {"same": 0.0}
    assert class_specificity({"same": same}, metric="cosine")["same"] == pytest.approx(0.0)

    profiles = np.array([[0, 0, 0, 0], [0.5, 0.5, 0.5, 0.5], [1, 1, 0, 0], [np.nan] * 4])
    # Pairs (0,1), (0,2), (1,2): L2 distances 1, sqrt(2), 1, each divided by sqrt(4).
    expected = (0.5 + np.sqrt(2) / 2 + 0.5) / 3
    assert class_specificity({"se": profiles})["se"] == pytest.approx(expected)
    orthogonal = np.array([[1.0, 0.0], [0.0, 2.0]])
    assert class_specificity({"se": orthogonal}, metric="cosine")["se"] == pytest.approx(1.0)
    assert np.isnan(class_specificity({"one": np.ones((1, 3))})["one"])
    with pytest.raises(ValueError, match="metric"):
        class_specificity({"se": profiles}, metric="kl")


def test_pick_depths():
    names = ["b1_se", "b2_se", "b3_se", "b4_se", "b5_se"]
    assert pick_depths(names) == {"early": "b1_se", "middle": "b3_se", "last": "b5_se"}
    assert pick_depths(["a", "b"]) == {"early": "a", "last": "b"}
    assert pick_depths(["a"]) == {"last": "a"}
    with pytest.raises(ValueError, match="layer_names"):
        pick_depths([])
