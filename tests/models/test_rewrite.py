"""The one graph rewriter (senet.models.rewrite) and its users on a layer senet never saw."""

import keras
import numpy as np
import pytest

from randomized import randomize
from senet.graph import Graph
from senet.layers import FusedSEResidual, SqueezeExcite
from senet.models.fused import fuse_se
from senet.models.rewrite import rewrite
from senet.models.surgery import IDENTITY_GAIN, insert_attention


@keras.saving.register_keras_serializable(package="test")
class ChannelScale(keras.layers.Layer):
    """A learned per-channel scale: a layer senet has never heard of."""

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="scale")

    def call(self, x):
        return x * self.scale

    def compute_output_shape(self, input_shape):
        return input_shape


def _block(x, name, filters, *, stride=1, se=False):
    """A bottleneck unit: 1x1 -> 3x3 -> 1x1 (-> SE) + shortcut -> ReLU."""
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = keras.layers.Conv2D(filters, 1, strides=stride, name=f"{name}_0_conv")(x)
        shortcut = keras.layers.BatchNormalization(name=f"{name}_0_bn")(shortcut)
    h = keras.layers.Conv2D(filters // 2, 1, strides=stride, name=f"{name}_1_conv")(x)
    h = keras.layers.BatchNormalization(name=f"{name}_1_bn")(h)
    h = keras.layers.ReLU(name=f"{name}_1_relu")(h)
    h = keras.layers.Conv2D(filters // 2, 3, padding="same", name=f"{name}_2_conv")(h)
    h = keras.layers.BatchNormalization(name=f"{name}_2_bn")(h)
    h = keras.layers.ReLU(name=f"{name}_2_relu")(h)
    h = keras.layers.Conv2D(filters, 1, name=f"{name}_3_conv")(h)
    h = keras.layers.BatchNormalization(name=f"{name}_3_bn")(h)
    if se:
        h = SqueezeExcite(4, name=f"{name}_se")(h)
    merged = keras.layers.Add(name=f"{name}_add")([shortcut, h])
    return keras.layers.ReLU(name=f"{name}_out")(merged)


def _resnet_like(*, se: bool, seed: int = 0) -> keras.Model:
    """A small ResNet with ChannelScale after the stem and between the units."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inputs)
    x = ChannelScale(name="stem_scale")(x)
    x = _block(x, "unit1", 8, se=se)
    x = ChannelScale(name="unit1_scale")(x)
    x = _block(x, "unit2", 16, stride=2, se=se)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(5, name="logits")(x), name="tiny")
    return randomize(model, seed, gamma=(0.5, 1.5), perturbed=(ChannelScale, SqueezeExcite))


def _images(n, seed):
    return np.random.default_rng(seed).uniform(0, 1, (n, 16, 16, 3)).astype("float32")


def _run(model, x, names=()):
    """The model's output and the named layers' outputs, in inference mode."""
    probe = keras.Model(model.input, [model.output, *(model.get_layer(n).output for n in names)])
    return [keras.ops.convert_to_numpy(t) for t in probe(x, training=False)]


def _assert_custom_layers_copied(new, base):
    for name in ("stem_scale", "unit1_scale"):
        twin, layer = new.get_layer(name), base.get_layer(name)
        assert type(twin) is ChannelScale and twin is not layer
        np.testing.assert_array_equal(twin.get_weights()[0], layer.get_weights()[0])


def test_insert_attention_with_an_unknown_custom_layer(tmp_path):
    base = _resnet_like(se=False)
    new = insert_attention(base, "se", reduction=2)
    added = sorted(layer.name for layer in new.layers if isinstance(layer, SqueezeExcite))
    assert added == ["unit1_3_bn_se", "unit2_3_bn_se"]
    _assert_custom_layers_copied(new, base)
    # Upstream of every insertion the new model computes exactly what the old one does.
    x = _images(4, seed=1)
    (_, stem_new), (_, stem_old) = _run(new, x, ["stem_scale"]), _run(base, x, ["stem_scale"])
    np.testing.assert_array_equal(stem_new, stem_old)
    # Downstream: exactly the original with each branch BN's output times the gain
    # (an independent reference: gamma and beta scaled in a plain copy).
    reference = keras.models.clone_model(base)
    reference.set_weights(base.get_weights())
    for name in ("unit1_3_bn", "unit2_3_bn"):
        bn = reference.get_layer(name)
        gamma, beta, mean, variance = bn.get_weights()
        bn.set_weights([gamma * IDENTITY_GAIN, beta * IDENTITY_GAIN, mean, variance])
    np.testing.assert_allclose(_run(new, x)[0], _run(reference, x)[0], rtol=1e-5, atol=1e-6)
    assert np.abs(_run(new, x)[0] - _run(base, x)[0]).max() > 1e-6  # the gain is really there

    new.save(tmp_path / "retrofit.keras")
    loaded = keras.models.load_model(tmp_path / "retrofit.keras")
    assert type(loaded.get_layer("unit1_scale")) is ChannelScale
    np.testing.assert_allclose(_run(loaded, x)[0], _run(new, x)[0], rtol=0, atol=1e-6)


def test_fuse_se_with_an_unknown_custom_layer():
    base = _resnet_like(se=True)
    fused = fuse_se(base)
    for unit in ("unit1", "unit2"):
        assert type(fused.get_layer(f"{unit}_out")) is FusedSEResidual
        for part in ("3_conv", "3_bn", "se", "add"):  # folded into the fused layer
            with pytest.raises(ValueError, match="No such layer"):
                fused.get_layer(f"{unit}_{part}")
    # Five calls became one in each of the two units; nothing else changed.
    assert len(fused.layers) == len(base.layers) - 2 * 4
    _assert_custom_layers_copied(fused, base)
    x = _images(4, seed=2)
    names = ["stem_scale", "unit1_scale", "unit2_out"]
    fused_outs, plain_outs = _run(fused, x, names), _run(base, x, names)
    np.testing.assert_array_equal(fused_outs[1], plain_outs[1])  # stem_scale: untouched
    for ours, theirs in zip(fused_outs, plain_outs, strict=True):
        scale = np.abs(theirs).max()
        assert scale > 0.1  # a live tensor, not one that matches trivially
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * scale)


def test_rewrite_copies_sequential_and_substitutes_inputs():
    base = keras.Sequential(
        [keras.Input((6,), name="features"), keras.layers.Dense(4, name="d1"), ChannelScale()],
        name="seq",
    )
    base.layers[-1].set_weights([np.arange(4, dtype="float32")])
    copy = rewrite(base)
    assert not isinstance(copy, keras.Sequential) and copy.name == "seq"
    for twin, layer in zip(copy.layers[1:], base.layers, strict=True):
        assert twin is not layer and type(twin) is type(layer)
    x = np.random.default_rng(3).normal(size=(2, 6)).astype("float32")
    np.testing.assert_array_equal(copy.predict(x, verbose=0), base.predict(x, verbose=0))

    doubled = rewrite(base, inputs=lambda reference, tensor: tensor * 2.0)
    np.testing.assert_allclose(doubled(x), base(2 * x), rtol=1e-6)

    identity_input = keras.Input((3,))
    with pytest.raises(ValueError, match="also one of its outputs"):
        rewrite(keras.Model(identity_input, identity_input), inputs=lambda r, t: t + 1.0)


def test_rewrite_drops_calls_that_lead_to_no_output():
    """A call whose output the rewrite discards is not part of the new model."""
    base = _resnet_like(se=False)

    def skip_unit1_scale(layer, clone, *args, **kwargs):
        output = clone(*args, **kwargs)  # built and called, then ignored
        return args[0] if layer.name == "unit1_scale" else output

    new = rewrite(base, skip_unit1_scale)
    assert "unit1_scale" not in [layer.name for layer in new.layers]
    assert len(new.layers) == len(base.layers) - 1
    # The graph helpers see the same model: one node per layer, inputs first.
    graph = Graph(new)
    assert [node.operation.name for node in graph.nodes][:2] == ["stem", "stem_scale"]
    assert graph.producer(graph.inputs[0]) is None


def test_rewrite_of_a_model_compiled_with_a_plain_function_loss():
    """clone_model alone recompiles its copy and cannot find an unregistered loss."""
    base = _resnet_like(se=False)

    def squared_error(y_true, y_pred):
        return keras.ops.mean((y_true - y_pred) ** 2)

    base.compile(optimizer="sgd", loss=squared_error)
    with pytest.raises(TypeError, match="squared_error"):
        keras.models.clone_model(base)
    new = insert_attention(base, "se", reduction=2)
    assert not new.compiled and new.name == base.name
