"""Labels are checked against the class names before any training: 1-based labels, huge
labels, non-integers, classes without training samples; and csv rows the csv module
cannot read (over its field limit, not UTF-8) are reported with file and line."""

import csv

import numpy as np
import pytest

from senet.cli import main
from senet.data import EMOTIONS, DataError, ImageSet, load_dataset
from senet.data.base import (
    MAX_INFERRED_CLASSES,
    check_labels,
    infer_class_names,
    warn_missing_classes,
)
from senet.data.fer2013 import read_fer2013_csv
from senet.data.images import read_npz

SIDE = 8


def _pixel_text(rng, side=SIDE):
    return " ".join(str(v) for v in rng.integers(0, 256, side * side))


def _write_csv(path, rows, header=("emotion", "pixels", "Usage")):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _write_npz(path, rng, labels, **extra):
    images = rng.integers(0, 256, (len(labels), SIDE, SIDE), dtype=np.uint8)
    np.savez(path, x=images, y=np.asarray(labels), **extra)
    return path


# ------------------------------------------------------------------- npz: class count


def test_npz_one_based_labels_warn_naming_the_empty_class(tmp_path, rng):
    path = _write_npz(tmp_path / "one_based.npz", rng, [1, 2, 3, 4, 5, 6, 7] * 3)
    with pytest.warns(UserWarning, match=r"one_based.npz: no training samples .*\['0'\]"):
        data = load_dataset(path, image_size=SIDE)
    assert data["train"].class_names == tuple(str(k) for k in range(8))


@pytest.mark.parametrize("huge", [MAX_INFERRED_CLASSES, 5000, 10**9])
def test_npz_huge_label_is_an_error_naming_its_index(tmp_path, rng, huge):
    # 10**9 used to build a billion class names (MemoryError); 5000 made 5001 classes.
    path = _write_npz(tmp_path / "huge.npz", rng, [0, 1, 2, huge, 1])
    with pytest.raises(DataError, match=rf"huge.npz, index 3: label {huge} is not below 1000"):
        load_dataset(path, image_size=SIDE)
    with pytest.raises(DataError, match="index 3") as info:
        read_npz(path, image_size=SIDE)
    assert "\n" not in str(info.value)


def test_npz_huge_label_skipped_when_skipping(tmp_path, rng):
    path = _write_npz(tmp_path / "huge.npz", rng, [0, 1, 2, 10**9, 1])
    with pytest.warns(UserWarning, match=r"skipped 1 bad item\(s\); first: .*index 3"):
        _, labels, names = read_npz(path, image_size=SIDE, skip_bad=True)
    assert labels.tolist() == [0, 1, 2, 1] and names == ("0", "1", "2")


def test_npz_class_names_allow_more_than_the_inferred_cap(tmp_path, rng):
    names = np.array([f"c{k}" for k in range(MAX_INFERRED_CLASSES + 5)])
    path = _write_npz(tmp_path / "many.npz", rng, [0, MAX_INFERRED_CLASSES + 4], class_names=names)
    _, labels, read_names = read_npz(path, image_size=SIDE)
    assert labels.tolist() == [0, MAX_INFERRED_CLASSES + 4] and len(read_names) == len(names)


@pytest.mark.parametrize(
    "bad,message",
    [
        (2.5, r"index 1: label 2.5 is not an integer"),
        (-1.0, r"index 1: label -1 out of range"),
        (float("nan"), r"index 1: label nan is not an integer"),
    ],
)
def test_npz_bad_label_without_class_names_names_its_index(tmp_path, rng, bad, message):
    path = _write_npz(tmp_path / "bad.npz", rng, [0.0, bad, 2.0, 1.0])
    with pytest.raises(DataError, match="bad.npz, " + message) as info:
        load_dataset(path, image_size=SIDE)
    assert "\n" not in str(info.value)


def test_npz_class_missing_from_training_data_warns(tmp_path, rng):
    path = _write_npz(
        tmp_path / "gap.npz", rng, [0, 2, 0, 2, 0, 2], class_names=np.array(["a", "b", "c"])
    )
    with pytest.warns(UserWarning, match=r"gap.npz: no training samples of 1 of 3 .*\['b'\]"):
        data = load_dataset(path, image_size=SIDE, val_fraction=0, test_fraction=0)
    assert sorted(data["train"].y.tolist()) == [0, 0, 0, 2, 2, 2]


# ------------------------------------------------------------------------ csv labels


def test_csv_one_based_labels_warn_naming_the_empty_emotion(tmp_path, rng):
    # 1..6 stay in range, so no row is bad; only the empty class 0 ("angry") tells.
    rows = [[k, _pixel_text(rng), "Training"] for k in (1, 2, 3, 4, 5, 6)]
    path = _write_csv(tmp_path / "fer.csv", rows)
    with pytest.warns(UserWarning, match=r"fer.csv: no training samples .*\['angry'\].*1-based"):
        data = load_dataset(path, image_size=SIDE)
    assert data["train"].class_names == EMOTIONS


def test_csv_one_based_label_seven_is_an_error_naming_its_line(tmp_path, rng):
    rows = [[k, _pixel_text(rng), "Training"] for k in (1, 2, 3, 4, 5, 6, 7)]
    path = _write_csv(tmp_path / "fer.csv", rows)
    with pytest.raises(DataError, match=r"fer.csv, line 8: label 7 out of range \[0, 7\)"):
        load_dataset(path, image_size=SIDE)


