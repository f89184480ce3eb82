"""NIfTI volumes and the Decathlon layout: round trips, orientation, normalisation, the voxel
cap checked from the header, and every kind of bad volume as one line naming the file."""

import json

import numpy as np
import pytest

nib = pytest.importorskip("nibabel")

from senet.data.masks import load_masks  # noqa: E402
from senet.data.nifti import (  # noqa: E402
    check_pair,
    normalize_intensity,
    read_decathlon,
    read_volume,
    write_volume,
)
from senet.errors import DataError  # noqa: E402

RAS = np.diag([1.5, 1.0, 2.0, 1.0])


def _lps(shape):
    """The affine of the same grid stored with the first two axes reversed (LPS)."""
    affine = np.diag([-1.5, -1.0, 2.0, 1.0])
    affine[0, 3] = 1.5 * (shape[0] - 1)
    affine[1, 3] = 1.0 * (shape[1] - 1)
    return affine


def test_round_trip_keeps_array_affine_and_spacing(tmp_path):
    labels = np.random.default_rng(0).integers(0, 3, (5, 6, 7))
    write_volume(tmp_path / "l.nii.gz", labels, RAS)
    volume = read_volume(tmp_path / "l.nii.gz", kind="label")
    np.testing.assert_array_equal(volume.array, labels)
    np.testing.assert_allclose(volume.affine, RAS)
    assert volume.spacing == (1.5, 1.0, 2.0) and volume.array.dtype == np.int32
    assert nib.load(tmp_path / "l.nii.gz").get_data_dtype() == np.uint8


def test_a_flipped_volume_reads_in_ras_on_the_same_grid_as_its_twin(tmp_path):
    rng = np.random.default_rng(1)
    image = rng.random((5, 6, 7)).astype(np.float32)
    labels = (image > 0.5).astype(np.int32)
    write_volume(tmp_path / "ras.nii.gz", image, RAS)
    # the same physical volume stored with two axes reversed
    write_volume(tmp_path / "lps.nii.gz", labels[::-1, ::-1], _lps(labels.shape))
    a = read_volume(tmp_path / "ras.nii.gz")
    b = read_volume(tmp_path / "lps.nii.gz", kind="label")
    np.testing.assert_array_equal(b.array, labels)
    np.testing.assert_allclose(b.affine, a.affine, atol=1e-6)
    check_pair(a, b, num_classes=2)


def test_bad_volumes_are_one_line_errors_naming_the_file(tmp_path, monkeypatch):
    write_volume(tmp_path / "img.nii.gz", np.zeros((4, 4, 4), np.float32), RAS)
    image = read_volume(tmp_path / "img.nii.gz")
    cases = {
        "shape.nii.gz": (np.zeros((4, 4, 5), np.int32), RAS, "label shape"),
        "affine.nii.gz": (np.zeros((4, 4, 4), np.int32), np.diag([2.0, 1, 2, 1]), "affine"),
        "range.nii.gz": (np.full((4, 4, 4), 7, np.int32), RAS, r"label value 7 out of range"),
    }
    for name, (array, affine, message) in cases.items():
        write_volume(tmp_path / name, array, affine)
        with pytest.raises(DataError, match=message) as info:
            check_pair(image, read_volume(tmp_path / name, kind="label"), num_classes=3)
        assert name in str(info.value) and "\n" not in str(info.value)
    write_volume(tmp_path / "frac.nii.gz", np.full((4, 4, 4), 0.5, np.float32), RAS)
    with pytest.raises(DataError, match=r"frac\.nii\.gz: label values must be integers"):
        read_volume(tmp_path / "frac.nii.gz", kind="label")
    nib.save(nib.Nifti1Image(np.zeros((4, 0, 4), np.float32), RAS), tmp_path / "empty.nii")
    with pytest.raises(DataError, match=r"empty\.nii: empty"):
        read_volume(tmp_path / "empty.nii")
    nan = np.zeros((4, 4, 4), np.float32)
    nan[1, 1, 1] = np.nan
    write_volume(tmp_path / "nan.nii.gz", nan, RAS)
    with pytest.raises(DataError, match=r"nan\.nii\.gz: the image has NaN"):
        read_volume(tmp_path / "nan.nii.gz")
    (tmp_path / "text.nii.gz").write_text("not a volume")
    with pytest.raises(DataError, match=r"text\.nii\.gz: cannot read NIfTI"):
        read_volume(tmp_path / "text.nii.gz")


