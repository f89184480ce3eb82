"""Segmentation data: the synthetic face parts, image/mask folders, .npz masks, the nearest
label resize and every kind of bad mask."""

import cv2
import numpy as np
import pytest

from senet.data.masks import (
    MaskSet,
    load_masks,
    read_mask_folders,
    read_mask_npz,
    resize_labels,
    split_random,
)
from senet.data.synthetic import FACE_PARTS, synthetic_expressions, synthetic_face_parts
from senet.errors import DataError


def test_face_parts_are_the_expression_images_labelled_by_their_masks():
    images, labels = synthetic_face_parts(28, image_size=40, seed=5, difficulty="hard")
    same, _, masks = synthetic_expressions(28, image_size=40, seed=5, difficulty="hard")
    np.testing.assert_array_equal(images, same)
    assert labels.shape == (28, 40, 40) and labels.dtype == np.uint8
    assert FACE_PARTS == ("background", "skin", "eyes", "brows", "mouth")
    # a part's pixels carry its label unless a part drawn later covers them
    np.testing.assert_array_equal(labels == 4, masks["mouth"])
    np.testing.assert_array_equal(labels == 2, masks["eyes"] & ~masks["mouth"])
    np.testing.assert_array_equal(labels == 3, masks["brows"] & ~masks["eyes"] & ~masks["mouth"])
    parts = masks["eyes"] | masks["brows"] | masks["mouth"]
    assert not (parts & (labels <= 1)).any()
    # every class is in most faces; skin is the largest foreground class
    present = np.stack([(labels == k).any(axis=(1, 2)) for k in range(5)])
    assert present.mean(axis=1).min() > 0.8
    counts = np.bincount(labels.ravel(), minlength=5)
    assert counts[1] > counts[2:].max()


def test_face_parts_are_deterministic_and_the_hard_preset_hides_parts():
    a = synthetic_face_parts(14, image_size=32, seed=1)
    b = synthetic_face_parts(14, image_size=32, seed=1)
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], synthetic_face_parts(14, image_size=32, seed=2)[1])
    with pytest.raises(ValueError, match="n"):
        synthetic_face_parts(0)


@pytest.mark.parametrize("size", [7, 16, 33, 100])
def test_resize_labels_is_opencvs_exact_nearest_neighbour(size):
    labels = np.random.default_rng(size).integers(0, 5, (23, 31), dtype=np.uint8)
    reference = cv2.resize(labels, (size, size), interpolation=cv2.INTER_NEAREST_EXACT)
    np.testing.assert_array_equal(resize_labels(labels, size), reference)
    assert resize_labels(labels, None) is labels