@pytest.mark.parametrize(
    "bad,message",
    [
        ("2.5", "emotion '2.5' is not an integer"),
        ("nan", "emotion 'nan' is not an integer"),
        ("-1", r"label -1 out of range \[0, 7\)"),
        ("1000000000", r"label 1000000000 out of range \[0, 7\)"),
        ("1e9", "emotion '1e9' is not an integer"),
    ],
)
def test_csv_bad_label_names_file_and_line(tmp_path, rng, bad, message):
    rows = [[0, _pixel_text(rng), "Training"], [bad, _pixel_text(rng), "Training"]]
    path = _write_csv(tmp_path / "fer.csv", rows)
    with pytest.raises(DataError, match=r"fer.csv, line 3: " + message) as info:
        load_dataset(path, image_size=SIDE)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ csv file problems


def test_csv_row_over_the_field_limit_names_file_and_line(tmp_path, rng):
    giant = " ".join(["255"] * (csv.field_size_limit() // 4 + 10))  # over the limit
    rows = [[0, _pixel_text(rng), "Training"], [1, giant, "Training"], [2, _pixel_text(rng)]]
    path = _write_csv(tmp_path / "giant.csv", rows)
    with pytest.raises(DataError, match=r"giant.csv, line 3: .*field limit") as info:
        read_fer2013_csv(path)
    assert "\n" not in str(info.value)


def test_csv_row_over_the_field_limit_skipped_when_skipping(tmp_path, rng):
    giant = " ".join(["255"] * (csv.field_size_limit() // 4 + 10))
    good = [_pixel_text(rng) for _ in range(3)]
    rows = [[0, good[0], "Training"], [1, giant, "Training"], [2, good[1], "PrivateTest"]]
    path = _write_csv(tmp_path / "giant.csv", rows)
    with pytest.warns(UserWarning, match=r"skipped 1 bad row\(s\); first: .*line 3"):
        pixels, labels, splits = read_fer2013_csv(path, skip_bad=True)
    assert labels.tolist() == [0, 2] and splits.tolist() == ["train", "test"]
    assert pixels.shape == (2, SIDE, SIDE)


def test_csv_not_utf8_names_file_and_line(tmp_path, rng):
    text = _write_csv(tmp_path / "tmp.csv", [[0, _pixel_text(rng), "Training"]] * 3).read_bytes()
    lines = text.split(b"\n")
    lines[2] = b"\xff\xfe" + lines[2]  # the second data row, line 3
    path = tmp_path / "latin.csv"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(DataError, match=r"latin.csv, line 3: not UTF-8 text") as info:
        load_dataset(path, image_size=SIDE)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "content,message",
    [
        ("", "empty file"),
        ("\n\n", "missing column"),
        ("0,1 2 3 4,Training\n", "missing column"),  # no header at all
        ("label,image\n0,1 2 3 4\n", "missing column"),
    ],
)
def test_csv_without_a_usable_header_is_one_line(tmp_path, content, message):
    path = tmp_path / "head.csv"
    path.write_text(content)
    with pytest.raises(DataError, match="head.csv.*" + message) as info:
        load_dataset(path)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- the shared checks


def test_infer_class_names_and_cap():
    assert infer_class_names(np.array([3, 0]), source="s") == ("0", "1", "2", "3")
    assert infer_class_names(np.zeros(0, np.int64), source="s") == ()
    with pytest.raises(DataError, match=r"s, index 1: label 1000 is not below 1000"):
        infer_class_names(np.array([0, 1000]), source="s")
    assert infer_class_names(np.array([1, 10**9]), source="s", skip_bad=True) == ("0", "1")


def test_check_labels_names_the_first_bad_position():
    check_labels(np.array([0, 1, 2]), ("a", "b", "c"), source="s")
    with pytest.raises(DataError, match=r"s: label 3 at position 2 out of range \[0, 3\)"):
        check_labels(np.array([0, 1, 3, -1]), ("a", "b", "c"), source="s")
    with pytest.raises(DataError, match="integer"):
        check_labels(np.array([0.0, 1.0]), ("a", "b"), source="s")


def test_warn_missing_classes_returns_them():
    images = np.zeros((3, 2, 2, 1), np.float32)
    full = ImageSet(images, np.array([0, 1, 2]), ("a", "b", "c"))
    assert warn_missing_classes(full, source="s") == []
    with pytest.warns(UserWarning, match=r"s: no training samples of 2 of 3 class\(es\)"):
        assert warn_missing_classes(full.subset(np.array([1])), source="s") == ["a", "c"]


# ------------------------------------------------------------------------------ CLI


def test_cli_train_on_bad_labels_exits_2_with_one_line(tmp_path, rng, capsys):
    path = _write_npz(tmp_path / "bad.npz", rng, [0, 1, 2.5, 1])
    out = tmp_path / "run"
    status = main(["train", "--data", str(path), "--epochs", "1", "--out", str(out)])
    error = capsys.readouterr().err
    assert status == 2
    (line,) = error.strip().splitlines()
    assert "bad.npz, index 2: label 2.5 is not an integer" in line
    assert not out.exists()