def test_the_voxel_cap_is_checked_from_the_header_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "big.nii"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), RAS), path)
    with pytest.raises(DataError, match=r"big\.nii: its header declares 512 voxels"):
        read_volume(path, max_voxels=500)
    monkeypatch.setenv("SENET_MAX_VOXELS", "100")
    # a header declaring a huge volume over a few bytes of data: refused from the header
    header = nib.Nifti1Header()
    header.set_data_shape((4000, 4000, 4000))
    header.set_data_dtype(np.float32)
    bomb = tmp_path / "bomb.nii"
    bomb.write_bytes(header.binaryblock + b"\0" * 4 + b"\0" * 64)
    with pytest.raises(DataError, match="set SENET_MAX_VOXELS") as info:
        read_volume(bomb)
    assert "64000000000 voxels" in str(info.value)


def test_normalisation_zscore_and_ct_window():
    values = np.random.default_rng(2).normal(50, 20, (6, 6, 6)).astype(np.float32)
    z = normalize_intensity(values)
    assert abs(float(z.mean())) < 1e-5 and float(z.std()) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(z, (values - values.mean()) / values.std(), rtol=1e-4, atol=1e-5)
    assert not normalize_intensity(np.full((2, 2, 2), 3.0)).any()
    windowed = normalize_intensity(
        np.array([-500.0, -160.0, 40.0, 240.0, 900.0]), window=(-160, 240)
    )
    np.testing.assert_allclose(windowed, [0.0, 0.0, 0.5, 1.0, 1.0])
    with pytest.raises(ValueError, match="window"):
        normalize_intensity(values, window=(5, 5))


def _decathlon(root, shapes):
    rng = np.random.default_rng(3)
    for folder in ("imagesTr", "labelsTr", "imagesTs"):
        (root / folder).mkdir(parents=True)
    for i, shape in enumerate(shapes):
        image = rng.normal(100, 30, shape).astype(np.float32)
        labels = (image > 120).astype(np.int32) + (image > 150)
        write_volume(root / "imagesTr" / f"case_{i:03d}.nii.gz", image, RAS)
        write_volume(root / "labelsTr" / f"case_{i:03d}.nii.gz", labels, RAS)
    write_volume(root / "imagesTs" / "case_900.nii.gz", rng.random(shapes[0]), RAS)
    (root / "imagesTr" / "._case_000.nii.gz").write_bytes(b"\0\5\26\7")  # macOS litter
    labels = {"0": "background", "1": "tissue", "2": "tumour"}
    (root / "dataset.json").write_text(json.dumps({"name": "toy", "labels": labels}))


def test_decathlon_cases_in_name_order_with_class_names(tmp_path):
    _decathlon(tmp_path, [(16, 16, 16)] * 5)
    cases = read_decathlon(tmp_path)
    assert [case.name for case in cases] == [f"case_{i:03d}.nii.gz" for i in range(5)]
    assert abs(float(cases[0].image.array.mean())) < 1e-4  # z-scored
    assert read_decathlon(tmp_path, split="test")[0].label is None
    splits = load_masks(tmp_path, image_size=16, val_fraction=0.2, test_fraction=0.2)
    assert [len(splits[k]) for k in ("train", "val", "test")] == [3, 1, 1]
    assert splits["train"].class_names == ("background", "tissue", "tumour")
    assert splits["train"].x.shape == (3, 16, 16, 16, 1) and splits["train"].spacing == (1.5, 1, 2)
    # a CT window instead of the z-score: the raw intensities clipped and scaled
    windowed = load_masks(tmp_path, image_size=16, test_fraction=0.0, ct_window=(80, 140))
    raw = read_volume(tmp_path / "imagesTr" / "case_000.nii.gz").array
    found = [
        split.x[split.names.index("case_000.nii.gz"), ..., 0]
        for split in windowed.values()
        if "case_000.nii.gz" in (split.names or ())
    ]
    assert len(found) == 1
    np.testing.assert_allclose(found[0], np.clip((raw - 80) / 60, 0, 1), atol=1e-6)
    with pytest.raises(ValueError, match="ct_window"):
        load_masks("synthetic", ct_window=(0, 1))
    (tmp_path / "labelsTr" / "case_003.nii.gz").unlink()
    with pytest.raises(DataError, match=r"case_003\.nii\.gz: no label"):
        read_decathlon(tmp_path)
