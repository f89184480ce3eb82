"""Hostile training records: a model file's TrainingInfo is input like any other.

Each test builds the hostile file and runs the command a user would; each fails without
the check it covers (senet.layers.info.check_record, senet.errors.printable).
"""

import json

import cv2
import keras
import pytest

from photos import face_photo
from senet.cli import main
from senet.layers.info import with_training_info
from senet.models import emotion_cnn

RECORD = {"dataset": "npz", "image_size": 24, "channels": 1, "input_range": [0, 1]}
ESCAPES = "\x1b[2J\x1b]0;owned\x07"  # clear the screen, set the terminal title


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("photo") / "face.png"
    cv2.imwrite(str(path), face_photo())
    return path


def _model(path, **record):
    keras.utils.set_random_seed(0)
    model = emotion_cnn((24, 24, 1), widths=(4, 8), attention=None)
    with_training_info(model, {**RECORD, **record}).save(path)
    return path


@pytest.mark.parametrize(
    "input_range", [5, ["a", "b"], [0, 1, 2], [1, 0], "0,1", [0, float("inf")]]
)
def test_a_bad_input_range_is_one_line_naming_the_file_and_field(
    input_range, photo, tmp_path, capsys
):
    model = _model(tmp_path / "model.keras", input_range=input_range)
    assert main(["predict", str(model), str(photo)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert f"{model}: its training record's input_range must be" in err


@pytest.mark.parametrize(
    "field, value",
    [
        ("class_names", "angry"),
        ("class_names", [1, 2, 3, 4, 5, 6, 7]),
        ("class_names", ["x" * 5000] * 7),
        ("channels", 2),
        ("channels", True),
        ("image_size", -3),
        ("dataset", {"kind": "synthetic"}),
    ],
)
def test_every_field_is_checked(field, value, photo, tmp_path, capsys):
    model = _model(tmp_path / "model.keras", **{field: value})
    assert main(["predict", str(model), str(photo)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"its training record's {field} must be" in err


def test_class_names_with_terminal_escapes_are_printed_escaped(photo, tmp_path, capsys):
    names = ["angry", "disgust", "fear", ESCAPES[:4], "sad", "surprise", "neutral"]
    model = _model(tmp_path / "model.keras", class_names=names, dataset="synthetic")
    assert main(["predict", str(model), str(photo)]) == 0
    out, err = capsys.readouterr()
    assert "\x1b" not in out + err and "\x07" not in out + err
    assert "\\x1b[2J" in out  # shown, escaped
    # JSON stays JSON: the escaped text as a string value
    assert main(["predict", str(model), str(photo), "--json"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out
    names_out = json.loads(out.splitlines()[0])["faces"][0]["probabilities"]
    assert "\\x1b[2J" in names_out


def test_error_messages_escape_what_they_quote(photo, tmp_path, capsys):
    # a file name is quoted by the error about it
    bad = tmp_path / f"model{ESCAPES}.keras"
    bad.write_bytes(b"not a zip")
    assert main(["predict", str(bad), str(photo)]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err and "\\x1b" in err


def test_file_names_are_printed_escaped(photo, tmp_path, capsys):
    model = _model(tmp_path / "model.keras")
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / f"face{ESCAPES}.png").write_bytes(photo.read_bytes())
    assert main(["predict", str(model), str(folder / f"face{ESCAPES}.png")]) == 0
    out, err = capsys.readouterr()
    assert "\x1b" not in out + err and "face\\x1b[2J" in out


def test_class_folder_names_are_escaped_when_read(photo, tmp_path):
    from senet.data import load_dataset

    for name in ("calm", "happy" + ESCAPES):
        folder = tmp_path / "faces" / name
        folder.mkdir(parents=True)
        for index in range(5):
            (folder / f"{index}.png").write_bytes(photo.read_bytes())
    splits = load_dataset(tmp_path / "faces", image_size=24, val_fraction=0, test_fraction=0)
    assert splits["train"].class_names == ("calm", "happy\\x1b[2J\\x1b]0;owned\\x07")
