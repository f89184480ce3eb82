"""Sizes from the command line are checked against the array cap before anything is
allocated (`SENET_MAX_ARRAY_BYTES`, the cap .npz files already had)."""

import json
import zipfile

import cv2
import numpy as np
import pytest

from senet._files import read_json
from senet.cli import main
from senet.data import images, load_dataset
from senet.data.fer2013 import read_fer2013_csv
from senet.runs import read_config


@pytest.mark.parametrize(
    "flag, value, named",
    [
        ("--image-size", "100000", "`image_size` 100000 needs 40000000000 bytes"),
        ("--synthetic-size", "1000000000", "`synthetic_size` 1000000000 at image_size 48"),
    ],
)
def test_train_refuses_sizes_over_the_cap_in_one_line(flag, value, named, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", flag, value, "--out", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and named in err and "SENET_MAX_ARRAY_BYTES" in err
    assert not run.exists()  # refused before the run directory was made


def test_the_cap_is_raisable_and_lowerable(monkeypatch):
    # 70 faces of 32x32: 70 * 1024 * (4 + 8) = 860160 bytes with their masks
    monkeypatch.setenv("SENET_MAX_ARRAY_BYTES", "860159")
    with pytest.raises(ValueError, match="needs 860160 bytes"):
        load_dataset("synthetic", synthetic_size=70, image_size=32)
    monkeypatch.setenv("SENET_MAX_ARRAY_BYTES", "860160")
    assert len(load_dataset("synthetic", synthetic_size=70, image_size=32)["train"]) == 56


def _config_bomb(path, inflated_bytes):
    """A .keras archive whose config.json inflates to ``inflated_bytes`` (a few hundred KB
    on disk)."""
    head, chunk, tail = b'{"class_name": "Functional", "config": {"name": "', b"a" * 2**20, b'"}}'
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("config.json", "w", force_zip64=True) as file:
            file.write(head)
            for _ in range(inflated_bytes // len(chunk)):
                file.write(chunk)
            file.write(tail)
        archive.writestr("metadata.json", "{}")
    return len(head) + inflated_bytes + len(tail)


def test_a_config_json_that_inflates_past_the_cap_is_refused_before_it_is_read(tmp_path, capsys):
    # 65 MiB inflated from about 65 KB: over the 64 MiB default; a 1 GiB one took 2.8 GB
    # of memory and ended in a wrong message ("uses the class 'Functional'")
    model = tmp_path / "bomb.keras"
    inflated = _config_bomb(model, 65 * 2**20)
    assert model.stat().st_size < 2**20
    photo = tmp_path / "face.png"
    cv2.imwrite(str(photo), np.zeros((48, 48), np.uint8))
    assert main(["predict", str(model), str(photo)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(model) in err
    assert f"its config.json is {inflated} bytes, over the 67108864-byte cap" in err
    assert "SENET_MAX_JSON_BYTES" in err and "Functional" not in err


def test_the_json_cap_is_raisable_and_read_json_checks_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"class_names": ["a" * 100]}), encoding="utf-8")
    size = path.stat().st_size
    monkeypatch.setenv("SENET_MAX_JSON_BYTES", str(size - 1))
    with pytest.raises(ValueError, match=f"{path} is {size} bytes, over the {size - 1}-byte cap"):
        read_json(path)
    monkeypatch.setenv("SENET_MAX_JSON_BYTES", str(size))
    assert read_json(path) == {"class_names": ["a" * 100]}
    # a sparse file of 1 TiB: refused from its size, never read
    monkeypatch.delenv("SENET_MAX_JSON_BYTES")
    huge = tmp_path / "config.json"
    with open(huge, "wb") as file:
        file.truncate(2**40)
    with pytest.raises(ValueError, match="1099511627776 bytes, over the 67108864-byte cap"):
        read_json(huge)


def test_a_run_config_over_the_cap_is_one_line_naming_it(tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text('{"data": "synthetic"}', encoding="utf-8")
    monkeypatch.setenv("SENET_MAX_JSON_BYTES", "8")
    with pytest.raises(ValueError, match=r"config\.json is 21 bytes, over the 8-byte cap"):
        read_config(run)


def test_read_json_names_the_file_of_bad_json(tmp_path):
    path = tmp_path / "state.json"
    path.write_text('{"checkpoints": [', encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{path} is not valid JSON \(Expecting value"):
        read_json(path)
    path.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(ValueError, match=rf"{path} is not UTF-8 text"):
        read_json(path)


def _folder(root, count, side=8):
    for k in range(count):
        folder = root / ("happy" if k % 2 else "sad")
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{k}.png"), np.full((side, side), 40 * k % 255, np.uint8))
    return root


def test_a_class_folder_is_totalled_before_any_image_is_decoded(tmp_path, monkeypatch):
    root = _folder(tmp_path / "faces", 10)
    # 10 images of 48x48x1 float32 = 92160 bytes
    monkeypatch.setenv("SENET_MAX_ARRAY_BYTES", "92159")
    decoded = []
    monkeypatch.setattr(images, "load_image", lambda *a, **k: decoded.append(a) or 1 / 0)
    with pytest.raises(ValueError, match=r"faces: 10 images of 48x48x1 need 92160 bytes"):
        images.read_class_folders(root, image_size=48)
    assert decoded == []


def test_a_class_folder_at_its_own_size_is_totalled_as_it_is_read(tmp_path, monkeypatch):
    root = _folder(tmp_path / "faces", 10, side=8)  # 256 float32 bytes each
    monkeypatch.setenv("SENET_MAX_ARRAY_BYTES", "1000")
    with pytest.raises(ValueError, match=r"the first 4 images need 1024 bytes"):
        images.read_class_folders(root, image_size=None)
    monkeypatch.setenv("SENET_MAX_ARRAY_BYTES", "2560")
    x, y, names = images.read_class_folders(root, image_size=None)
    assert x.shape == (10, 8, 8, 1) and names == ("happy", "sad")


def test_fer_rows_are_totalled_as_they_are_read(tmp_path, monkeypatch):
    csv = tmp_path / "fer2013.csv"
    row = " ".join(["7"] * 2304)
    csv.write_text("emotion,pixels\n" + "".join(f"{k % 7},{row}\n" for k in range(5)))
    monkeypatch.setenv("SENET_MAX_ARRAY_BYTES", str(3 * 2304))
    with pytest.raises(ValueError, match=r"fer2013\.csv, line 5: the rows so far hold 9216 bytes"):
        read_fer2013_csv(csv)
    # the rows fit as bytes; as float32 model inputs at 48x48 they do not
    monkeypatch.setenv("SENET_MAX_ARRAY_BYTES", str(5 * 2304))
    with pytest.raises(ValueError, match=r"5 images of 48x48x1 need 46080 bytes"):
        load_dataset(csv, image_size=48)
