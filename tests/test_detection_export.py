"""senet export of a detector: its raw head outputs, with parity, and decodable into the
detector's own boxes."""

import importlib.util
import math

import keras
import numpy as np
import pytest

from senet.layers.pyramid import KERAS_HUB_INSTALL

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("keras_hub") is None,
        reason=f"keras-hub is not installed ({KERAS_HUB_INSTALL})",
    ),
    pytest.mark.slow,  # builds and converts a RetinaNet
]


def test_a_detector_exports_its_heads_and_they_decode_to_its_boxes(tmp_path):
    from senet.data.scenes import synthetic_scenes
    from senet.export import export_model, load_exported
    from senet.models import retinanet
    from senet.models.retinanet import raw_detections

    keras.utils.set_random_seed(0)
    detector = retinanet(3, attention="se", image_size=64, channels=1)
    raw_model = raw_detections(detector)
    x = synthetic_scenes(4, image_size=64, seed=1).x
    heads = detector(x, training=False)
    # (B, anchors, 4 box deltas + 3 class probabilities): anchors of P3-P7, 9 a position
    anchors = 9 * sum(math.ceil(64 / 2**level) ** 2 for level in range(3, 8))  # P7: 1x1
    raw = np.asarray(raw_model(x))
    assert raw.shape == (4, anchors, 7)
    np.testing.assert_allclose(raw[..., :4], np.asarray(heads["bbox_regression"]), atol=1e-6)
    probabilities = 1 / (1 + np.exp(-np.asarray(heads["cls_logits"], np.float64)))
    np.testing.assert_allclose(raw[..., 4:], probabilities, atol=1e-6)

    result = export_model(detector, tmp_path / "det.tflite", format="tflite", samples=4)
    assert result.max_abs_diff <= 1e-4
    exported = np.asarray(load_exported(tmp_path / "det.tflite")(x))
    np.testing.assert_allclose(exported, raw, atol=1e-4)
    # the documented decoding: logits back from the probabilities, the detector's decoder
    p = np.clip(exported[..., 4:].astype(np.float64), 1e-7, 1 - 1e-7)
    decoded = detector.decode_predictions(
        {"bbox_regression": exported[..., :4], "cls_logits": np.log(p / (1 - p))}, x
    )
    direct = detector.decode_predictions(heads, x)
    count = int(direct["num_detections"][0])
    assert count == int(decoded["num_detections"][0]) > 0
    np.testing.assert_allclose(
        np.asarray(decoded["boxes"][0][:count]), np.asarray(direct["boxes"][0][:count]), atol=1e-2
    )
