"""The synthetic 3-D phantoms: shapes, determinism, every class in every volume, intensities
by class, partial volume and a hard preset that is harder (less contrast for the noise)
than the easy one."""

import dataclasses

import numpy as np
import pytest

from senet.data import phantoms
from senet.data.phantoms import PHANTOM_CLASS_NAMES, PHANTOM_PRESETS, synthetic_phantoms


def test_shapes_dtypes_and_range():
    images, labels = synthetic_phantoms(3, size=16, seed=1)
    assert images.shape == (3, 16, 16, 16, 1) and images.dtype == np.float32
    assert labels.shape == (3, 16, 16, 16) and labels.dtype == np.int32
    assert images.min() >= 0 and images.max() <= 1
    assert labels.min() == 0 and labels.max() == 3


def test_the_same_seed_gives_the_same_volumes_and_another_seed_others():
    images, labels = synthetic_phantoms(3, size=16, difficulty="hard", seed=1)
    again = synthetic_phantoms(3, size=16, difficulty="hard", seed=1)
    np.testing.assert_array_equal(again[0], images)
    np.testing.assert_array_equal(again[1], labels)
    other = synthetic_phantoms(3, size=16, difficulty="hard", seed=2)
    assert not np.array_equal(other[0], images) and not np.array_equal(other[1], labels)


@pytest.mark.parametrize("difficulty", ["easy", "hard"])
@pytest.mark.parametrize(("num_classes", "size"), [(4, 24), (6, 16), (2, 16)])
def test_every_class_is_in_every_volume(difficulty, num_classes, size):
    _, labels = synthetic_phantoms(10, size=size, difficulty=difficulty, num_classes=num_classes)
    for volume in labels:
        counts = np.bincount(volume.ravel(), minlength=num_classes)
        assert len(counts) == num_classes and (counts >= phantoms.MIN_ORGAN_VOXELS).all()
    assert len(PHANTOM_CLASS_NAMES) == 6 and PHANTOM_CLASS_NAMES[0] == "background"


@pytest.mark.parametrize(
    "bad", [{"num_classes": 1}, {"num_classes": 7}, {"size": 8}, {"difficulty": "medium"}]
)
def test_arguments_out_of_range_are_refused(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        synthetic_phantoms(1, **bad)


def test_easy_organs_have_the_presets_intensities_in_order():
    """Organ voxels away from the edges (eroded by one voxel, so no partial volume) have
    the mean intensity of their class, within the bias field's and noise's spread."""
    from scipy import ndimage

    images, labels = synthetic_phantoms(6, size=32, num_classes=6, seed=5)
    means = []
    for k in range(1, 6):
        core = np.stack([ndimage.binary_erosion(volume == k) for volume in labels])
        means.append(float(images[..., 0][core].mean()))
    expected = PHANTOM_PRESETS["easy"].organs
    np.testing.assert_allclose(means, expected, atol=0.06)
    assert np.argsort(means).tolist() == np.argsort(expected).tolist()


def test_partial_volume_blends_edges_and_labels_follow_the_voxel_centres(monkeypatch):
    """Without noise or bias, a voxel inside an organ has exactly the organ's intensity and
    a voxel on its edge something between it and its neighbour's: the fine grid averaged."""
    easy = dataclasses.replace(PHANTOM_PRESETS["easy"], noise=0.0, bias=0.0)
    monkeypatch.setattr(phantoms, "PHANTOM_PRESETS", {"easy": easy})
    images, labels = synthetic_phantoms(2, size=24, num_classes=2, seed=3)
    liver, inside = easy.organs[0], labels == 1
    values = images[..., 0][inside]
    assert np.isclose(values, liver).mean() > 0.5  # the interior: pure liver
    assert ((values > easy.body - 1e-6) & (values < liver + 1e-6)).all()
    body = images[..., 0][~inside]
    blended = (body > easy.body + 1e-3) & (body < liver - 1e-3)
    assert blended.any()  # edge voxels labelled body, partly liver
    # each voxel the mean of 8 fine voxels of air, body or liver
    mixes = np.array(
        [(b * easy.body + c * liver) / 8 for b in range(9) for c in range(9 - b)], np.float32
    )
    nearest = np.abs(np.unique(images)[:, None] - mixes[None, :]).min(axis=1)
    assert nearest.max() < 1e-6


def _contrast_to_noise(images, labels):
    """The smallest gap between two classes' mean intensities (body voxels for class 0),
    over the noise (the mean within-class standard deviation)."""
    values = images[..., 0]
    body = (labels == 0) & (values > 0.05)  # the body, without the air around it
    masks = [body] + [labels == k for k in range(1, 4)]
    means = [values[m].mean() for m in masks]
    noise = np.mean([values[m].std() for m in masks])
    gaps = [abs(a - b) for i, a in enumerate(means) for b in means[i + 1 :]]
    return min(gaps) / noise


def test_the_hard_preset_has_less_contrast_for_its_noise():
    easy = _contrast_to_noise(*synthetic_phantoms(8, size=24, seed=4))
    hard = _contrast_to_noise(*synthetic_phantoms(8, size=24, difficulty="hard", seed=4))
    assert easy > 1.0 > hard
    assert easy > 3 * hard


def test_hard_organs_are_smaller():
    _, easy = synthetic_phantoms(8, size=24, seed=6)
    _, hard = synthetic_phantoms(8, size=24, difficulty="hard", seed=6)
    assert (hard > 0).sum() < 0.8 * (easy > 0).sum()
