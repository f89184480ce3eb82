"""predict_faces' crop preparation: the face crops the model sees, against NumPy references,
and the same model input from one image file through every command's path."""

import cv2
import keras
import numpy as np
import pytest

from senet.data import read_image
from senet.data.images import load_image, read_class_folders
from senet.predict import crop_inputs, predict_faces


def _luma(bgr: np.ndarray) -> np.ndarray:
    # ITU-R BT.601 weights, the ones OpenCV's BGR2GRAY (and read_image) use
    blue, green, red = (bgr[..., k].astype(np.float64) for k in range(3))
    return (0.299 * red + 0.587 * green + 0.114 * blue) / 255.0


def test_grey_crop_is_luma_in_unit_range_at_native_size():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(60, 80, 3), dtype=np.uint8)
    out = crop_inputs(image, [(10, 5, 48, 48)], 48, 1)
    assert out.shape == (1, 48, 48, 1) and out.dtype == np.float32
    reference = _luma(image[5:53, 10:58])
    # OpenCV computes grey in fixed point and rounds it to uint8: one grey level at most
    np.testing.assert_allclose(out[0, ..., 0], reference, atol=1 / 255 + 1e-6)


def test_colour_crop_is_rgb_and_shrinking_averages_blocks():
    image = np.zeros((96, 96, 3), np.uint8)
    image[..., 0] = 30  # blue
    image[..., 2] = np.kron(np.array([[0, 200], [100, 250]], np.uint8), np.ones((48, 48)))
    out = crop_inputs(image, [(0, 0, 96, 96)], 2, 3)
    assert out.shape == (1, 2, 2, 3)
    np.testing.assert_allclose(out[0, ..., 0], [[0, 200 / 255], [100 / 255, 250 / 255]], atol=1e-6)
    np.testing.assert_allclose(out[0, ..., 2], 30 / 255, atol=1e-6)
    np.testing.assert_allclose(out[0, ..., 1], 0.0)


def test_grey_frame_and_several_boxes():
    frame = np.full((50, 50), 51, np.uint8)  # 51 / 255 = 0.2
    out = crop_inputs(frame, [(0, 0, 10, 10), (5, 5, 40, 30)], 16, 3)
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
    np.testing.assert_allclose(crop_inputs(frame, [(0, 0, 20, 20)], 8, 1), 0.25, atol=1e-6)


# ------------------------------------------------- one loader: reader == predict == explain

SIDE = 32
_FLATTEN = {}


def _flatten_model(channels: int):
    """A model whose outputs are its input pixels: predict_faces then returns what it fed."""
    if channels not in _FLATTEN:
        inputs = keras.Input((SIDE, SIDE, channels))
        _FLATTEN[channels] = keras.Model(inputs, keras.layers.Flatten()(inputs))
    return _FLATTEN[channels]


def _image_file(folder, kind: str, height: int, width: int):
    rng = np.random.default_rng(height * width)
    shapes = {"gray": (), "bgr": (3,), "bgra": (4,), "gray16": (), "bgr16": (3,), "jpeg": (3,)}
    dtype = np.uint16 if kind.endswith("16") else np.uint8
    pixels = rng.integers(0, np.iinfo(dtype).max, (height, width, *shapes[kind]), dtype=dtype)
    path = folder / f"{kind}_{height}x{width}.{'jpg' if kind == 'jpeg' else 'png'}"
    assert cv2.imwrite(str(path), pixels)
    return path


@pytest.mark.parametrize("size", [(60, 80), (20, 24)], ids=["shrink", "enlarge"])
@pytest.mark.parametrize("kind", ["gray", "bgr", "bgra", "gray16", "bgr16", "jpeg"])
@pytest.mark.parametrize("channels", [1, 3])
def test_an_image_file_gives_the_same_model_input_to_every_command(tmp_path, kind, size, channels):
    """Training/evaluation (class-folder reader), predict and explain: identical pixels."""
    folder = tmp_path / "data" / "happy"
    folder.mkdir(parents=True)
    path = _image_file(folder, kind, *size)
    x, _, _ = read_class_folders(tmp_path / "data", image_size=SIDE, channels=channels)
    reader = x[0]
    assert reader.shape == (SIDE, SIDE, channels) and reader.dtype == np.float32
    assert not np.array_equal(reader, np.zeros_like(reader))

    whole = [(0, 0, size[1], size[0])]
    names = [str(k) for k in range(SIDE * SIDE * channels)]
    (face,) = predict_faces(_flatten_model(channels), path, names, boxes=whole)
    seen_by_predict = np.array(list(face.probabilities.values()), np.float32)
    np.testing.assert_array_equal(seen_by_predict.reshape(reader.shape), reader)
    # explain_photos decodes with load_image and crops with crop_inputs
    seen_by_explain = crop_inputs(load_image(path), whole, SIDE, channels)[0]
    np.testing.assert_array_equal(seen_by_explain, reader)
    np.testing.assert_array_equal(read_image(path, SIDE, channels), reader)
