"""Inputs that are not files: each gets a message saying what it is (senet._files.check_input_file)."""

import os

import keras
import pytest

from senet.cli import main
from senet.models import emotion_cnn


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.keras"
    keras.utils.set_random_seed(0)
    emotion_cnn((24, 24, 1), widths=(4, 8), attention=None).save(path)
    return str(path)


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


@pytest.mark.parametrize("command", ["predict", "explain"])
def test_a_directory_is_called_a_directory(command, model, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    argv = [command, model, str(folder) + "/"]
    if command == "explain":
        argv += ["--out", str(tmp_path / "out")]
    assert main(argv) != 0
    err = _error(capsys)
    assert f"{folder}/ is a directory" in err and "no such file" not in err


def test_a_url_is_called_a_url(model, capsys):
    assert main(["predict", model, "https://example.com/face.jpg"]) != 0
    err = _error(capsys)
    assert "https://example.com/face.jpg is a URL: senet reads local files only" in err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_without_reading_it(model, tmp_path, capsys):
    fifo = tmp_path / "face.png"
    os.mkfifo(fifo)  # opening it to read would block forever
    assert main(["predict", model, str(fifo)]) != 0
    assert f"{fifo} is not a regular file (a FIFO, device or socket)" in _error(capsys)


def test_a_missing_file_is_still_no_such_file(model, tmp_path, capsys):
    assert main(["predict", model, str(tmp_path / "none.png")]) != 0
    assert f"no such file: {tmp_path / 'none.png'}" in _error(capsys)


def test_a_model_directory_is_not_called_a_folder_of_photos(model, tmp_path, capsys):
    folder = tmp_path / "savedmodel"
    folder.mkdir()
    argv = ["explain", str(folder), model, "--out", str(tmp_path / "out")]
    assert main(argv) != 0
    err = _error(capsys)
    assert f"{folder} is a directory, not a .keras model file" in err and "*.jpg" not in err