def _write_pairs(root, count=4, side=20, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    images, masks = [], []
    for i in range(count):
        image = rng.integers(0, 256, (side, side), dtype=np.uint8)
        mask = rng.integers(0, classes, (side, side), dtype=np.uint8)
        cv2.imwrite(str(root / "images" / f"case{i}.png"), image)
        cv2.imwrite(str(root / "masks" / f"case{i}.png"), mask)
        images.append(image)
        masks.append(mask)
    return np.stack(images), np.stack(masks)


def test_mask_folders_round_trip_and_resize(tmp_path):
    images, masks = _write_pairs(tmp_path, side=20)
    data = read_mask_folders(tmp_path, image_size=None)
    assert isinstance(data, MaskSet) and len(data) == 4 and data.rank == 2
    np.testing.assert_array_equal(data.y, masks)
    np.testing.assert_allclose(data.x[..., 0], images / 255.0, atol=1e-6)
    assert data.class_names == ("0", "1", "2")
    assert data.names == tuple(f"case{i}.png" for i in range(4))
    resized = read_mask_folders(tmp_path, image_size=32, channels=3)
    assert resized.x.shape == (4, 32, 32, 3) and resized.y.shape == (4, 32, 32)
    np.testing.assert_array_equal(resized.y[1], resize_labels(masks[1], 32))
    (tmp_path / "classes.txt").write_text("background\ncell\nnucleus\nspare\n")
    assert read_mask_folders(tmp_path).class_names == ("background", "cell", "nucleus", "spare")


def test_a_mask_of_another_size_is_an_error_naming_the_mask(tmp_path):
    _write_pairs(tmp_path)
    cv2.imwrite(str(tmp_path / "masks" / "case2.png"), np.zeros((21, 20), np.uint8))
    with pytest.raises(DataError, match=r"case2\.png: mask is 20x21 pixels, its image") as info:
        read_mask_folders(tmp_path)
    assert "\n" not in str(info.value)
    with pytest.warns(UserWarning, match="skipped 1 bad image/mask pair"):
        data = read_mask_folders(tmp_path, skip_bad=True)
    assert len(data) == 3 and "case2.png" not in data.names


def test_an_image_without_a_mask_and_bad_labels_are_errors(tmp_path):
    _write_pairs(tmp_path)
    (tmp_path / "masks" / "case3.png").unlink()
    with pytest.raises(DataError, match=r"case3\.png: no mask"):
        read_mask_folders(tmp_path)
    cv2.imwrite(str(tmp_path / "masks" / "case3.png"), np.full((20, 20), 5, np.uint8))
    (tmp_path / "classes.txt").write_text("a\nb\nc\n")
    with pytest.raises(DataError, match=r"case3\.png: mask value 5 out of range \[0, 3\)"):
        read_mask_folders(tmp_path)
    colour = np.zeros((20, 20, 3), np.uint8)
    colour[..., 2] = 1
    cv2.imwrite(str(tmp_path / "masks" / "case3.png"), colour)
    with pytest.raises(DataError, match="one class index per pixel"):
        read_mask_folders(tmp_path)
    with pytest.raises(DataError, match="folder not found"):
        read_mask_folders(tmp_path / "nothing")


def test_npz_masks_round_trip_and_bad_arrays(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((6, 16, 16), dtype=np.float32)
    y = rng.integers(0, 3, (6, 16, 16))
    np.savez(tmp_path / "good.npz", x=x, y=y, class_names=np.array(["bg", "a", "b"]))
    data = read_mask_npz(tmp_path / "good.npz", image_size=None)
    np.testing.assert_array_equal(data.y, y)
    np.testing.assert_allclose(data.x[..., 0], x)
    assert data.class_names == ("bg", "a", "b")
    np.savez(tmp_path / "shape.npz", x=x, y=y[:, :8])
    with pytest.raises(DataError, match=r"shape\.npz: 'y' must hold a mask"):
        read_mask_npz(tmp_path / "shape.npz")
    fractional = y.astype(np.float32)
    fractional[4, 3, 3] = 0.5
    np.savez(tmp_path / "frac.npz", x=x, y=fractional)
    with pytest.raises(DataError, match=r"frac\.npz, index 4: mask values must be integers"):
        read_mask_npz(tmp_path / "frac.npz")
    with pytest.raises(DataError, match=r"good\.npz: its arrays would need \d+ bytes"):
        read_mask_npz(tmp_path / "good.npz", max_bytes=1000)


def test_load_masks_splits_every_case_once():
    splits = load_masks("synthetic", synthetic_size=50, image_size=32, seed=3)
    assert [len(splits[k]) for k in ("train", "val", "test")] == [40, 5, 5]
    # int32, not the generator's uint8: a multi-worker run's collectives take no uint8
    assert {splits[k].y.dtype for k in splits} == {np.dtype(np.int32)}
    assert splits["train"].class_names == FACE_PARTS
    whole = np.concatenate([splits[k].x for k in ("train", "val", "test")])
    images, _ = synthetic_face_parts(50, image_size=32, seed=3)
    assert sorted(whole.sum(axis=(1, 2, 3)).tolist()) == sorted(images.sum(axis=(1, 2, 3)).tolist())
    parts = split_random(splits["train"], 0.5, 0.0, seed=0)
    assert len(parts["val"]) == 20 and len(parts["test"]) == 0
    with pytest.raises(ValueError, match="channels"):
        load_masks("phantoms", channels=3)
    with pytest.raises(DataError, match="segmentation data not found"):
        load_masks("no/such/folder")


def test_augmentation_moves_image_and_mask_together():
    from senet.data.pipeline import augment_with_masks

    rng = np.random.default_rng(0)
    masks = np.zeros((6, 32, 32), np.int32)
    for mask in masks:  # boxes of classes 1-3 on background
        for k in (1, 2, 3):
            y, x = rng.integers(2, 22, 2)
            mask[y : y + 8, x : x + 8] = k
    images = (masks / 4.0).astype(np.float32)[..., None]
    out_images, out_masks = (a.numpy() for a in augment_with_masks(images, masks, (1, 2)))
    assert out_masks.dtype == np.int32 and set(np.unique(out_masks)) <= {0, 1, 2, 3}
    assert not np.array_equal(out_masks, masks)  # something moved
    for image, mask in zip(out_images[..., 0], out_masks, strict=True):
        # brightness and contrast keep the order of the levels: where the mask says k the
        # image is at the k-th level (up to the pixels interpolated at the boxes' edges)
        means = [image[mask == k].mean() for k in range(4) if (mask == k).sum() > 20]
        assert means == sorted(means) and len(means) >= 3
        slope, offset = np.polyfit(mask.ravel(), image.ravel(), 1)
        agree = np.abs(image - (slope * mask + offset)) < 0.25 * slope
        assert agree.mean() > 0.85  # 0.88-0.97 here; a mask left behind: 0.0-0.85


def test_volume_augmentation_rotates_and_zooms_image_and_mask_together():
    from senet.data.pipeline import augment_with_masks

    rng = np.random.default_rng(1)
    masks = np.zeros((4, 24, 24, 24), np.int32)
    for mask in masks:  # boxes of classes 1-3 in background
        for k in (1, 2, 3):
            z, y, x = rng.integers(3, 14, 3)
            mask[z : z + 7, y : y + 7, x : x + 7] = k
    images = (masks / 4.0).astype(np.float32)[..., None]
    out_x, out_y = (a.numpy() for a in augment_with_masks(images, masks, (3, 4)))
    assert out_x.shape == images.shape and out_y.shape == masks.shape
    assert out_y.dtype == np.int32 and set(np.unique(out_y)) <= {0, 1, 2, 3}
    flips = [
        np.flip(mask, axes) if axes else mask
        for mask in masks
        for axes in [(), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)]
    ]
    for image, mask in zip(out_x[..., 0], out_y, strict=True):
        # more than a flip moved it: no flip of any input is the output
        assert not any(np.array_equal(mask, flipped) for flipped in flips)
        # brightness and contrast are affine, so the image is an affine map of its mask
        # away from the voxels interpolated at the boxes' faces
        slope, offset = np.polyfit(mask.ravel(), image.ravel(), 1)
        agree = np.abs(image - (slope * mask + offset)) < 0.25 * slope
        assert slope > 0 and agree.mean() > 0.9


def test_resample_volumes_against_numpy_rotations():
    from senet.data.pipeline import resample_volumes

    rng = np.random.default_rng(2)
    x = rng.random((2, 5, 5, 5, 2)).astype(np.float32)
    labels = rng.integers(0, 4, (2, 5, 5, 5)).astype(np.int32)
    eye = np.tile(np.eye(3, dtype=np.float32), (2, 1, 1))
    np.testing.assert_array_equal(resample_volumes(x, eye).numpy(), x)
    # output (d, h, w) reads input (d, w, 4 - h): a quarter turn in the (H, W) plane
    quarter = np.tile(np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], np.float32), (2, 1, 1))
    turned = np.rot90(x, k=1, axes=(2, 3))
    np.testing.assert_allclose(resample_volumes(x, quarter).numpy(), turned, atol=1e-5)
    np.testing.assert_array_equal(
        resample_volumes(labels, quarter, nearest=True).numpy(), np.rot90(labels, 1, (2, 3))
    )
    # a half-voxel shift of the sampling grid is the mean of two neighbours (trilinear),
    # and a zoom out by 2 reads every second voxel, reflected at the faces
    half = 0.5 * eye
    line = np.arange(5, dtype=np.float32)
    volume = np.broadcast_to(line[None, None, :, None], (1, 5, 5, 5, 1)).copy()
    got = resample_volumes(volume, np.diag([1.0, 1.0, 2.0]).astype(np.float32)[None]).numpy()
    np.testing.assert_allclose(got[0, 0, 0, :, 0], [1, 0, 2, 4, 3], atol=1e-5)
    got = resample_volumes(volume, half[:1]).numpy()
    np.testing.assert_allclose(got[0, 2, 2, :, 0], [1.0, 1.5, 2.0, 2.5, 3.0], atol=1e-5)


