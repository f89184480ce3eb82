"""Tests for senet.models.surgery.insert_attention (retrofitting attention into models)."""

import keras
import numpy as np
import pytest

from senet.layers import (
    CBAM,
    ChannelSpatialSqueezeExcite,
    EfficientChannelAttention,
    SpatialSqueezeExcite,
    SqueezeExcite,
)
from senet.models.surgery import IDENTITY_GAIN, insert_attention

SIZE = 64
RESNET50_BLOCKS = {2: 3, 3: 4, 4: 6, 5: 3}  # stage -> bottleneck blocks (He et al., Table 1)


def _calibrate_batchnorm(model, x):
    """Set every BN's moving statistics to this batch's, as training would.

    A fresh ``weights=None`` network has moving mean 0 and variance 1, so its inference
    activations shrink or grow with depth (MobileNetV2's logits are ~1e-11) and any
    change looks small. With calibrated statistics every layer sees normalised
    activations, like a trained network, and the logits are of order 1.
    """
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0
    model(x, training=True)
    for layer in norms:
        layer.momentum = 0.99


def _images(n, seed, size=SIZE):
    return np.random.default_rng(seed).uniform(0, 1, (n, size, size, 3)).astype("float32")


def _predict(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def _softmax(logits):
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _relative(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(a))


def _added(new, base):
    """Layers of ``new`` that ``base`` lacks (a Sequential's ``layers`` omit its input)."""
    names = {layer.name for layer in base.layers}
    return [
        layer
        for layer in new.layers
        if layer.name not in names and not isinstance(layer, keras.layers.InputLayer)
    ]


def _producer(layer):
    return layer._inbound_nodes[0].arguments.keras_tensors[0]._keras_history.operation.name


def _consumers(model, layer):
    """Names of the layers of ``model`` that read ``layer``'s output."""
    output = layer.output
    return [
        other.name
        for other in model.layers
        if other._inbound_nodes
        and any(t is output for t in other._inbound_nodes[0].arguments.keras_tensors)
    ]


def _scaled_reference(base, names, gain):
    """``base`` with the BNs ``names`` computing ``gain * BN(x)`` (gamma and beta scaled).

    This is what an inserted layer computing ``y = gain * x`` after those BNs must give.
    """
    reference = keras.models.clone_model(base)
    reference.set_weights(base.get_weights())
    for name in names:
        layer = reference.get_layer(name)
        gamma, beta, mean, variance = layer.get_weights()
        layer.set_weights([gamma * gain, beta * gain, mean, variance])
    return reference


def _assert_same_weights(new, base):
    for layer in base.layers:
        twin = new.get_layer(layer.name)
        assert type(twin) is type(layer)
        ours, theirs = twin.get_weights(), layer.get_weights()
        assert len(ours) == len(theirs), layer.name
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=layer.name)
        # A clone, not the same object: training the new model leaves the old one alone.
        assert twin is not layer or not layer.weights


@pytest.fixture(scope="module", params=["resnet50", "mobilenetv2"])
def case(request):
    """A calibrated application model, its expected SE anchors and its retrofits."""
    keras.utils.set_random_seed(0)
    if request.param == "resnet50":
        base = keras.applications.ResNet50(
            weights=None, input_shape=(SIZE, SIZE, 3), classes=10, classifier_activation=None
        )
        anchors = {
            f"conv{stage}_block{block}_3_bn": f"conv{stage}_block{block}_add"
            for stage, blocks in RESNET50_BLOCKS.items()
            for block in range(1, blocks + 1)
        }
    else:
        base = keras.applications.MobileNetV2(
            weights=None, input_shape=(SIZE, SIZE, 3), classes=10, classifier_activation=None
        )
        adds = [layer.name for layer in base.layers if isinstance(layer, keras.layers.Add)]
        # block_N_add sums block N's projection (the branch) and block N's input.
        anchors = {name.replace("_add", "_project_BN"): name for name in adds}
    _calibrate_batchnorm(base, _images(16, seed=1))
    return {
        "base": base,
        "anchors": anchors,
        "identity": insert_attention(base, "se"),
        "random": insert_attention(base, "se", init="random"),
    }


