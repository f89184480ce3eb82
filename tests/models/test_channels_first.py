"""channels_first on every CPU: networks, fused paths, explanations and exports.

TensorFlow's CPU Conv2D/Conv3D take NCHW only through oneDNN, which TensorFlow turns on by
default only on CPUs with AVX-512-class features; elsewhere (or with
``TF_ENABLE_ONEDNN_OPTS=0``) an NCHW convolution fails at run time. senet's networks are
channels_last whatever Keras' global image data format says, and its layers run their
convolutions channels_last inside, so both work on any CPU. tests/test_backends.py runs this
file once more with oneDNN off, so that the class of failure shows on every machine.
"""

import importlib.util

import keras
import numpy as np
import pytest

import senet
from randomized import randomize  # random BN statistics and SE biases
from senet.explain import attention_map
from senet.export import export_model
from senet.models import emotion_cnn, resnet, unet
from senet.models.fused import FusedSEResidual, fuse_for_inference

KINDS = ["se", "eca", "sse", "scse", "cbam"]


def _built_under(data_format: str, build):
    keras.config.set_image_data_format(data_format)
    try:
        keras.utils.set_random_seed(0)
        return build()
    finally:
        keras.config.set_image_data_format("channels_last")


def _outputs(model, x):
    keras.config.set_image_data_format("channels_first")  # as a user with that setting runs it
    try:
        return keras.ops.convert_to_numpy(model(x, training=False))
    finally:
        keras.config.set_image_data_format("channels_last")


NETWORKS = {
    **{
        f"emotion_cnn-{kind}": (
            lambda kind=kind: emotion_cnn((16, 16, 1), 3, attention=kind, widths=(4, 8)),
            (2, 16, 16, 1),
        )
        for kind in KINDS
    },
    "unet2d-scse": (lambda: unet((16, 16, 1), 2, depth=2, base_filters=4), (2, 16, 16, 1)),
    "unet3d-cbam": (
        lambda: unet((8, 8, 8, 1), 2, attention="cbam", depth=1, base_filters=4),
        (1, 8, 8, 8, 1),
    ),
    "resnet20-se": (
        lambda: resnet(20, input_shape=(16, 16, 3), num_classes=3, attention="se"),
        (2, 16, 16, 3),
    ),
}


@pytest.mark.parametrize("name", list(NETWORKS))
def test_networks_are_channels_last_under_a_global_channels_first(name, rng):
    build, shape = NETWORKS[name]
    first = _built_under("channels_first", build)
    last = _built_under("channels_last", build)
    formats = {getattr(layer, "data_format", None) for layer in first.layers} - {None}
    assert formats == {"channels_last"}, formats
    first.set_weights(last.get_weights())
    x = rng.uniform(size=shape).astype("float32")
    np.testing.assert_allclose(_outputs(first, x), _outputs(last, x), rtol=1e-5, atol=1e-6)


def test_fused_resnet_under_a_global_channels_first(rng):
    # The fused tails call keras.ops.conv themselves: with the format left to the global
    # setting they would read an NHWC map as NCHW.
    keras.utils.set_random_seed(3)
    model = randomize(
        resnet(50, input_shape=(32, 32, 3), num_classes=3, attention="se", reduction=16)
    )
    fused = _built_under("channels_first", lambda: fuse_for_inference(model)[0])
    assert sum(isinstance(layer, FusedSEResidual) for layer in fused.layers) == 16
    for batch in (1, 2):  # batch 1 scales the kernel in stages 2-3, batch 2 the output
        x = rng.uniform(size=(batch, 32, 32, 3)).astype("float32")
        np.testing.assert_allclose(_outputs(fused, x), _outputs(model, x), rtol=1e-4, atol=1e-5)


def _attention_cnn(data_format: str) -> keras.Model:
    """Every attention kind in a row on a (4, 8, 8) or (8, 8, 4) map, then a classifier."""
    shape = (4, 8, 8) if data_format == "channels_first" else (8, 8, 4)
    inputs = keras.Input(shape)
    x = inputs
    for kind in KINDS:
        x = senet.attention(kind, data_format=data_format, name=kind)(x)
    x = keras.layers.GlobalAveragePooling2D(data_format=data_format)(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


def test_a_channels_first_attention_model_explains_like_its_channels_last_twin(rng):
    first, last = _attention_cnn("channels_first"), _attention_cnn("channels_last")
    first.set_weights(last.get_weights())  # every weight is layout-free
    x_last = rng.uniform(size=(3, 8, 8, 4)).astype("float32")
    x_first = np.moveaxis(x_last, -1, 1)
    np.testing.assert_allclose(first.predict(x_first, verbose=0), last.predict(x_last, verbose=0))
    for layer in ("cbam", "scse"):
        np.testing.assert_allclose(
            attention_map(first, x_first, layer=layer),
            attention_map(last, x_last, layer=layer),
            atol=1e-5,
        )


FORMATS = [
    "tflite",
    pytest.param(
        "onnx",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("tf2onnx") is None, reason="needs senet[export]"
        ),
    ),
]


@pytest.mark.parametrize("format", FORMATS)
def test_a_channels_first_attention_model_exports_with_parity(format, tmp_path):
    model = _attention_cnn("channels_first")
    result = export_model(model, tmp_path / f"model.{format}", format=format, samples=8)
    assert result.max_abs_diff < 1e-4 and result.top1_agreement == 1.0
