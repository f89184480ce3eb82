import keras
import numpy as np
import pytest

import senet
from senet.models import emotion_cnn

WIDTHS = (16, 32, 64, 128)  # the documented default


def se_params(channels: int, reduction: float) -> int:
    hidden = max(1, int(channels // reduction))
    return 2 * channels * hidden + hidden + channels


def conv_net_params(widths, in_channels: int, num_classes: int) -> int:
    """Trainable parameters of the plain CNN: bias-free 3x3 convs, BN gamma/beta, Dense."""
    total, previous = 0, in_channels
    for width in widths:
        total += 9 * previous * width + 9 * width * width + 2 * (2 * width)
        previous = width
    return total + previous * num_classes + num_classes


def trainable_params(model) -> int:
    return sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)


ATTENTION_CLASSES = tuple({type(senet.attention(kind)) for kind in senet.kinds()})


def attention_layers(model):
    return [layer for layer in model.layers if isinstance(layer, ATTENTION_CLASSES)]


def test_default_model_size_and_output():
    model = emotion_cnn()
    assert 100_000 <= model.count_params() <= 1_000_000
    assert trainable_params(model) == conv_net_params(WIDTHS, 1, 7) + sum(
        se_params(width, 8) for width in WIDTHS
    )
    x = np.random.default_rng(0).random((3, 48, 48, 1), dtype="float32")
    probabilities = model.predict(x, verbose=0)
    assert probabilities.shape == (3, 7)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_se_layers_named_per_block_with_the_block_width():
    model = emotion_cnn(widths=(8, 16, 24), reduction=4)
    layers = attention_layers(model)
    assert [layer.name for layer in layers] == ["block1_se", "block2_se", "block3_se"]
    for layer, width in zip(layers, (8, 16, 24), strict=True):
        assert isinstance(layer, senet.SqueezeExcite)
        assert layer.input.shape[-1] == width
        assert [w.shape for w in layer.get_weights()] == [
            (width, width // 4),
            (width // 4,),
            (width // 4, width),
            (width,),
        ]


def test_plain_model_has_no_attention_and_exactly_the_se_parameters_fewer():
    for widths, reduction in ((WIDTHS, 8), ((12, 20), 3)):
        se = emotion_cnn(attention="se", reduction=reduction, widths=widths)
        plain = emotion_cnn(attention=None, widths=widths)
        assert attention_layers(plain) == []
        assert not any(isinstance(layer, senet.SqueezeExcite) for layer in plain.layers)
        assert emotion_cnn(attention="none", widths=widths).count_params() == plain.count_params()
        expected = sum(se_params(width, reduction) for width in widths)
        assert se.count_params() - plain.count_params() == expected
        assert trainable_params(se) - trainable_params(plain) == expected


def test_block_layers_have_predictable_names_and_resolutions():
    model = emotion_cnn(input_shape=(48, 48, 1))
    for index, width in enumerate(WIDTHS, start=1):
        size = 48 // 2 ** (index - 1)
        for suffix in ("conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "se"):
            layer = model.get_layer(f"block{index}_{suffix}")
            assert layer.output.shape == (None, size, size, width)
        assert model.get_layer(f"block{index}_pool").output.shape == (
            None,
            size // 2,
            size // 2,
            width,
        )
        assert model.get_layer(f"block{index}_conv1").use_bias is False
    assert model.get_layer("predictions").activation is keras.activations.softmax


@pytest.mark.parametrize("kind", senet.kinds())
def test_every_attention_kind_builds(kind):
    model = emotion_cnn(input_shape=(16, 16, 1), attention=kind, widths=(8, 16), num_classes=3)
    assert [layer.name for layer in attention_layers(model)] == [f"block1_{kind}", f"block2_{kind}"]
    assert model.name == f"emotion_cnn_{kind}"
    x = np.random.default_rng(1).random((2, 16, 16, 1), dtype="float32")
    assert model(x).shape == (2, 3)


def test_attention_options_reach_the_layers():
    model = emotion_cnn(
        widths=(8, 16), attention_options={"squeeze": "max", "gate": "hard_sigmoid"}
    )
    for layer in attention_layers(model):
        assert layer.squeeze == "max"
        assert layer.gate == "hard_sigmoid"


def test_a_few_training_steps_lower_the_loss():
    rng = np.random.default_rng(0)
    x = rng.random((16, 24, 24, 1), dtype="float32")
    y = rng.integers(0, 7, size=16)
    model = emotion_cnn(input_shape=(24, 24, 1), widths=(8, 16, 32), dropout=0.0)
    # Eager: for a handful of steps, tracing a graph costs more than it saves.
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", run_eagerly=True)
    history = model.fit(x, y, batch_size=16, epochs=8, verbose=0).history["loss"]
    assert history[-1] < 0.8 * history[0]


def test_save_and_load_round_trip(tmp_path):
    model = emotion_cnn(input_shape=(16, 16, 1), widths=(8, 16), attention="se")
    x = np.random.default_rng(2).random((4, 16, 16, 1), dtype="float32")
    path = tmp_path / "emotion.keras"
    model.save(path)
    loaded = senet.load_model(path)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    assert isinstance(loaded.get_layer("block2_se"), senet.SqueezeExcite)
    np.testing.assert_allclose(loaded(x, training=False), model(x, training=False), atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"attention": "xse"}, "attention"),
        ({"widths": ()}, "widths"),
        ({"widths": (16, 0)}, "widths"),
        ({"input_shape": (8, 8, 1)}, "input_shape"),
        ({"input_shape": (48, 48)}, "input_shape"),
        ({"num_classes": 0}, "num_classes"),
        ({"dropout": 1.0}, "dropout"),
        ({"attention_options": {"name": "x"}}, "attention_options"),
    ],
)
def test_bad_arguments_raise_value_errors_naming_them(kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        emotion_cnn(**kwargs)
