import keras
import numpy as np
import pytest

import senet
from senet.models import unet


def trainable_params(model) -> int:
    return sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)


def scse_params(channels: int, reduction: float = 2) -> int:
    hidden = max(1, int(channels // reduction))
    return (2 * channels * hidden + hidden + channels) + (channels + 1)


def unet_params(rank, in_channels, num_classes, depth, base, attention_per_block) -> int:
    """Bias-free 3^rank convs + BN (gamma, beta), 2^rank transposed convs with bias, 1x1 head."""
    kernel, up = 3**rank, 2**rank

    def double_conv(cin, cout):
        return kernel * cin * cout + kernel * cout * cout + 2 * (2 * cout)

    total, channels = 0, in_channels
    for level in range(1, depth + 1):
        total += double_conv(channels, base * 2 ** (level - 1))
        channels = base * 2 ** (level - 1)
    total += double_conv(channels, base * 2**depth)
    channels = base * 2**depth
    for level in range(depth, 0, -1):
        filters = base * 2 ** (level - 1)
        total += up * channels * filters + filters  # transposed conv
        total += double_conv(2 * filters, filters)  # after concatenating the skip
        total += attention_per_block(filters)
        channels = filters
    return total + channels * num_classes + num_classes


def attention_layers(model):
    classes = tuple({type(senet.attention(kind)) for kind in senet.kinds()})
    return [layer for layer in model.layers if isinstance(layer, classes)]


def test_2d_output_shape_parameters_and_decoder_attention():
    model = unet((32, 32, 1), num_classes=3, depth=3, base_filters=8)
    assert model.output_shape == (None, 32, 32, 3)
    assert trainable_params(model) == unet_params(2, 1, 3, 3, 8, scse_params)
    names = [layer.name for layer in attention_layers(model)]
    assert names == ["decoder3_scse", "decoder2_scse", "decoder1_scse"]
    for level in (1, 2, 3):
        size, filters = 32 // 2 ** (level - 1), 8 * 2 ** (level - 1)
        layer = model.get_layer(f"decoder{level}_scse")
        assert isinstance(layer, senet.ChannelSpatialSqueezeExcite)
        assert layer.output.shape == (None, size, size, filters)
        assert model.get_layer(f"encoder{level}_relu2").output.shape == (None, size, size, filters)
    probabilities = model.predict(np.random.default_rng(0).random((2, 32, 32, 1)), verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, rtol=1e-5)


def test_3d_output_shape_and_attention():
    model = unet(
        (8, 16, 16, 2), num_classes=4, depth=2, base_filters=4, attention="se", reduction=2
    )
    assert model.output_shape == (None, 8, 16, 16, 4)
    assert model.get_layer("decoder1_se").output.shape == (None, 8, 16, 16, 4)
    assert model.get_layer("encoder2_pool").output.shape == (None, 2, 4, 4, 8)

    def se_params(channels):
        return 2 * channels * (channels // 2) + channels // 2 + channels

    assert trainable_params(model) == unet_params(3, 2, 4, 2, 4, se_params)
    assert model(np.zeros((1, 8, 16, 16, 2), "float32")).shape == (1, 8, 16, 16, 4)


def test_one_class_gives_a_sigmoid_probability_map():
    model = unet((16, 16, 1), num_classes=1, depth=2, base_filters=4)
    assert model.get_layer("predictions").activation is keras.activations.sigmoid
    output = model.predict(np.random.default_rng(0).random((2, 16, 16, 1)), verbose=0)
    assert output.shape == (2, 16, 16, 1)
    assert np.all((output > 0) & (output < 1))


def test_without_attention_there_are_no_attention_layers():
    for attention in (None, "none"):
        model = unet((16, 16, 1), attention=attention, depth=2, base_filters=4)
        assert attention_layers(model) == []
        assert trainable_params(model) == unet_params(2, 1, 2, 2, 4, lambda c: 0)
        assert model.name == "unet"


@pytest.mark.parametrize("kind", senet.kinds())
def test_every_attention_kind_goes_in_the_decoder(kind):
    model = unet((16, 16, 1), attention=kind, depth=2, base_filters=4)
    assert [layer.name for layer in attention_layers(model)] == [
        f"decoder2_{kind}",
        f"decoder1_{kind}",
    ]


def test_unknown_spatial_sizes_are_allowed():
    model = unet((None, None, 1), depth=2, base_filters=4)
    assert model(np.zeros((1, 12, 20, 1), "float32")).shape == (1, 12, 20, 2)


def test_a_few_training_steps_lower_the_loss():
    rng = np.random.default_rng(0)
    x = rng.random((4, 16, 16, 1), dtype="float32")
    y = (x > 0.5).astype("int32")[..., 0]  # a per-pixel target the network can learn
    model = unet((16, 16, 1), num_classes=2, depth=2, base_filters=4)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", run_eagerly=True)
    history = model.fit(x, y, batch_size=4, epochs=8, verbose=0).history["loss"]
    assert history[-1] < 0.8 * history[0]


def test_save_and_load_round_trip(tmp_path):
    model = unet((16, 16, 1), depth=2, base_filters=4)
    x = np.random.default_rng(3).random((2, 16, 16, 1), dtype="float32")
    model.save(tmp_path / "unet.keras")
    loaded = senet.load_model(tmp_path / "unet.keras")
    np.testing.assert_allclose(loaded(x, training=False), model(x, training=False), atol=1e-6)


def test_spatial_size_not_divisible_by_two_to_the_depth_is_refused():
    with pytest.raises(ValueError, match=r"`input_shape`.*divisible by 2\*\*depth = 16"):
        unet((40, 48, 1), depth=4)
    with pytest.raises(ValueError, match="divisible"):
        unet((8, 12, 12, 1), depth=3)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"input_shape": (32, 1)}, "input_shape"),
        ({"input_shape": (2, 2, 32, 32, 1)}, "input_shape"),
        ({"depth": 0}, "depth"),
        ({"base_filters": 0}, "base_filters"),
        ({"num_classes": 0}, "num_classes"),
        ({"attention": "gate"}, "attention"),
    ],
)
def test_bad_arguments_raise_value_errors_naming_them(kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        unet(**kwargs)
