"""fuse_se: the fused inference model computes what the plain SE model computes."""

import keras
import numpy as np
import pytest

from randomized import randomize
from senet.bench import count_flops
from senet.layers import SqueezeExcite
from senet.layers.fused import scales_kernel
from senet.models import resnet
from senet.models.fused import FusedSEResidual, fuse_se


def _features(model, x, name):
    """The model's output and the named feature map, in inference mode."""
    probe = keras.Model(model.input, [model.get_layer(name).output, model.output])
    return [keras.ops.convert_to_numpy(t) for t in probe(x, training=False)]


def _assert_same_function(fused, plain, x, name):
    fused_map, fused_out = _features(fused, x, name)
    plain_map, plain_out = _features(plain, x, name)
    scale = np.abs(plain_map).max()
    assert scale > 0.1  # a live feature map, not a dead one that matches trivially
    np.testing.assert_allclose(fused_map, plain_map, rtol=1e-4, atol=1e-4 * scale)
    np.testing.assert_allclose(fused_out, plain_out, rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def se_resnet50():
    keras.utils.set_random_seed(1)
    model = resnet(50, input_shape=(64, 64, 3), num_classes=5, attention="se")
    return randomize(model)


@pytest.fixture(scope="module")
def fused_resnet50(se_resnet50):
    return fuse_se(se_resnet50)


@pytest.mark.parametrize("implementation", ["auto", "ops", "xla"])
def test_fused_bottleneck_resnet_equals_plain(se_resnet50, fused_resnet50, implementation, rng):
    if implementation == "auto":
        fused = fused_resnet50
    else:
        fused = fuse_se(se_resnet50, implementation=implementation)
    fused_layers = [layer for layer in fused.layers if isinstance(layer, FusedSEResidual)]
    assert len(fused_layers) == 16
    assert not any(isinstance(layer, SqueezeExcite) for layer in fused.layers)
    # Every bottleneck tail ends in a 1x1 stride-1 conv: the squeeze comes from its input.
    assert {layer.squeeze_from for layer in fused_layers} == {"input"}
    for batch in (1, 3):
        x = rng.normal(size=(batch, 64, 64, 3)).astype("float32")
        _assert_same_function(fused, se_resnet50, x, "conv5_block3_out")


def test_fused_basic_blocks_pool_the_output(rng):
    model = randomize(resnet(20, input_shape=(16, 16, 3), attention="se", reduction=4))
    fused = fuse_se(model)
    fused_layers = [layer for layer in fused.layers if isinstance(layer, FusedSEResidual)]
    assert len(fused_layers) == 9
    # The 3x3 'same' conv's mean is not the conv of the mean (borders): SE's own pool.
    assert {layer.squeeze_from for layer in fused_layers} == {"output"}
    for batch in (1, 3):
        x = rng.normal(size=(batch, 16, 16, 3)).astype("float32")
        _assert_same_function(fused, model, x, "conv4_block3_out")


def test_fused_model_saves_and_loads(fused_resnet50, tmp_path, rng):
    fused = fused_resnet50
    path = tmp_path / "fused.keras"
    fused.save(path)
    loaded = keras.models.load_model(path)
    x = rng.normal(size=(2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x, training=False)),
        keras.ops.convert_to_numpy(fused(x, training=False)),
        rtol=1e-6,
        atol=1e-7,
    )
    layer = loaded.get_layer("conv3_block2_out")
    assert isinstance(layer, FusedSEResidual)
    assert layer.get_config() == fused.get_layer("conv3_block2_out").get_config()


@pytest.mark.parametrize("placement", ["pre", "post"])
def test_other_placements_raise_or_stay_unfused(placement, rng):
    model = randomize(
        resnet(20, input_shape=(16, 16, 3), attention="se", reduction=4, placement=placement)
    )
    with pytest.raises(ValueError, match=r"'standard' placement(.|\n)*conv2_block1_se"):
        fuse_se(model)
    # Nothing else to fuse: even with strict=False there is no fused tail.
    with pytest.warns(UserWarning, match="unfused"), pytest.raises(ValueError, match="nothing"):
        fuse_se(model, strict=False)


def test_identity_placement_fuses_projections_and_keeps_the_rest(rng):
    model = randomize(
        resnet(20, input_shape=(16, 16, 3), attention="se", reduction=4, placement="identity")
    )
    with pytest.raises(ValueError, match="conv2_block1_se"):
        fuse_se(model)
    with pytest.warns(UserWarning, match="unfused"):
        fused = fuse_se(model, strict=False)
    # The two projection shortcuts (strided 1x1 conv -> BN -> SE) fuse; 7 SE layers stay.
    assert sum(isinstance(layer, FusedSEResidual) for layer in fused.layers) == 2
    assert sum(isinstance(layer, SqueezeExcite) for layer in fused.layers) == 7
    x = rng.normal(size=(3, 16, 16, 3)).astype("float32")
    _assert_same_function(fused, model, x, "conv4_block3_out")


def test_plain_resnet_needs_fold_plain(rng):
    model = randomize(resnet(20, input_shape=(16, 16, 3)))
    with pytest.raises(ValueError, match="fold_plain"):
        fuse_se(model)
    folded = fuse_se(model, fold_plain=True)
    layers = [layer for layer in folded.layers if isinstance(layer, FusedSEResidual)]
    assert len(layers) == 9 and not any(layer.excite for layer in layers)
    x = rng.normal(size=(2, 16, 16, 3)).astype("float32")
    _assert_same_function(folded, model, x, "conv4_block3_out")


