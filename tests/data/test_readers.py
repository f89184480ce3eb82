"""Readers: FER2013 csv, FER-style and class folders, .npz, read_image, load_dataset splits,
and every kind of bad data."""

import csv

import cv2
import numpy as np
import pytest

from senet.data import EMOTIONS, DataError, ImageSet, load_dataset, read_image
from senet.data.fer2013 import read_fer2013_csv
from senet.data.images import fit_images, read_npz

SIDE = 48


def _pixels(rng, side=SIDE):
    return rng.integers(0, 256, (side, side), dtype=np.uint8)


def _write_csv(path, rows, header=("emotion", "pixels", "Usage")):
    """rows: (emotion, pixels array or raw string, usage) tuples or raw lists of fields."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in rows:
            if isinstance(row, tuple):
                emotion, pixels, *usage = row
                if isinstance(pixels, np.ndarray):
                    pixels = " ".join(str(v) for v in pixels.reshape(-1))
                row = [emotion, pixels, *usage]
            writer.writerow(row)
    return path


@pytest.fixture
def fer_rows(rng):
    return [
        (3, _pixels(rng), "Training"),
        (0, _pixels(rng), "PublicTest"),
        (6, _pixels(rng), "PrivateTest"),
    ]


# ------------------------------------------------------------------------ FER2013 csv


def test_fer_csv_round_trip(tmp_path, fer_rows):
    path = _write_csv(tmp_path / "fer.csv", fer_rows)
    pixels, labels, splits = read_fer2013_csv(path)
    np.testing.assert_array_equal(pixels, np.stack([p for _, p, _ in fer_rows]))
    assert labels.tolist() == [3, 0, 6] and labels.dtype == np.int64
    assert splits.tolist() == ["train", "val", "test"]

    data = load_dataset(path)
    for split, (label, image, _) in zip(("train", "val", "test"), fer_rows, strict=True):
        part = data[split]
        assert isinstance(part, ImageSet) and part.class_names == EMOTIONS
        assert part.x.shape == (1, SIDE, SIDE, 1) and part.x.dtype == np.float32
        assert part.y.tolist() == [label] and part.y.dtype == np.int64
        np.testing.assert_allclose(part.x[0, :, :, 0], image / 255.0, atol=1e-6)
        assert part.masks is None


def test_fer_csv_resized_and_rgb(tmp_path, fer_rows):
    data = load_dataset(_write_csv(tmp_path / "fer.csv", fer_rows), image_size=24, channels=3)
    x = data["train"].x
    assert x.shape == (1, 24, 24, 3)
    # INTER_AREA halving is the mean of each 2x2 block; gray -> RGB copies the channel.
    # The resize runs on the uint8 pixels (before floats, as for every model input), so
    # each mean is rounded to a whole grey level: half a level at most.
    image = fer_rows[0][1].astype(np.float64) / 255
    blocks = image.reshape(24, 2, 24, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(x[0, :, :, 0], blocks, atol=0.5 / 255 + 1e-6)
    np.testing.assert_array_equal(x[0, :, :, 1], x[0, :, :, 0])
    np.testing.assert_array_equal(x[0, :, :, 2], x[0, :, :, 0])


def test_fer_csv_without_usage_is_split_stratified(tmp_path, rng):
    rows = [(k % 7, _pixels(rng)) for k in range(70)]
    path = _write_csv(tmp_path / "plain.csv", rows, header=("emotion", "pixels"))
    data = load_dataset(path, val_fraction=0.2, test_fraction=0.1, seed=1)
    assert [len(data[s]) for s in ("train", "val", "test")] == [49, 14, 7]
    assert np.bincount(data["val"].y, minlength=7).tolist() == [2] * 7
    assert np.bincount(data["test"].y, minlength=7).tolist() == [1] * 7
    # Every image ends up in exactly one split, with its own label.
    originals = {np.stack([p]).tobytes(): e for e, p in rows}
    seen = []
    for split in data.values():
        for image, label in zip(split.x, split.y, strict=True):
            key = np.round(image[:, :, 0] * 255).astype(np.uint8)[None].tobytes()
            assert originals[key] == label
            seen.append(key)
    assert len(set(seen)) == 70


def test_fer_csv_missing_val_is_carved_from_train(tmp_path, rng):
    rows = [(k % 7, _pixels(rng), "Training") for k in range(28)] + [
        (1, _pixels(rng), "PrivateTest")
    ]
    data = load_dataset(_write_csv(tmp_path / "f.csv", rows), val_fraction=0.25)
    assert [len(data[s]) for s in ("train", "val", "test")] == [21, 7, 1]


def _bad_rows(rng):
    good = _pixels(rng)
    text = " ".join(map(str, good.reshape(-1)))
    return {
        "malformed": ["3", text, "Training", "extra"],
        "short": (3, " ".join(map(str, good.reshape(-1)[:-1])), "Training"),
        "not_square": (3, text + " 7", "Training"),
        "non_numeric": (3, " ".join([*map(str, good.reshape(-1)[:-1]), "ab"]), "Training"),
        "float_pixel": (3, "1.5 " + " ".join(map(str, good.reshape(-1)[1:])), "Training"),
        "pixel_range": (3, "300 " + " ".join(map(str, good.reshape(-1)[1:])), "Training"),
        "label_high": (7, good, "Training"),
        "label_negative": (-1, good, "Training"),
        "label_text": ("happy", good, "Training"),
        "usage": (3, good, "Holdout"),
    }


BAD_CASES = [
    "malformed",
    "short",
    "not_square",
    "non_numeric",
    "float_pixel",
    "pixel_range",
    "label_high",
    "label_negative",
    "label_text",
    "usage",
]
BAD_MESSAGES = {
    "malformed": "4 fields",
    "short": "2303 pixel values, not a square",
    "not_square": "2305 pixel values, not a square",
    "non_numeric": "non-numeric",
    "float_pixel": "non-numeric",
    "pixel_range": r"\[0, 255\]",
    "label_high": r"label 7 out of range \[0, 7\)",
    "label_negative": r"label -1 out of range",
    "label_text": "not an integer",
    "usage": "Usage",
}


@pytest.mark.parametrize("case", BAD_CASES)
def test_fer_csv_bad_row_raises_with_file_and_line(tmp_path, rng, fer_rows, case):
    rows = [fer_rows[0], _bad_rows(rng)[case], fer_rows[1], fer_rows[2]]
    path = _write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(DataError, match=BAD_MESSAGES[case]) as info:
        load_dataset(path)
    message = str(info.value)
    assert "bad.csv" in message and "line 3:" in message and "\n" not in message


@pytest.mark.parametrize("case", BAD_CASES)
def test_fer_csv_skip_bad_warns_with_count(tmp_path, rng, fer_rows, case):
    bad = _bad_rows(rng)[case]
    rows = [fer_rows[0], bad, fer_rows[1], bad, fer_rows[2]]
    path = _write_csv(tmp_path / "bad.csv", rows)
    with pytest.warns(UserWarning, match=r"skipped 2 bad row\(s\); first: .*line 3"):
        data = load_dataset(path, skip_bad=True)
    assert [data[s].y.tolist() for s in ("train", "val", "test")] == [[3], [0], [6]]
    np.testing.assert_allclose(data["test"].x[0, :, :, 0], fer_rows[2][1] / 255.0, atol=1e-6)


def test_fer_csv_all_rows_bad_is_an_error_even_when_skipping(tmp_path, rng):
    rows = [(9, _pixels(rng), "Training"), (8, _pixels(rng), "Training")]
    path = _write_csv(tmp_path / "bad.csv", rows)
    with pytest.warns(UserWarning, match="skipped 2"), pytest.raises(DataError, match="no valid"):
        load_dataset(path, skip_bad=True)


@pytest.mark.parametrize(
    "header,missing", [(("emotion", "Usage"), "pixels"), (("label", "pixels"), "emotion")]
)
def test_fer_csv_missing_column(tmp_path, header, missing):
    path = tmp_path / "cols.csv"
    path.write_text(",".join(header) + "\n1,2\n")
    with pytest.raises(DataError, match=f"cols.csv, line 1: missing column.*{missing}"):
        load_dataset(path)


def test_fer_csv_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(DataError, match="empty.csv: empty file"):
        load_dataset(path)


def test_fer_csv_other_square_size_is_accepted(tmp_path, rng):
    rows = [(2, _pixels(rng, 8), "Training"), (4, _pixels(rng, 8), "PrivateTest")]
    data = load_dataset(_write_csv(tmp_path / "small.csv", rows), image_size=8)
    np.testing.assert_allclose(data["test"].x[0, :, :, 0], rows[1][1] / 255.0, atol=1e-6)


# ---------------------------------------------------------------------------- images


def test_read_image_gray_round_trip(tmp_path, rng):
    image = _pixels(rng, 48)
    path = tmp_path / "face.png"
    cv2.imwrite(str(path), image)
    out = read_image(path, 48, 1)
    assert out.shape == (48, 48, 1) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, :, 0], image / 255.0, atol=1e-6)


def test_read_image_colour_order_and_gray_conversion(tmp_path, rng):
    bgr = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    path = tmp_path / "colour.png"
    cv2.imwrite(str(path), bgr)
    rgb = read_image(path, None, 3)
    assert rgb.shape == (20, 30, 3)
    np.testing.assert_allclose(rgb, bgr[:, :, ::-1] / 255.0, atol=1e-6)
    gray = read_image(path, None, 1)
    luma = (0.299 * bgr[..., 2] + 0.587 * bgr[..., 1] + 0.114 * bgr[..., 0]) / 255.0
    np.testing.assert_allclose(gray[:, :, 0], luma, atol=1.5 / 255)


def test_read_image_resizes_by_area(tmp_path, rng):
    small = rng.integers(0, 256, (12, 12), dtype=np.uint8)
    big = np.kron(small, np.ones((4, 4), np.uint8))  # each value a 4x4 block
    path = tmp_path / "big.png"
    cv2.imwrite(str(path), big)
    np.testing.assert_allclose(read_image(path, 12, 1)[:, :, 0], small / 255.0, atol=1e-6)
    rgb = read_image(path, 12, 3)
    assert rgb.shape == (12, 12, 3)
    np.testing.assert_allclose(rgb[:, :, 2], small / 255.0, atol=1e-6)


def test_read_image_16_bit(tmp_path):
    image = np.full((8, 8), 65535, np.uint16)
    image[0, 0] = 0
    path = tmp_path / "deep.png"
    cv2.imwrite(str(path), image)
    out = read_image(path, 8, 1)[:, :, 0]
    assert out[0, 0] == 0 and out[1, 1] == pytest.approx(1.0)


def test_read_image_bad_files(tmp_path):
    with pytest.raises(DataError, match="missing.png"):
        read_image(tmp_path / "missing.png")
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="corrupt.png: not a readable image"):
        read_image(corrupt)
    with pytest.raises(ValueError, match="`channels`"):
        read_image(corrupt, 48, 2)


def _write_class_folder(root, counts, rng, size=(40, 30)):
    """counts: {class name: n}; pixel value encodes the class index (sorted names)."""
    values = {}
    for k, (name, n) in enumerate(sorted(counts.items())):
        folder = root / name
        folder.mkdir(parents=True)
        values[name] = 20 + 40 * k
        for i in range(n):
            image = np.full(size, values[name], np.uint8)
            image[0, 0] = rng.integers(0, 256)  # distinct images
            cv2.imwrite(str(folder / f"{i}.png"), image)
    return values


def test_class_folders_labels_follow_sorted_names(tmp_path, rng):
    values = _write_class_folder(tmp_path / "data", {"dog": 10, "cat": 10, "emu": 10}, rng)
    (tmp_path / "data" / "notes.txt").write_text("ignored")
    (tmp_path / "data" / "cat" / "README.md").write_text("ignored")
    data = load_dataset(tmp_path / "data", val_fraction=0.2, test_fraction=0.2, image_size=16)
    names = data["train"].class_names
    assert names == ("cat", "dog", "emu")
    assert [len(data[s]) for s in ("train", "val", "test")] == [18, 6, 6]
    for split in data.values():
        assert np.bincount(split.y, minlength=3).tolist() == [len(split) // 3] * 3
        # The label of each image is the class whose pixel value it carries.
        centre = np.round(split.x[:, 8, 8, 0] * 255)
        assert centre.tolist() == [values[names[label]] for label in split.y]


def test_class_folders_rgb_output(tmp_path, rng):
    _write_class_folder(tmp_path / "data", {"a": 3, "b": 3}, rng)
    data = load_dataset(tmp_path / "data", channels=3, image_size=20)
    assert data["train"].x.shape[1:] == (20, 20, 3)


def test_fer_style_folder(tmp_path, rng):
    _write_class_folder(tmp_path / "fer" / "train", {"happy": 10, "angry": 10}, rng)
    _write_class_folder(tmp_path / "fer" / "test", {"happy": 3, "angry": 2}, rng)
    data = load_dataset(tmp_path / "fer", val_fraction=0.1)
    assert data["train"].class_names == ("angry", "happy")
    assert [len(data[s]) for s in ("train", "val", "test")] == [18, 2, 5]
    assert np.bincount(data["test"].y).tolist() == [2, 3]
    assert data["test"].x.shape[1:] == (48, 48, 1)


def test_fer_style_folder_with_val(tmp_path, rng):
    _write_class_folder(tmp_path / "fer" / "train", {"a": 4, "b": 4}, rng)
    _write_class_folder(tmp_path / "fer" / "val", {"a": 1, "b": 2}, rng)
    _write_class_folder(tmp_path / "fer" / "test", {"a": 2, "b": 1}, rng)
    data = load_dataset(tmp_path / "fer")
    assert [len(data[s]) for s in ("train", "val", "test")] == [8, 3, 3]


def test_empty_class_folder(tmp_path, rng):
    _write_class_folder(tmp_path / "data", {"a": 4, "c": 4}, rng)
    (tmp_path / "data" / "b").mkdir()
    with pytest.raises(DataError, match=r"data[/\\]b: empty class folder"):
        load_dataset(tmp_path / "data")
    with pytest.warns(UserWarning, match=r"skipped 1 bad item"):
        data = load_dataset(tmp_path / "data", skip_bad=True)
    assert data["train"].class_names == ("a", "c")


def test_corrupt_image_in_folder(tmp_path, rng):
    _write_class_folder(tmp_path / "data", {"a": 5, "b": 5}, rng)
    (tmp_path / "data" / "b" / "broken.png").write_bytes(b"garbage")
    (tmp_path / "data" / "a" / "empty.jpg").write_bytes(b"")
    with pytest.raises(DataError, match=r"broken.png|empty.jpg"):
        load_dataset(tmp_path / "data")
    with pytest.warns(UserWarning, match=r"skipped 2 bad item"):
        data = load_dataset(tmp_path / "data", skip_bad=True, val_fraction=0, test_fraction=0)
    assert len(data["train"]) == 10


def test_unknown_class_in_test_split(tmp_path, rng):
    _write_class_folder(tmp_path / "fer" / "train", {"a": 4, "b": 4}, rng)
    _write_class_folder(tmp_path / "fer" / "test", {"a": 1, "zebra": 1}, rng)
    with pytest.raises(DataError, match=r"test[/\\]zebra.*not one of \('a', 'b'\)"):
        load_dataset(tmp_path / "fer")


# ------------------------------------------------------------------------------- npz


def test_npz_round_trip(tmp_path, rng):
    x = rng.integers(0, 256, (20, 48, 48), dtype=np.uint8)
    y = np.arange(20) % 4
    path = tmp_path / "data.npz"
    np.savez(path, x=x, y=y, class_names=np.array(["w", "x", "y", "z"]))
    images, labels, names = read_npz(path)
    np.testing.assert_allclose(images[..., 0], x / 255.0, atol=1e-6)
    np.testing.assert_array_equal(labels, y)
    assert names == ("w", "x", "y", "z")
    data = load_dataset(path, val_fraction=0.25, test_fraction=0.25)
    assert [len(data[s]) for s in ("train", "val", "test")] == [12, 4, 4]
    for split in data.values():
        for image, label in zip(split.x, split.y, strict=True):
            match = np.flatnonzero(np.abs(x / 255.0 - image[..., 0]).max(axis=(1, 2)) < 1e-6)
            assert y[match].tolist() == [label]


def test_npz_float_rgb_and_default_names(tmp_path, rng):
    x = rng.random((6, 10, 10, 3)).astype(np.float32)
    path = tmp_path / "rgb.npz"
    np.savez(path, x=x, y=np.array([0, 2, 0, 2, 0, 2]))
    images, labels, names = read_npz(path, image_size=10, channels=3)
    np.testing.assert_allclose(images, x, atol=1e-6)
    assert names == ("0", "1", "2")
    gray, _, _ = read_npz(path, image_size=10, channels=1)
    luma = 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]
    np.testing.assert_allclose(gray[..., 0], luma, atol=1e-3)


@pytest.mark.parametrize(
    "arrays,message",
    [
        ({"x": np.zeros((3, 8, 8))}, r"missing array\(s\) \['y'\]"),
        ({"x": np.zeros((3, 8, 8)), "y": np.zeros(2, int)}, "same length"),
        ({"x": np.zeros((2, 8, 8)), "y": np.array(["a", "b"])}, "integer labels"),
        ({"x": np.full((2, 8, 8), 300.0), "y": np.zeros(2, int)}, r"\[0, 255\]"),
    ],
)
def test_npz_bad_arrays(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match="bad.npz: .*" + message):
        load_dataset(path)


@pytest.mark.parametrize(
    "y,message",
    [
        ([0, 1, 5, 1], r"index 2: label 5 out of range \[0, 3\)"),
        ([0, 1, -1, 1], r"index 2: label -1 out of range"),
        ([0, 1, 0.5, 1], r"index 2: label 0.5 is not an integer"),
    ],
)
def test_npz_bad_labels(tmp_path, rng, y, message):
    x = rng.integers(0, 256, (4, 8, 8), dtype=np.uint8)
    path = tmp_path / "labels.npz"
    np.savez(path, x=x, y=np.array(y), class_names=np.array(["a", "b", "c"]))
    with pytest.raises(DataError, match="labels.npz, " + message):
        read_npz(path)
    with pytest.warns(UserWarning, match=r"skipped 1 bad item"):
        images, labels, _ = read_npz(path, image_size=8, skip_bad=True)
    assert labels.tolist() == [0, 1, 1]
    np.testing.assert_allclose(images[2, :, :, 0], x[3] / 255.0, atol=1e-6)


def test_npz_nan_image(tmp_path):
    x = np.zeros((3, 8, 8), np.float32)
    x[1, 2, 2] = np.nan
    path = tmp_path / "nan.npz"
    np.savez(path, x=x, y=np.array([0, 1, 0]))
    with pytest.raises(DataError, match="nan.npz, index 1: image has NaN"):
        read_npz(path)


def test_fit_images_rejects_bad_shapes():
    with pytest.raises(DataError, match="shape"):
        fit_images(np.zeros((2, 8, 8, 2)), 8, 1, source="thing")


# ---------------------------------------------------------------------- load_dataset


def test_synthetic_source(tmp_path):
    data = load_dataset("synthetic", synthetic_size=140, image_size=32, channels=3, seed=2)
    assert [len(data[s]) for s in ("train", "val", "test")] == [112, 14, 14]
    for split in data.values():
        assert split.class_names == EMOTIONS
        assert split.x.shape[1:] == (32, 32, 3)
        assert sorted(split.masks) == ["brows", "eyes", "mouth", "regions"]
        assert split.masks["mouth"].shape == (len(split), 32, 32)
        # Masks travel with their images: every image has its own mouth mask.
        assert (split.masks["mouth"].sum(axis=(1, 2)) > 0).all()
    again = load_dataset("synthetic", synthetic_size=140, image_size=32, channels=3, seed=2)
    np.testing.assert_array_equal(again["test"].x, data["test"].x)


def test_unknown_sources(tmp_path):
    with pytest.raises(DataError, match="nowhere.csv: data source not found"):
        load_dataset(tmp_path / "nowhere.csv")
    other = tmp_path / "data.txt"
    other.write_text("1,2")
    with pytest.raises(DataError, match="data.txt: unsupported"):
        load_dataset(other)
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DataError, match="empty_dir: no class sub-folders"):
        load_dataset(tmp_path / "empty_dir")


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"test_fraction": -0.1}, "test_fraction"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "val_fraction \\+ test_fraction"),
        ({"channels": 2}, "channels"),
        ({"image_size": 0}, "image_size"),
        ({"synthetic_size": 0}, "synthetic_size"),
    ],
)
def test_load_dataset_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        load_dataset("synthetic", **kwargs)