def test_patches_are_drawn_from_the_seed_and_centred_on_foreground():
    from senet.data.pipeline import sample_patches

    rng = np.random.default_rng(0)
    images = rng.random((4, 20, 20, 20, 1)).astype(np.float32)
    masks = np.zeros((4, 20, 20, 20), np.int32)
    masks[0, 17, 2, 9] = 2  # one foreground voxel near a face of the cube
    masks[1, 3:6, 3:6, 3:6] = 1
    x, y = (a.numpy() for a in sample_patches(images, masks, (5, 6), 8, foreground=1.0))
    assert x.shape == (4, 8, 8, 8, 1) and y.shape == (4, 8, 8, 8)
    assert y[0].sum() == 2 and y[1].sum() > 0  # the foreground is inside the patch
    # the image crop is the mask crop's place: find where it came from
    for b in range(4):
        hits = [
            (i, j, k)
            for i in range(13)
            for j in range(13)
            for k in range(13)
            if np.array_equal(images[b, i : i + 8, j : j + 8, k : k + 8], x[b])
        ]
        assert len(hits) == 1
        i, j, k = hits[0]
        np.testing.assert_array_equal(masks[b, i : i + 8, j : j + 8, k : k + 8], y[b])
    again = sample_patches(images, masks, (5, 6), 8, foreground=1.0)[0].numpy()
    np.testing.assert_array_equal(again, x)
    other = sample_patches(images, masks, (5, 7), 8, foreground=1.0)[0].numpy()
    assert not np.array_equal(other[2:], x[2:])  # no foreground there: anywhere