def test_auto_puts_one_se_on_each_residual_branch(case):
    base, anchors, new = case["base"], case["anchors"], case["identity"]
    if base.name == "resnet50":
        assert len(anchors) == 16
    else:
        assert len(anchors) == 10  # MobileNetV2's inverted-residual blocks with an Add
    added = _added(new, base)
    assert sorted(layer.name for layer in added) == sorted(f"{a}_se" for a in anchors)
    assert len(new.layers) == len(base.layers) + len(anchors)
    for anchor, add in anchors.items():
        layer = new.get_layer(f"{anchor}_se")
        assert isinstance(layer, SqueezeExcite)
        assert _producer(layer) == anchor
        assert _consumers(new, layer) == [add]
    # The shortcut side of every Add is untouched.
    for add in anchors.values():
        summands = [_producer_of(t) for t in new.get_layer(add)._inbound_nodes[0].input_tensors]
        assert sum(name.endswith("_se") for name in summands) == 1


def _producer_of(tensor):
    return tensor._keras_history.operation.name


def test_every_original_layer_keeps_its_weights(case):
    _assert_same_weights(case["identity"], case["base"])
    _assert_same_weights(case["random"], case["base"])


def test_identity_se_is_exactly_a_gain_on_the_branch(case):
    """Independent reference: the branch BNs' gamma and beta scaled by IDENTITY_GAIN."""
    base, new = case["base"], case["identity"]
    for anchor in case["anchors"]:
        expand_kernel, expand_bias = new.get_layer(f"{anchor}_se").get_weights()[2:]
        np.testing.assert_array_equal(expand_kernel, 0.0)
        np.testing.assert_allclose(1 / (1 + np.exp(-expand_bias)), IDENTITY_GAIN, rtol=1e-6)
    x = _images(4, seed=2)
    reference = _predict(_scaled_reference(base, case["anchors"], IDENTITY_GAIN), x)
    retrofit, original = _predict(new, x), _predict(base, x)
    # The reference differs from the original by far more than from the retrofit.
    assert _relative(reference, retrofit) < 0.02 * _relative(reference, original)
    assert _relative(reference, retrofit) < 1e-3


def test_identity_stays_close_and_random_does_not(case):
    """Bounds documented in surgery.py: measured 0.067 (ResNet50) and 0.027 (MobileNetV2)."""
    x = _images(8, seed=3)
    original = _predict(case["base"], x)
    identity, random = _predict(case["identity"], x), _predict(case["random"], x)
    assert np.abs(original).max() > 1  # Calibrated: logits of order 1, not ~0.
    tolerance = 0.15 if case["base"].name == "resnet50" else 0.06
    assert np.abs(_softmax(identity) - _softmax(original)).max() < tolerance
    assert _relative(original, identity) < tolerance
    assert _relative(original, random) > 0.3


def test_legacy_h5_model_is_retrofitted(tmp_path):
    inputs = keras.Input((16, 16, 3), name="image")
    stem = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inputs)
    branch = keras.layers.Conv2D(8, 3, padding="same", name="branch_conv")(stem)
    branch = keras.layers.BatchNormalization(name="branch_bn")(branch)
    merged = keras.layers.Add(name="add")([stem, branch])
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(merged)
    outputs = keras.layers.Dense(3, name="logits")(pooled)
    keras.Model(inputs, outputs).save(tmp_path / "model.h5")
    base = keras.models.load_model(tmp_path / "model.h5")
    bn = base.get_layer("branch_bn")
    bn.set_weights([w + np.linspace(0.5, 1.5, w.size, dtype="float32") for w in bn.get_weights()])

    new = insert_attention(base, "se", reduction=2)
    assert [layer.name for layer in _added(new, base)] == ["branch_bn_se"]
    assert _consumers(new, new.get_layer("branch_bn_se")) == ["add"]
    _assert_same_weights(new, base)
    x = _images(4, seed=4, size=16)
    reference = _scaled_reference(base, ["branch_bn"], IDENTITY_GAIN)
    np.testing.assert_allclose(_predict(new, x), _predict(reference, x), rtol=1e-5, atol=1e-6)


