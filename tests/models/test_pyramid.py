"""ResNet feature pyramids (``pyramid_outputs``, P2-P5) for keras-hub's detectors."""

import importlib.util

import keras
import numpy as np
import pytest

from senet.layers import PyramidEncoder
from senet.models import insert_attention, pyramid_encoder, pyramid_outputs, resnet


def _sizes(pyramid):
    return {level: tuple(tensor.shape[1:]) for level, tensor in pyramid.items()}


def test_a_resnet_exposes_its_stages_at_strides_4_to_32():
    model = resnet(18, input_shape=(64, 64, 3), attention="se", include_top=False)
    assert _sizes(model.pyramid_outputs) == {
        "P2": (16, 16, 64),
        "P3": (8, 8, 128),
        "P4": (4, 4, 256),
        "P5": (2, 2, 512),
    }
    # the tensors are the stage outputs of this model: a model made of them computes them
    probe = keras.Model(model.inputs, model.pyramid_outputs)
    x = np.random.default_rng(0).random((1, 64, 64, 3)).astype("float32")
    last = keras.Model(model.inputs, model.get_layer("conv5_block2_out").output)
    np.testing.assert_allclose(probe.predict(x, verbose=0)["P5"], last.predict(x, verbose=0))
    # a side that is no multiple of 32: each level is within one pixel of side / stride
    odd = resnet(18, input_shape=(72, 72, 3), include_top=False)
    assert _sizes(odd.pyramid_outputs)["P5"] == (3, 3, 512)
    # any input size: no stride check possible, the same levels
    free = resnet(50, input_shape=(None, None, 3), include_top=False)
    assert sorted(free.pyramid_outputs) == ["P2", "P3", "P4", "P5"]
    assert free.pyramid_outputs["P5"].shape[-1] == 2048


def test_pyramid_of_a_keras_applications_resnet_with_attention_inserted():
    base = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(64, 64, 3))
    model = insert_attention(base, "se")
    assert any(layer.name.endswith("_se") for layer in model.layers)
    assert _sizes(pyramid_outputs(model)) == {
        "P2": (16, 16, 256),
        "P3": (8, 8, 512),
        "P4": (4, 4, 1024),
        "P5": (2, 2, 2048),
    }


def test_models_without_a_detection_pyramid_are_refused():
    cifar = resnet(20, input_shape=(32, 32, 3))
    assert not hasattr(cifar, "pyramid_outputs")
    with pytest.raises(ValueError, match="CIFAR-layout ResNet has no detection pyramid"):
        pyramid_outputs(cifar)
    plain = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3, name="c")])
    with pytest.raises(ValueError, match="no conv<N>_block<M>_out layers"):
        pyramid_outputs(plain)


def test_an_encoder_keeps_its_pyramid_through_a_file(tmp_path):
    model = resnet(18, input_shape=(64, 64, 3), attention="se")  # with its classifier
    encoder = pyramid_encoder(model)
    assert encoder.output.shape[1:] == (2, 2, 512)
    assert encoder.get_layer("conv2_block1_se") is model.get_layer("conv2_block1_se")
    encoder.save(tmp_path / "encoder.keras")
    back = keras.saving.load_model(tmp_path / "encoder.keras")
    assert isinstance(back, PyramidEncoder)
    assert _sizes(back.pyramid_outputs) == _sizes(encoder.pyramid_outputs)
    x = np.random.default_rng(1).random((2, 64, 64, 3)).astype("float32")
    probe = keras.Model(back.inputs, back.pyramid_outputs["P3"])
    reference = keras.Model(model.inputs, model.get_layer("conv3_block2_out").output)
    np.testing.assert_allclose(
        probe.predict(x, verbose=0), reference.predict(x, verbose=0), rtol=1e-5, atol=1e-5
    )


needs_keras_hub = pytest.mark.skipif(
    importlib.util.find_spec("keras_hub") is None,
    reason="keras-hub is not installed (the senet[detection] extra)",
)


@needs_keras_hub
@pytest.mark.slow  # builds a RetinaNet: the full suite runs it, the quick lane not
def test_keras_hub_retinanet_backbone_builds_on_an_se_resnet():
    from keras_hub.models import RetinaNetBackbone

    encoder = resnet(18, input_shape=(64, 64, 3), attention="se", include_top=False)
    backbone = RetinaNetBackbone(
        image_encoder=encoder, min_level=3, max_level=7, use_p5=False, image_shape=(64, 64, 3)
    )
    features = backbone.predict(np.zeros((1, 64, 64, 3), "float32"), verbose=0)
    assert {level: value.shape[1] for level, value in features.items()} == {
        "P3": 8,
        "P4": 4,
        "P5": 2,
        "P6": 1,
        "P7": 1,
    }


@needs_keras_hub
@pytest.mark.slow  # builds a RetinaNet: the full suite runs it, the quick lane not
def test_a_retinanet_on_an_encoder_saves_and_loads(tmp_path):
    from keras_hub.models import RetinaNetBackbone, RetinaNetObjectDetector

    encoder = pyramid_encoder(resnet(18, input_shape=(64, 64, 1), attention="se"))
    backbone = RetinaNetBackbone(
        image_encoder=encoder, min_level=3, max_level=7, use_p5=False, image_shape=(64, 64, 1)
    )
    detector = RetinaNetObjectDetector(backbone=backbone, num_classes=3, bounding_box_format="xyxy")
    x = np.random.default_rng(2).random((2, 64, 64, 1)).astype("float32")
    before = detector.predict(x, verbose=0)
    detector.save(tmp_path / "detector.keras")
    back = keras.saving.load_model(tmp_path / "detector.keras")
    after = back.predict(x, verbose=0)
    np.testing.assert_allclose(after["boxes"], before["boxes"], atol=1e-3)
    np.testing.assert_allclose(after["confidence"], before["confidence"], atol=1e-5)