def test_fused_layer_is_inference_only(fused_resnet50, rng):
    fused = fused_resnet50
    tails = [layer for layer in fused.layers if isinstance(layer, FusedSEResidual)]
    assert all(not layer.trainable and not layer.trainable_weights for layer in tails)
    x = rng.normal(size=(1, 64, 64, 3)).astype("float32")
    with pytest.raises(RuntimeError, match="inference-only"):
        fused(x, training=True)


def test_fused_layer_config_and_validation():
    layer = FusedSEResidual(units=4, squeeze_from="input", gate="hard_sigmoid", name="tail")
    clone = FusedSEResidual.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    with pytest.raises(ValueError, match="squeeze_from"):
        FusedSEResidual(kernel_size=3, squeeze_from="input")
    with pytest.raises(ValueError, match="implementation"):
        FusedSEResidual(implementation="cuda")
    with pytest.raises(ValueError, match="Sequential|functional"):
        fuse_se(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))


@pytest.mark.parametrize("batch", [2, 1])
def test_fused_layer_numpy_reference(batch, rng):
    """One tail against the formula relu(shortcut + s * (h @ K + b)), s from mean(h).

    With one sample the layer scales the kernel instead of the output (6 input channels
    per output channel < 25 pixels): the same formula must come out.
    """
    c_in, c, units = 6, 8, 3
    layer = FusedSEResidual(units=units, squeeze_from="input", implementation="tf")
    h = rng.normal(size=(batch, 5, 5, c_in)).astype("float32")
    shortcut = rng.normal(size=(batch, 5, 5, c)).astype("float32")
    assert scales_kernel(h.shape, (1, 1, c_in, c), "input") == (batch == 1)
    layer([h, shortcut])
    kernel, bias = rng.normal(size=(1, 1, c_in, c)), rng.normal(size=c)
    w1, b1 = rng.normal(size=(c_in, units)), rng.normal(size=units)
    w2, b2 = rng.normal(size=(units, c)), rng.normal(size=c)
    layer.set_weights([kernel, bias, w1, b1, w2, b2])
    u = h @ kernel[0, 0] + bias
    s = 1 / (1 + np.exp(-(np.maximum(h.mean(axis=(1, 2)) @ w1 + b1, 0) @ w2 + b2)))
    expected = np.maximum(shortcut + u * s[:, None, None, :], 0)
    out = keras.ops.convert_to_numpy(layer([h, shortcut]))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    # FLOPs at batch 2: conv 2*50*6*8 + bias 50*8, pool 2*25*6, MLP 2*2*3*(6+8) +
    # 2*2*(3+8), scale, add and ReLU 3*2*25*8, per the count_flops convention.
    n = 2 * 25
    hand = 2 * n * c_in * c + n * c + n * c_in + 2 * 2 * units * (c_in + c)
    hand += 2 * 2 * (units + c) + 3 * n * c
    inputs = [keras.Input((5, 5, c_in)), keras.Input((5, 5, c))]
    model = keras.Model(inputs, layer(inputs))
    assert count_flops(model, batch=2) == hand


def test_fused_layer_is_registered_by_senet_layers():
    import senet.layers
    import senet.models

    assert senet.layers.FusedSEResidual is FusedSEResidual
    assert senet.models.FusedSEResidual is FusedSEResidual and senet.models.fuse_se is fuse_se
    assert FusedSEResidual.__module__ == "senet.layers.fused"
    registered = keras.saving.get_registered_object("senet>FusedSEResidual")
    assert registered is FusedSEResidual


def test_fused_layer_checks_use_one_message_shape():
    with pytest.raises(ValueError, match=r"`units` must be a positive integer, got 0$"):
        FusedSEResidual(units=0)
    with pytest.raises(ValueError, match=r"`kernel_size` must be .*, got \(1, 2, 3\)$"):
        FusedSEResidual(kernel_size=(1, 2, 3))
    with pytest.raises(ValueError, match=r"`squeeze_from` must be 'output' unless"):
        FusedSEResidual(kernel_size=3, squeeze_from="input")
    # One rule for case, as every other senet choice.
    assert FusedSEResidual(squeeze="AVG", padding="SAME").get_config()["padding"] == "same"


@pytest.mark.parametrize("implementation", ["tf", "xla", "ops"])
def test_fused_model_runs_inside_a_tf_function(implementation, rng):
    # What senet.bench and senet.predict do: call the model inside an outer tf.function.
    tf = pytest.importorskip("tensorflow")
    model = randomize(resnet(20, input_shape=(16, 16, 3), attention="se", reduction=4))
    fused = fuse_se(model, implementation=implementation)
    x = rng.normal(size=(2, 16, 16, 3)).astype("float32")
    traced = tf.function(lambda batch: fused(batch, training=False))
    np.testing.assert_allclose(
        traced(tf.constant(x)).numpy(),
        keras.ops.convert_to_numpy(fused(x, training=False)),
        rtol=1e-5,
        atol=1e-5,
    )
