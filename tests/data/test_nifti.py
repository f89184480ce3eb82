"""NIfTI volumes and the Decathlon layout: round trips, orientation (against nibabel's own
``as_closest_canonical``), normalisation (against NumPy), the voxel cap checked from the
header, and every kind of bad volume as one line naming the file."""

import json
import sys

import numpy as np
import pytest

nib = pytest.importorskip("nibabel")

from senet.data.nifti import (  # noqa: E402
    Volume,
    check_pair,
    decathlon_class_names,
    normalize_intensity,
    read_decathlon,
    read_volume,
    write_volume,
)
from senet.errors import DataError  # noqa: E402

RAS = np.diag([1.5, 1.0, 2.0, 1.0])


def _lps(shape):
    """The affine of RAS's grid stored with the first two axes reversed (LPS)."""
    affine = np.diag([-1.5, -1.0, 2.0, 1.0])
    affine[0, 3] = 1.5 * (shape[0] - 1)
    affine[1, 3] = 1.0 * (shape[1] - 1)
    return affine


def _one_line_naming(info, name):
    message = str(info.value)
    assert name in message and "\n" not in message, message


def _directory(path):
    path.mkdir()
    return path


# ------------------------------------------------------------------ round trips


def test_a_label_round_trip_keeps_array_affine_and_spacing(tmp_path):
    labels = np.random.default_rng(0).integers(0, 3, (5, 6, 7))
    write_volume(tmp_path / "l.nii.gz", labels, RAS)
    volume = read_volume(tmp_path / "l.nii.gz", kind="label")
    np.testing.assert_array_equal(volume.array, labels)
    np.testing.assert_allclose(volume.affine, RAS)
    assert volume.spacing == (1.5, 1.0, 2.0) and volume.array.dtype == np.int32
    assert volume.affine.shape == (4, 4) and volume.affine.dtype == np.float64
    assert volume.source == str(tmp_path / "l.nii.gz")
    stored = nib.load(tmp_path / "l.nii.gz")
    assert stored.get_data_dtype() == np.uint8
    assert stored.header["qform_code"] > 0 and stored.header["sform_code"] > 0