def _plain_cnn():
    return keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Conv2D(8, 3, padding="same", name="conv1"),
            keras.layers.BatchNormalization(name="bn1"),
            keras.layers.ReLU(name="relu1"),
            keras.layers.MaxPooling2D(name="pool1"),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2"),
            keras.layers.MaxPooling2D(name="pool2"),
            keras.layers.Conv2D(40, 1, name="conv3"),
            keras.layers.BatchNormalization(name="bn3"),
            keras.layers.Activation("relu", name="act3"),
            keras.layers.Dropout(0.1, name="drop3"),
            keras.layers.GlobalAveragePooling2D(name="gap"),
            keras.layers.Dense(5, name="logits"),
        ],
        name="plain",
    )


def test_plain_sequential_cnn_gets_se_after_each_conv_block():
    base = _plain_cnn()
    new = insert_attention(base, "se", reduction=8)
    assert isinstance(new, keras.Model) and not isinstance(new, keras.Sequential)
    expected = {"relu1_se": "pool1", "conv2_se": "pool2", "act3_se": "drop3"}
    assert sorted(layer.name for layer in _added(new, base)) == sorted(expected)
    for name, follower in expected.items():
        assert _consumers(new, new.get_layer(name)) == [follower]
    added = 0
    for channels in (8, 16, 40):
        hidden = max(1, channels // 8)
        added += 2 * channels * hidden + hidden + channels
    assert new.count_params() == base.count_params() + added
    _assert_same_weights(new, base)


def test_where_list_and_predicate():
    base = _plain_cnn()
    new = insert_attention(base, "se", where=["bn1", "pool2"], init="random")
    assert sorted(layer.name for layer in _added(new, base)) == ["bn1_se", "pool2_se"]
    assert _consumers(new, new.get_layer("bn1_se")) == ["relu1"]
    assert _consumers(new, new.get_layer("pool2_se")) == ["conv3"]

    def is_conv(layer):
        return isinstance(layer, keras.layers.Conv2D)

    new = insert_attention(base, "eca", where=is_conv, init="random", name_suffix="att")
    assert sorted(layer.name for layer in _added(new, base)) == [
        "conv1_att",
        "conv2_att",
        "conv3_att",
    ]
    assert all(isinstance(layer, EfficientChannelAttention) for layer in _added(new, base))
    assert _consumers(new, new.get_layer("conv1_att")) == ["bn1"]


def _residual_model():
    inputs = keras.Input((16, 16, 3), name="image")
    stem = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inputs)
    branch = keras.layers.Conv2D(8, 3, padding="same", name="branch_conv")(stem)
    branch = keras.layers.BatchNormalization(name="branch_bn")(branch)
    merged = keras.layers.ReLU(name="out")(stem + branch)  # keras.ops add, not the layer
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(merged)
    model = keras.Model(inputs, keras.layers.Dense(4, name="logits")(pooled))
    bn = model.get_layer("branch_bn")
    bn.set_weights([w + np.linspace(0.5, 1.5, w.size, dtype="float32") for w in bn.get_weights()])
    return model


@pytest.mark.parametrize(
    ("kind", "cls", "gain"),
    [
        ("se", SqueezeExcite, IDENTITY_GAIN),
        ("sse", SpatialSqueezeExcite, IDENTITY_GAIN),
        ("cbam", CBAM, IDENTITY_GAIN),
        ("scse", ChannelSpatialSqueezeExcite, 1.0),  # two gates of 0.5: exactly y = x
    ],
)
def test_identity_init_of_each_kind_is_a_constant_gain(kind, cls, gain):
    base = _residual_model()
    new = insert_attention(base, kind)
    (layer,) = _added(new, base)
    assert isinstance(layer, cls) and layer.name == f"branch_bn_{kind}"
    x = _images(3, seed=5, size=16)
    reference = _scaled_reference(base, ["branch_bn"], gain)
    np.testing.assert_allclose(_predict(new, x), _predict(reference, x), rtol=1e-5, atol=1e-6)
    # The random start is really in the graph.
    shuffled = insert_attention(base, kind, init="random")
    assert _relative(_predict(base, x), _predict(shuffled, x)) > 1e-2


def test_identity_gain_option_sets_the_gate():
    base = _residual_model()
    new = insert_attention(base, "se", identity_gain=0.9)
    x = _images(3, seed=6, size=16)
    reference = _scaled_reference(base, ["branch_bn"], 0.9)
    np.testing.assert_allclose(_predict(new, x), _predict(reference, x), rtol=1e-5, atol=1e-6)


