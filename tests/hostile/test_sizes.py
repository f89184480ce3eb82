"""Sizes from the command line are checked against the array cap before anything is
allocated (`SENET_MAX_ARRAY_BYTES`, the cap .npz files already had)."""

import pytest

from senet.cli import main
from senet.data import load_dataset


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
