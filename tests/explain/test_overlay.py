"""overlay colours and shapes; the figure functions write PNG files."""

import os

import matplotlib
import numpy as np
import pytest

from senet.explain import class_specificity, heatmap_grid, overlay, profile_figure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def _out_dir(tmp_path):
    # SENET_FIGURE_DIR keeps the PNGs for a look; by default they go to pytest's tmp_path.
    return tmp_path if not os.environ.get("SENET_FIGURE_DIR") else os.environ["SENET_FIGURE_DIR"]


@pytest.mark.parametrize(
    "image",
    [
        np.full((6, 8), 0.5, "float32"),
        np.full((6, 8, 1), 128, np.uint8),
        np.full((6, 8, 3), 0.5, "float64"),
    ],
)
def test_overlay_shape_dtype_and_blend(image):
    heatmap = np.zeros((6, 8), "float32")
    heatmap[:, 4:] = 1.0
    gray = 0.5 if image.dtype != np.uint8 else 128 / 255
    jet = matplotlib.colormaps["jet"]
    out = overlay(image, heatmap, alpha=0.25)
    assert out.shape == (6, 8, 3) and out.dtype == np.uint8
    for column, value in [(0, 0.0), (7, 1.0)]:
        expected = np.rint(255 * (0.75 * gray + 0.25 * np.array(jet(value)[:3])))
        np.testing.assert_array_equal(out[0, column], expected)
    # alpha 0 is the image itself; alpha 1 the colour map alone.
    np.testing.assert_array_equal(overlay(image, heatmap, alpha=0.0)[..., 0], np.rint(255 * gray))
    np.testing.assert_array_equal(
        overlay(image, heatmap, alpha=1.0)[0, 0], np.rint(255 * np.array(jet(0.0)[:3]))
    )


def test_overlay_resizes_a_coarse_heatmap_and_checks_arguments():
    out = overlay(np.zeros((48, 48)), np.ones((6, 6)), cmap="viridis")
    assert out.shape == (48, 48, 3)
    with pytest.raises(ValueError, match="alpha"):
        overlay(np.zeros((4, 4)), np.zeros((4, 4)), alpha=1.5)
    with pytest.raises(ValueError, match="cmap"):
        overlay(np.zeros((4, 4)), np.zeros((4, 4)), cmap="no-such-map")
    with pytest.raises(ValueError, match="image"):
        overlay(np.zeros((4, 4, 2)), np.zeros((4, 4)))


def test_heatmap_grid_writes_a_png(tmp_path, rng):
    images = rng.uniform(size=(3, 48, 48, 1)).astype("float32")
    heatmaps = {"baseline": rng.uniform(size=(3, 48, 48)), "se": rng.uniform(size=(3, 48, 48))}
    preds = {"baseline": np.array([3, 1, 0]), "se": np.array([3, 4, 6])}
    path = os.path.join(_out_dir(tmp_path), "heatmap_grid.png")
    figure = heatmap_grid(images, heatmaps, np.array([3, 4, 6]), preds, CLASSES, path)
    with open(path, "rb") as handle:
        assert handle.read(8) == PNG_SIGNATURE
    assert len([axis for axis in figure.axes if axis.images]) == 3 * (1 + 2 * 2)
    assert len(figure.axes) == 3 * (1 + 2 * 2) + 1  # and the colour bar
    titles = [axis.get_title() for axis in figure.axes]
    assert "true: happy" in titles and "se\npred: sad" in titles
    with pytest.raises(ValueError, match="heatmaps_by_model"):
        heatmap_grid(images, {"se": heatmaps["se"][:2]}, None, None, CLASSES)


def test_profile_figure_writes_a_png_with_the_specificity(tmp_path, rng):
    profiles = {
        "block1_se": rng.uniform(0.4, 0.6, (7, 16)),
        "block3_se": rng.uniform(0.0, 1.0, (7, 64)),
    }
    specificity = class_specificity(profiles)
    path = os.path.join(_out_dir(tmp_path), "profile.png")
    figure = profile_figure(profiles, CLASSES, "block3_se", path)
    with open(path, "rb") as handle:
        assert handle.read(8) == PNG_SIGNATURE
    assert f"{specificity['block3_se']:.3f}" in figure.axes[0].get_title()
    assert [label.get_text() for label in figure.axes[0].get_yticklabels()] == CLASSES

    both = profile_figure(profiles, CLASSES, ["block1_se", "block3_se"])
    assert len([axis for axis in both.axes if axis.images]) == 2
    with pytest.raises(ValueError, match="layer_name"):
        profile_figure(profiles, CLASSES, "block9_se")