def test_nested_model_multiple_inputs_and_concatenate():
    block = keras.Sequential(
        [keras.Input((8, 8, 4)), keras.layers.Conv2D(6, 3, padding="same")], name="block"
    )
    left = keras.Input((8, 8, 4), name="left")
    right = keras.Input((8, 8, 2), name="right")
    features = keras.layers.Concatenate(name="concat")([block(left), right])
    outputs = keras.layers.GlobalAveragePooling2D(name="pool")(features)
    base = keras.Model({"left": left, "right": right}, outputs)
    new = insert_attention(base, "scse", where=["block", "concat"])
    assert sorted(layer.name for layer in _added(new, base)) == ["block_scse", "concat_scse"]
    assert new.get_layer("block") is not block
    _assert_same_weights(new, base)
    rng = np.random.default_rng(7)
    x = {
        "left": rng.normal(size=(2, 8, 8, 4)).astype("float32"),
        "right": rng.normal(size=(2, 8, 8, 2)).astype("float32"),
    }
    np.testing.assert_allclose(_predict(new, x), _predict(base, x), rtol=1e-5, atol=1e-6)


def test_trains_one_step_and_keras_round_trip(tmp_path):
    base = _residual_model()
    new = insert_attention(base, "se")
    se = new.get_layer("branch_bn_se")
    before = [w.copy() for w in se.get_weights()]
    base_before = [w.copy() for w in base.get_weights()]
    new.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    x, y = _images(8, seed=8, size=16), np.arange(8) % 4
    loss = new.train_on_batch(x, y)
    assert np.isfinite(loss)
    # The zero expand kernel gets a gradient through the saturated gate and moves.
    assert np.abs(se.get_weights()[2] - before[2]).max() > 0
    for a, b in zip(base.get_weights(), base_before, strict=True):
        np.testing.assert_array_equal(a, b)  # The original model is untouched.

    path = tmp_path / "retrofit.keras"
    new.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.get_layer("branch_bn_se"), SqueezeExcite)
    np.testing.assert_allclose(_predict(loaded, x), _predict(new, x), rtol=0, atol=1e-6)


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__(name="custom_net")
        self.conv = keras.layers.Conv2D(4, 3)

    def call(self, x):
        return self.conv(x)


def test_rejects_subclassed_and_shared_layer_models():
    subclassed = _Subclassed()
    subclassed(np.zeros((1, 8, 8, 3), "float32"))
    with pytest.raises(ValueError, match="custom_net.*_Subclassed"):
        insert_attention(subclassed)

    shared = keras.layers.Conv2D(3, 3, padding="same", name="shared_conv")
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, shared(shared(inputs)))
    with pytest.raises(ValueError, match="'shared_conv' is called at 2 points"):
        insert_attention(model)

    with pytest.raises(ValueError, match="no input shape"):
        insert_attention(keras.Sequential([keras.layers.Conv2D(3, 3)]))


def test_rejects_bad_arguments():
    base = _residual_model()
    with pytest.raises(ValueError, match="'no_such_layer', which is not a layer"):
        insert_attention(base, where=["stem", "no_such_layer"])
    with pytest.raises(ValueError, match="`init`.*got 'zeros'"):
        insert_attention(base, init="zeros")
    with pytest.raises(ValueError, match="`kind`"):
        insert_attention(base, kind="transformer")
    with pytest.raises(ValueError, match="`where`"):
        insert_attention(base, where="everywhere")
    with pytest.raises(ValueError, match="ECA has no bias"):
        insert_attention(base, kind="eca")
    with pytest.raises(ValueError, match="use_bias"):
        insert_attention(base, kind="se", use_bias=False)
    with pytest.raises(ValueError, match="identity_gain"):
        insert_attention(base, identity_gain=1.5)
    with pytest.raises(ValueError, match="`name_suffix`"):
        insert_attention(base, name="mine")
    # A selected layer whose output cannot take channel attention (rank 2) is named.
    with pytest.raises(ValueError, match="after layer 'logits'"):
        insert_attention(base, where=["logits"])
    # Retrofitting twice needs another suffix.
    once = insert_attention(base)
    with pytest.raises(ValueError, match="'branch_bn_se' is already taken"):
        insert_attention(once, where=["branch_bn"])
    twice = insert_attention(once, where=["branch_bn"], name_suffix="se2")
    assert [layer.name for layer in _added(twice, once)] == ["branch_bn_se2"]