def test_an_image_round_trip_keeps_float_values_and_an_oblique_affine(tmp_path):
    image = np.random.default_rng(1).normal(40, 300, (4, 5, 6))
    angle = np.deg2rad(10)
    affine = np.eye(4)
    affine[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    affine[:3, 3] = (-20, 7, 3)
    write_volume(tmp_path / "sub" / "dir" / "i.nii", image, affine)  # parents created
    volume = read_volume(tmp_path / "sub" / "dir" / "i.nii")
    assert volume.array.dtype == np.float32
    np.testing.assert_allclose(volume.array, image.astype(np.float32))
    np.testing.assert_allclose(volume.affine, affine, atol=1e-6)
    np.testing.assert_allclose(volume.spacing, (1, 1, 1))
    assert [p.name for p in (tmp_path / "sub" / "dir").iterdir()] == ["i.nii"]  # no temp


@pytest.mark.parametrize(
    ("values", "stored"),
    [
        (np.array([0, 255]), np.uint8),
        (np.array([0, 300]), np.int16),
        (np.array([-1, 2]), np.int16),
        (np.array([0, 70000]), np.int32),
        (np.array([True, False]), np.uint8),
        (np.array([0.0, 1.0]), np.float32),
    ],
)
def test_masks_are_stored_in_the_smallest_type_that_holds_them(tmp_path, values, stored):
    write_volume(tmp_path / "m.nii.gz", np.resize(values, (2, 2, 2)), RAS)
    loaded = nib.load(tmp_path / "m.nii.gz")
    assert loaded.get_data_dtype() == stored
    np.testing.assert_array_equal(np.asarray(loaded.dataobj), np.resize(values, (2, 2, 2)))


def test_write_volume_refuses_bad_arguments_and_never_leaves_half_a_file(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="path"):
        write_volume(tmp_path / "x.mgz", np.zeros((2, 2, 2)), RAS)
    with pytest.raises(ValueError, match="array"):
        write_volume(tmp_path / "x.nii", np.zeros((2, 2)), RAS)
    with pytest.raises(ValueError, match="affine"):
        write_volume(tmp_path / "x.nii", np.zeros((2, 2, 2)), np.eye(3))
    target = tmp_path / "keep.nii.gz"
    write_volume(target, np.ones((2, 2, 2), np.uint8), RAS)
    before = target.read_bytes()

    def broken_save(image, filename):
        with open(filename, "wb") as file:
            file.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(nib, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write_volume(target, np.zeros((2, 2, 2), np.uint8), RAS)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.nii.gz"]


# ------------------------------------------------------------------ orientation


def test_a_flipped_volume_reads_back_in_ras(tmp_path):
    rng = np.random.default_rng(1)
    array = rng.random((5, 6, 7)).astype(np.float32)
    write_volume(tmp_path / "lps.nii.gz", array, _lps(array.shape))
    volume = read_volume(tmp_path / "lps.nii.gz")
    np.testing.assert_array_equal(volume.array, np.flip(array, axis=(0, 1)))
    np.testing.assert_allclose(volume.affine, RAS, atol=1e-6)
    assert nib.aff2axcodes(volume.affine) == ("R", "A", "S")


def test_a_permuted_and_flipped_volume_matches_nibabels_closest_canonical(tmp_path):
    array = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    # axis 0 goes Superior, axis 1 Left, axis 2 Anterior
    affine = np.array([[0, -0.8, 0, 10], [0, 0, 1.2, -5], [2.5, 0, 0, 3], [0, 0, 0, 1]])
    write_volume(tmp_path / "sla.nii", array, affine)
    volume = read_volume(tmp_path / "sla.nii")
    reference = nib.as_closest_canonical(nib.load(tmp_path / "sla.nii"))
    np.testing.assert_array_equal(volume.array, np.asarray(reference.dataobj))
    np.testing.assert_allclose(volume.affine, reference.affine)
    assert volume.array.shape == (4, 5, 3) and volume.spacing == pytest.approx((0.8, 1.2, 2.5))
    # a voxel's world position is the same before and after
    world = affine @ np.array([1, 2, 3, 1])
    index = np.linalg.solve(volume.affine, world)[:3].round().astype(int)
    assert volume.array[tuple(index)] == array[1, 2, 3]


def test_image_and_label_in_different_orientations_end_on_one_grid(tmp_path):
    rng = np.random.default_rng(2)
    image = rng.random((5, 6, 7)).astype(np.float32)
    labels = (image > 0.5).astype(np.int32)
    write_volume(tmp_path / "ras.nii.gz", image, RAS)
    write_volume(tmp_path / "lps.nii.gz", np.flip(labels, axis=(0, 1)), _lps(labels.shape))
    a = read_volume(tmp_path / "ras.nii.gz")
    b = read_volume(tmp_path / "lps.nii.gz", kind="label")
    np.testing.assert_array_equal(b.array, labels)
    np.testing.assert_allclose(b.affine, a.affine, atol=1e-6)
    check_pair(a, b, num_classes=2)


def test_a_four_d_image_keeps_its_channels_last(tmp_path):
    array = np.random.default_rng(3).random((4, 5, 6, 2)).astype(np.float32)
    write_volume(tmp_path / "mc.nii.gz", array, _lps(array.shape))
    volume = read_volume(tmp_path / "mc.nii.gz")
    np.testing.assert_array_equal(volume.array, np.flip(array, axis=(0, 1)))
    with pytest.raises(DataError, match="mc.nii.gz: .*3-D label"):
        read_volume(tmp_path / "mc.nii.gz", kind="label")
    # the cap counts channels: 4 * 5 * 6 * 2 = 240 voxels
    with pytest.raises(DataError, match="240 voxels"):
        read_volume(tmp_path / "mc.nii.gz", max_voxels=239)
    assert read_volume(tmp_path / "mc.nii.gz", max_voxels=240).array.shape == (4, 5, 6, 2)


# ------------------------------------------------------------------ bad volumes


@pytest.mark.parametrize(
    ("name", "array", "affine", "message"),
    [
        ("shape.nii.gz", np.zeros((4, 4, 5), np.int32), RAS, "label shape"),
        ("affine.nii.gz", np.zeros((4, 4, 4), np.int32), np.diag([2.0, 1, 2, 1]), "affine"),
        ("range.nii.gz", np.full((4, 4, 4), 7, np.int32), RAS, "label value 7 out of range"),
    ],
)
def test_mismatched_pairs_are_one_line_errors_naming_the_label(
    tmp_path, name, array, affine, message
):
    write_volume(tmp_path / "img.nii.gz", np.zeros((4, 4, 4), np.float32), RAS)
    image = read_volume(tmp_path / "img.nii.gz")
    write_volume(tmp_path / name, array, affine)
    with pytest.raises(DataError, match=message) as info:
        check_pair(image, read_volume(tmp_path / name, kind="label"), num_classes=3)
    _one_line_naming(info, name)
    assert str(info.value).startswith(str(tmp_path / name))


def test_check_pair_tolerance_and_negative_labels():
    image = Volume(np.zeros((2, 2, 2), np.float32), np.eye(4), (1.0, 1.0, 1.0), "/d/img.nii")
    shifted = np.eye(4)
    shifted[0, 3] = 5e-4
    label = Volume(np.zeros((2, 2, 2), np.int32), shifted, (1.0, 1.0, 1.0), "/d/lab.nii")
    check_pair(image, label)  # within atol
    with pytest.raises(DataError, match="image/label affine mismatch"):
        check_pair(image, label, atol=1e-4)
    label.array[0, 0, 0] = -1
    with pytest.raises(DataError, match=r"^/d/lab\.nii: label value -1 is negative"):
        check_pair(image, label)


def test_bad_volumes_are_one_line_errors_naming_the_file(tmp_path):
    write_volume(tmp_path / "frac.nii.gz", np.full((4, 4, 4), 0.5, np.float32), RAS)
    with pytest.raises(DataError, match=r"frac\.nii\.gz: label values must be integers") as info:
        read_volume(tmp_path / "frac.nii.gz", kind="label")
    _one_line_naming(info, "frac.nii.gz")
    write_volume(tmp_path / "whole.nii.gz", np.full((4, 4, 4), 2.0, np.float32), RAS)
    assert read_volume(tmp_path / "whole.nii.gz", kind="label").array.max() == 2
    write_volume(tmp_path / "neg.nii.gz", np.full((4, 4, 4), -1, np.int16), RAS)
    with pytest.raises(DataError, match=r"neg\.nii\.gz: label value -1 is negative"):
        read_volume(tmp_path / "neg.nii.gz", kind="label")
    nib.save(nib.Nifti1Image(np.zeros((4, 0, 4), np.float32), RAS), tmp_path / "empty.nii")
    with pytest.raises(DataError, match=r"empty\.nii: empty volume") as info:
        read_volume(tmp_path / "empty.nii")
    _one_line_naming(info, "empty.nii")
    nan = np.zeros((4, 4, 4), np.float32)
    nan[1, 1, 1] = np.nan
    write_volume(tmp_path / "nan.nii.gz", nan, RAS)
    with pytest.raises(DataError, match=r"nan\.nii\.gz: the image has NaN"):
        read_volume(tmp_path / "nan.nii.gz")
    (tmp_path / "text.nii.gz").write_text("not a volume")
    with pytest.raises(DataError, match=r"text\.nii\.gz: cannot read NIfTI") as info:
        read_volume(tmp_path / "text.nii.gz")
    _one_line_naming(info, "text.nii.gz")
    nib.save(nib.MGHImage(np.zeros((2, 2, 2), np.float32), np.eye(4)), tmp_path / "brain.mgz")
    with pytest.raises(DataError, match=r"brain\.mgz: not a NIfTI file"):
        read_volume(tmp_path / "brain.mgz")
    with pytest.raises(DataError, match=r"missing\.nii\.gz: cannot read NIfTI"):
        read_volume(tmp_path / "missing.nii.gz")
    with pytest.raises(DataError, match=r"imagesTr: not a regular file"):
        read_volume(_directory(tmp_path / "imagesTr"))
    with pytest.raises(ValueError, match="kind"):
        read_volume(tmp_path / "nan.nii.gz", kind="mask")


def test_damaged_compressed_data_is_a_read_error_naming_the_file(tmp_path):
    path = tmp_path / "whole.nii.gz"
    write_volume(path, np.random.default_rng(4).random((30, 30, 30)), RAS)
    raw = path.read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match=r"cut\.nii\.gz: cannot read") as info:
        read_volume(tmp_path / "cut.nii.gz")
    _one_line_naming(info, "cut.nii.gz")
    damaged = bytearray(raw)
    for index in range(2000, len(damaged), 7):
        damaged[index] ^= 0xFF
    (tmp_path / "bits.nii.gz").write_bytes(bytes(damaged))
    with pytest.raises(DataError, match=r"bits\.nii\.gz: cannot read") as info:
        read_volume(tmp_path / "bits.nii.gz")
    _one_line_naming(info, "bits.nii.gz")


# ------------------------------------------------------------------ the voxel cap


def _bomb(path, shape):
    """A .nii whose header declares ``shape`` over a few bytes of data."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.float32)
    path.write_bytes(header.binaryblock + b"\0" * 4 + b"\0" * 64)
    return path


def test_the_voxel_cap_from_the_argument_and_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "big.nii"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), RAS), path)
    with pytest.raises(DataError, match=r"big\.nii: its header declares 512 voxels") as info:
        read_volume(path, max_voxels=500)
    _one_line_naming(info, "big.nii")
    assert "SENET_MAX_VOXELS" in str(info.value)
    monkeypatch.setenv("SENET_MAX_VOXELS", "100")
    with pytest.raises(DataError, match="over the cap of 100; set SENET_MAX_VOXELS"):
        read_volume(path)
    assert read_volume(path, max_voxels=512).array.shape == (8, 8, 8)  # the argument wins
    monkeypatch.setenv("SENET_MAX_VOXELS", "512")
    assert read_volume(path).array.shape == (8, 8, 8)


def test_the_cap_is_checked_before_any_voxel_is_read(tmp_path, monkeypatch):
    # a truncated file under the cap is a read error ...
    small = _bomb(tmp_path / "small.nii", (10, 10, 10))
    with pytest.raises(DataError, match=r"small\.nii: cannot read its voxels"):
        read_volume(small)
    # ... while one over the cap is refused from its header, before its data is touched
    monkeypatch.setenv("SENET_MAX_VOXELS", "100")
    with pytest.raises(DataError, match="set SENET_MAX_VOXELS") as info:
        read_volume(_bomb(tmp_path / "bomb.nii", (4000, 4000, 4000)))
    assert "64000000000 voxels" in str(info.value)
    path = tmp_path / "fine.nii.gz"
    write_volume(path, np.zeros((8, 8, 8), np.float32), RAS)

    def no_reading(*args, **kwargs):
        raise AssertionError("voxels read before the cap was checked")

    monkeypatch.setattr(nib.arrayproxy.ArrayProxy, "__array__", no_reading)
    monkeypatch.setattr(nib.arrayproxy.ArrayProxy, "__getitem__", no_reading)
    with pytest.raises(DataError, match="over the cap of 100"):
        read_volume(path)


def test_a_missing_nibabel_is_a_one_line_import_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "nibabel", None)
    with pytest.raises(ImportError, match=r"pip install 'senet\[medical\]'") as info:
        read_volume(tmp_path / "x.nii.gz")
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ normalisation


def test_zscore_against_numpy():
    values = np.random.default_rng(5).normal(50, 20, (6, 6, 6)).astype(np.float32)
    z = normalize_intensity(values)
    assert z.dtype == np.float32 and abs(float(z.mean())) < 1e-5
    assert float(z.std()) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(z, (values - values.mean()) / values.std(), rtol=1e-4, atol=1e-5)
    assert values.mean() > 40  # the input is left alone
    constant = normalize_intensity(np.full((2, 2, 2), 3, np.int16))
    assert constant.dtype == np.float32 and not constant.any()
    np.testing.assert_array_equal(normalize_intensity(values, mode="none"), values)


def test_zscore_per_channel():
    rng = np.random.default_rng(6)
    values = np.stack([rng.normal(0, 1, (4, 4, 4)), rng.normal(900, 200, (4, 4, 4))], axis=-1)
    z = normalize_intensity(values, channel_axis=-1)
    for c in range(2):
        expected = (values[..., c] - values[..., c].mean()) / values[..., c].std()
        np.testing.assert_allclose(z[..., c], expected, rtol=1e-4, atol=1e-5)
    assert not np.allclose(normalize_intensity(values), z)


def test_a_ct_window_clips_and_scales():
    hu = np.array([-1000.0, -500.0, -160.0, 40.0, 240.0, 900.0])
    windowed = normalize_intensity(hu, window=(-160, 240))
    np.testing.assert_allclose(windowed, np.clip(hu, -160, 240) / 400 + 0.4, atol=1e-6)
    np.testing.assert_allclose(windowed, [0.0, 0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-6)
    assert windowed.dtype == np.float32


@pytest.mark.parametrize(
    ("options", "argument"),
    [
        ({"window": (5, 5)}, "window"),
        ({"window": (240, -160)}, "window"),
        ({"window": (0, 1, 2)}, "window"),
        ({"window": (0, float("inf"))}, "window"),
        ({"window": "wide"}, "window"),
        ({"mode": "minmax"}, "mode"),
        ({"channel_axis": 3}, "channel_axis"),
    ],
)
def test_normalisation_arguments_are_checked(options, argument):
    with pytest.raises(ValueError, match=f"`{argument}` must be"):
        normalize_intensity(np.zeros((2, 2, 2)), **options)


# ------------------------------------------------------------------ the Decathlon layout


def _decathlon(root, shapes, labels=None):
    rng = np.random.default_rng(3)
    for folder in ("imagesTr", "labelsTr", "imagesTs"):
        (root / folder).mkdir(parents=True)
    for i, shape in reversed(list(enumerate(shapes))):  # written out of order
        image = rng.normal(100, 30, shape).astype(np.float32)
        mask = (image > 120).astype(np.int32) + (image > 150)
        write_volume(root / "imagesTr" / f"case_{i:03d}.nii.gz", image, RAS)
        write_volume(root / "labelsTr" / f"case_{i:03d}.nii.gz", mask, RAS)
    write_volume(root / "imagesTs" / "case_900.nii.gz", rng.random(shapes[0]), RAS)
    for folder in ("imagesTr", "labelsTr", "imagesTs"):  # macOS litter
        (root / folder / "._case_000.nii.gz").write_bytes(b"\0\5\26\7")
    labels = labels or {"0": "background", "1": "tissue", "2": "tumour"}
    (root / "dataset.json").write_text(json.dumps({"name": "toy", "labels": labels}))


def test_decathlon_cases_in_name_order_with_class_names(tmp_path):
    _decathlon(tmp_path, [(16, 16, 16)] * 3 + [(8, 9, 10)])
    cases = read_decathlon(tmp_path)
    assert [case.name for case in cases] == [f"case_{i:03d}.nii.gz" for i in range(4)]
    assert decathlon_class_names(tmp_path) == ["background", "tissue", "tumour"]
    for case in cases:
        raw = nib.load(tmp_path / "imagesTr" / case.name).get_fdata()
        np.testing.assert_allclose(case.image.array, (raw - raw.mean()) / raw.std(), atol=1e-4)
        assert case.label.array.dtype == np.int32 and case.label.array.max() == 2
        assert case.label.source == str(tmp_path / "labelsTr" / case.name)
    assert cases[3].image.array.shape == (8, 9, 10)
    test = read_decathlon(tmp_path, split="test")
    assert [(case.name, case.label) for case in test] == [("case_900.nii.gz", None)]
    windowed = read_decathlon(tmp_path, window=(50, 150))
    assert windowed[0].image.array.min() == 0 and windowed[0].image.array.max() == 1
    raw = read_decathlon(tmp_path, normalize="none")[0].image.array
    assert raw.mean() == pytest.approx(100, abs=5)


def test_decathlon_labels_are_checked_against_dataset_json(tmp_path):
    _decathlon(tmp_path, [(6, 6, 6)] * 2, labels={"0": "background", "1": "tissue"})
    with pytest.raises(DataError, match=r"labelsTr/case_000\.nii\.gz: label value 2 out of range"):
        read_decathlon(tmp_path)
    assert len(read_decathlon(tmp_path, num_classes=3)) == 2


def test_a_missing_label_names_the_image(tmp_path):
    _decathlon(tmp_path, [(6, 6, 6)] * 3)
    (tmp_path / "labelsTr" / "case_001.nii.gz").unlink()
    with pytest.raises(DataError, match=r"imagesTr/case_001\.nii\.gz: no label") as info:
        read_decathlon(tmp_path)
    _one_line_naming(info, "case_001.nii.gz")
    assert len(read_decathlon(tmp_path, split="test")) == 1  # the test split needs none
    # a label stored uncompressed still pairs with its compressed image
    write_volume(tmp_path / "labelsTr" / "case_001.nii", np.zeros((6, 6, 6), np.uint8), RAS)
    assert read_decathlon(tmp_path)[1].label.source.endswith("case_001.nii")


def test_decathlon_folders_and_dataset_json_errors(tmp_path):
    with pytest.raises(DataError, match="imagesTr: folder not found"):
        read_decathlon(tmp_path)
    with pytest.raises(ValueError, match="split"):
        read_decathlon(tmp_path, split="val")
    assert decathlon_class_names(tmp_path) is None
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "liver": 1}}))
    assert decathlon_class_names(tmp_path) == ["background", "liver"]  # nnU-Net v2 style
    for bad in ({"labels": {"0": "bg", "2": "x"}}, {"name": "no labels"}, {"labels": []}):
        (tmp_path / "dataset.json").write_text(json.dumps(bad))
        with pytest.raises(DataError, match=r"dataset\.json: ") as info:
            decathlon_class_names(tmp_path)
        _one_line_naming(info, "dataset.json")
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(DataError, match=r"dataset\.json: cannot read"):
        decathlon_class_names(tmp_path)


def test_a_decathlon_folder_loads_as_a_segmentation_set(tmp_path):
    """The Decathlon folder through senet.data.masks (the training reader)."""
    from senet.data.masks import load_masks

    _decathlon(tmp_path, [(16, 16, 16)] * 5)
    splits = load_masks(tmp_path, image_size=16, val_fraction=0.2, test_fraction=0.2)
    assert [len(splits[k]) for k in ("train", "val", "test")] == [3, 1, 1]
    assert splits["train"].class_names == ("background", "tissue", "tumour")
    assert splits["train"].x.shape == (3, 16, 16, 16, 1) and splits["train"].spacing == (1.5, 1, 2)
