"""focus_score and image_blind_map against hand computations."""

import numpy as np
import pytest

from senet.explain import focus_score, image_blind_map


def test_focus_score_by_hand_on_4x4():
    heatmaps = np.zeros((2, 4, 4))
    heatmaps[0] = [[4, 2, 0, 0], [2, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1]]  # sum 10
    masks = np.zeros((2, 4, 4), bool)
    masks[0, :2, :2] = True  # holds 4 + 2 + 2 + 0 = 8 of 10; area 4/16
    masks[1, 3, :2] = True  # image 1: empty heatmap, counted at chance = area 2/16
    score = focus_score(heatmaps, masks)
    energy = (8 / 10 + 2 / 16) / 2
    area = (4 / 16 + 2 / 16) / 2
    assert score["energy_in_parts"] == pytest.approx(energy)
    assert score["area_fraction"] == pytest.approx(area)
    assert score["ratio"] == pytest.approx(energy / area)


def test_uniform_map_scores_chance_and_one_map_serves_all_images(rng):
    masks = rng.uniform(size=(3, 4, 4)) > 0.6
    uniform = focus_score(np.ones((4, 4)), masks)
    assert uniform["energy_in_parts"] == pytest.approx(masks.mean(axis=(1, 2)).mean())
    assert uniform["ratio"] == pytest.approx(1.0)
    single = np.arange(16.0).reshape(4, 4)
    assert focus_score(single, masks) == focus_score(np.stack([single] * 3), masks)


def test_image_blind_map_is_the_mean_mask(rng):
    masks = rng.uniform(size=(5, 4, 4)) > 0.5
    blind = image_blind_map(masks)
    assert blind.shape == (4, 4) and blind.dtype == np.float32
    np.testing.assert_allclose(blind, masks.sum(axis=0) / 5, rtol=1e-6)


def test_bad_inputs_raise():
    masks = np.ones((2, 4, 4), bool)
    with pytest.raises(ValueError, match="heatmaps"):
        focus_score(np.ones((2, 3, 4)), masks)
    with pytest.raises(ValueError, match="non-negative"):
        focus_score(-np.ones((2, 4, 4)), masks)
    with pytest.raises(ValueError, match="masks"):
        focus_score(np.ones((4, 4)), np.ones((4, 4), bool))
    with pytest.raises(ValueError, match="train_masks"):
        image_blind_map(np.zeros((0, 4, 4), bool))
