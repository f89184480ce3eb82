"""predict_faces' crop preparation: the face crops the model sees, against NumPy references."""

import keras
import numpy as np

from senet.predict import _crop_inputs, predict_faces


def _luma(bgr: np.ndarray) -> np.ndarray:
    # ITU-R BT.601 weights, the ones OpenCV's BGR2GRAY (and read_image) use
    blue, green, red = (bgr[..., k].astype(np.float64) for k in range(3))
    return (0.299 * red + 0.587 * green + 0.114 * blue) / 255.0


def test_grey_crop_is_luma_in_unit_range_at_native_size():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(60, 80, 3), dtype=np.uint8)
    out = _crop_inputs(image, [(10, 5, 48, 48)], 48, 1)
    assert out.shape == (1, 48, 48, 1) and out.dtype == np.float32
    reference = _luma(image[5:53, 10:58])
    # OpenCV computes grey in fixed point and rounds it to uint8: one grey level at most
    np.testing.assert_allclose(out[0, ..., 0], reference, atol=1 / 255 + 1e-6)


def test_colour_crop_is_rgb_and_shrinking_averages_blocks():
    image = np.zeros((96, 96, 3), np.uint8)
    image[..., 0] = 30  # blue
    image[..., 2] = np.kron(np.array([[0, 200], [100, 250]], np.uint8), np.ones((48, 48)))
    out = _crop_inputs(image, [(0, 0, 96, 96)], 2, 3)
    assert out.shape == (1, 2, 2, 3)
    np.testing.assert_allclose(out[0, ..., 0], [[0, 200 / 255], [100 / 255, 250 / 255]], atol=1e-6)
    np.testing.assert_allclose(out[0, ..., 2], 30 / 255, atol=1e-6)
    np.testing.assert_allclose(out[0, ..., 1], 0.0)


def test_grey_frame_and_several_boxes():
    frame = np.full((50, 50), 51, np.uint8)  # 51 / 255 = 0.2
    out = _crop_inputs(frame, [(0, 0, 10, 10), (5, 5, 40, 30)], 16, 3)
    assert out.shape == (2, 16, 16, 3)
    np.testing.assert_allclose(out, 0.2, atol=1e-6)


def test_predict_faces_with_boxes_matches_the_model_on_the_reference_crop():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 1))
    flat = keras.layers.Flatten()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(flat))
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, size=(40, 40, 3), dtype=np.uint8)
    faces = predict_faces(model, frame, ["a", "b", "c"], boxes=[(4, 8, 16, 16)])
    crop = _luma(frame[8:24, 4:20]).astype(np.float32)[None, ..., None]
    expected = keras.ops.convert_to_numpy(model(crop))[0]
    assert len(faces) == 1 and faces[0].box == (4, 8, 16, 16)
    got = [faces[0].probabilities[name] for name in "abc"]
    np.testing.assert_allclose(got, expected, atol=1e-2)
    assert faces[0].label == "abc"[int(np.argmax(got))]


def test_float_frames_are_taken_in_unit_range():
    frame = np.full((20, 20, 3), 0.25, np.float32)
    np.testing.assert_allclose(_crop_inputs(frame, [(0, 0, 20, 20)], 8, 1), 0.25, atol=1e-6)
