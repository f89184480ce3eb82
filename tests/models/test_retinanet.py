"""senet.models.retinanet: keras-hub's RetinaNet on senet ResNets."""

import importlib.util
import sys

import keras
import numpy as np
import pytest

from senet.models import resnet, retinanet
from senet.models.retinanet import KERAS_HUB_INSTALL

needs_keras_hub = pytest.mark.skipif(
    importlib.util.find_spec("keras_hub") is None,
    reason=f"keras-hub is not installed ({KERAS_HUB_INSTALL})",
)


def test_without_keras_hub_the_error_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "keras_hub", None)  # import fails
    with pytest.raises(ImportError, match='--no-deps "keras-hub'):
        retinanet(3, image_size=64)


def test_bad_arguments_are_refused_before_anything_is_built():
    with pytest.raises(ValueError, match="backbone"):
        retinanet(3, backbone="resnet20")  # a CIFAR depth: no detection pyramid
    with pytest.raises(ValueError, match="backbone"):
        retinanet(3, backbone="vgg16")
    with pytest.raises(ValueError, match="channels"):
        retinanet(3, channels=2)
    model = resnet(18, input_shape=(64, 64, 1), include_top=False)
    with pytest.raises(ValueError, match="attention"):
        retinanet(3, backbone=model, attention="se", image_size=64, channels=1)
    with pytest.raises(ValueError, match=r"takes \(64, 64, 1\)"):
        retinanet(3, backbone=model, image_size=96, channels=1)


@needs_keras_hub
@pytest.mark.slow  # builds a RetinaNet: the full suite runs it, the quick lane not
def test_an_se_backbone_adds_exactly_its_attention_parameters():
    plain = retinanet(7, image_size=64, channels=1)
    se = retinanet(7, attention="se", image_size=64, channels=1)
    encoder = resnet(18, input_shape=(64, 64, 1), include_top=False)
    se_encoder = resnet(18, input_shape=(64, 64, 1), include_top=False, attention="se")
    assert se.count_params() - plain.count_params() == (
        se_encoder.count_params() - encoder.count_params()
    )
    out = se.predict(np.zeros((2, 64, 64, 1), "float32"), verbose=0)
    assert out["boxes"].shape == (2, 100, 4) and out["labels"].shape == (2, 100)


@needs_keras_hub
@pytest.mark.slow  # builds a RetinaNet: the full suite runs it, the quick lane not
def test_a_saved_resnet_file_is_a_backbone(tmp_path):
    keras.utils.set_random_seed(0)
    resnet(18, input_shape=(64, 64, 3), attention="eca", num_classes=5).save(tmp_path / "r.keras")
    detector = retinanet(2, backbone=tmp_path / "r.keras", image_size=64)
    layers = detector.backbone.image_encoder.layers
    names = [layer.name for layer in layers]
    assert "conv3_block1_eca" in names and "predictions" not in names
    # the saved statistics stay: its BatchNormalization layers are frozen (inference mode)
    norms = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) == 20 and not any(layer.trainable for layer in norms)
    # a built backbone normalizes by groups; the anchor size stays with the saved detector
    detector = retinanet(2, image_size=64, anchor_size=2)
    detector.save(tmp_path / "d.keras")
    from senet.layers import load_model

    assert load_model(tmp_path / "d.keras", compile=False).anchor_generator.anchor_size == 2
    built = detector.backbone.image_encoder.layers
    # GroupNorm in the heads too: keras-hub's heads alone start at box deltas of std ~37
    x = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
    assert np.std(np.asarray(detector(x)["bbox_regression"])) < 5
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in built)
    assert sum(isinstance(layer, keras.layers.GroupNormalization) for layer in built) == 20
