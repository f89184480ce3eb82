"""The synthetic 3-D phantoms: shapes, determinism, every class in every volume, and a hard
preset that is harder (less contrast for the noise) than the easy one."""

import numpy as np
import pytest

from senet.data.phantoms import PHANTOM_CLASS_NAMES, synthetic_phantoms


def test_shapes_range_and_determinism():
    images, labels = synthetic_phantoms(4, size=16, seed=1)
    assert images.shape == (4, 16, 16, 16, 1) and images.dtype == np.float32
    assert labels.shape == (4, 16, 16, 16) and labels.dtype == np.int32
    assert images.min() >= 0 and images.max() <= 1
    again = synthetic_phantoms(4, size=16, seed=1)
    np.testing.assert_array_equal(again[0], images)
    assert not np.array_equal(synthetic_phantoms(4, size=16, seed=2)[1], labels)
    six = synthetic_phantoms(2, size=24, num_classes=6)[1]
    assert set(np.unique(six)) == set(range(6)) and len(PHANTOM_CLASS_NAMES) == 6
    for bad in ({"num_classes": 1}, {"size": 8}, {"difficulty": "medium"}):
        with pytest.raises(ValueError):
            synthetic_phantoms(1, **bad)


@pytest.mark.parametrize("difficulty", ["easy", "hard"])
def test_every_organ_is_in_every_volume(difficulty):
    _, labels = synthetic_phantoms(12, size=24, difficulty=difficulty, seed=3)
    for volume in labels:
        assert set(np.unique(volume)) == {0, 1, 2, 3}


def _contrast_to_noise(images, labels):
    """The smallest gap between two classes' mean intensities, over the noise (the mean
    within-class standard deviation)."""
    values = images[..., 0]
    means = [values[labels == k].mean() for k in range(4)]
    noise = np.mean([values[labels == k].std() for k in range(4)])
    gaps = [abs(a - b) for i, a in enumerate(means) for b in means[i + 1 :]]
    return min(gaps) / noise


def test_the_hard_preset_has_less_contrast_for_its_noise():
    easy = _contrast_to_noise(*synthetic_phantoms(8, size=24, seed=4))
    hard = _contrast_to_noise(*synthetic_phantoms(8, size=24, difficulty="hard", seed=4))
    assert easy > 1.0 > hard
