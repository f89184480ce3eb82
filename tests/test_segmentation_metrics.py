"""Segmentation metrics against NumPy formulas, a brute-force Hausdorff distance and MONAI's
DiceMetric, MeanIoU and HausdorffDistanceMetric (random masks and the edge cases)."""

import math
import warnings

import numpy as np
import pytest

from senet.segmentation import aggregate, case_metrics, hd95, segmentation_metrics


def _blobs(shape, rng, classes=4, noise=0.15):
    """A true label map of boxes and a prediction that flips some voxels at random."""
    target = np.zeros(shape, int)
    for k in range(1, classes - 1):  # the last class never occurs in the target
        start = rng.integers(0, [s // 2 for s in shape])
        size = rng.integers(2, [max(3, s // 2) for s in shape])
        target[tuple(slice(a, a + b) for a, b in zip(start, size, strict=True))] = k
    flips = rng.random(shape) < noise
    pred = np.where(flips, rng.integers(0, classes, shape), target)
    return pred, target


def _brute_hd95(a, b, spacing):
    from scipy.ndimage import binary_erosion

    scale = np.asarray(spacing, float)
    pa = np.argwhere(a & ~binary_erosion(a)) * scale
    pb = np.argwhere(b & ~binary_erosion(b)) * scale
    d = np.sqrt(((pa[:, None] - pb[None]) ** 2).sum(-1))
    return max(np.percentile(d.min(1), 95), np.percentile(d.min(0), 95))


def test_dice_and_iou_are_the_formulas():
    target = np.array([[0, 1, 1], [0, 1, 2], [2, 2, 0]])
    pred = np.array([[0, 1, 0], [1, 1, 2], [2, 0, 0]])
    out = case_metrics(pred, target, 4)
    # class 1: |P & T| = 2, |P| = 3, |T| = 3; class 2: 2, 2, 3; class 3 absent
    np.testing.assert_allclose(out["dice"][:2], [2 * 2 / 6, 2 * 2 / 5])
    np.testing.assert_allclose(out["iou"][:2], [2 / 4, 2 / 3])
    assert math.isnan(out["dice"][2]) and math.isnan(out["iou"][2])
    both = case_metrics(pred, target, 4, include_background=True)
    assert both["dice"].shape == (4,)


@pytest.mark.parametrize("shape", [(9, 11), (5, 7, 6)])
@pytest.mark.parametrize("spacing", [None, "random"])
def test_hd95_is_the_brute_force_percentile(shape, spacing):
    rng = np.random.default_rng(len(shape))
    spacing = None if spacing is None else tuple(rng.uniform(0.4, 2.5, len(shape)))
    pred, target = _blobs(shape, rng, classes=3, noise=0.2)
    for k in (1, 2):
        a, b = pred == k, target == k
        if a.any() and b.any():
            expected = _brute_hd95(a, b, spacing or (1,) * len(shape))
            assert hd95(a, b, spacing) == pytest.approx(expected, rel=1e-9)


def test_hd95_of_empty_and_single_voxel_masks():
    empty = np.zeros((6, 6), bool)
    one = empty.copy()
    one[2, 3] = True
    other = empty.copy()
    other[5, 0] = True
    assert math.isnan(hd95(empty, empty)) and math.isnan(hd95(one, empty))
    assert math.isnan(hd95(empty, one))
    assert hd95(one, one) == 0.0
    assert hd95(one, other) == pytest.approx(math.hypot(3, 3))
    assert hd95(one, other, spacing=(2.0, 0.5)) == pytest.approx(math.hypot(6, 1.5))


def _monai(pred, target, classes, spacing=None):
    torch = pytest.importorskip("torch")
    metrics = pytest.importorskip("monai.metrics")

    def one_hot(labels):
        return torch.tensor(np.moveaxis(np.eye(classes)[labels], -1, 0)[None]).float()

    p, t = one_hot(pred), one_hot(target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI warns of empty classes
        dice = metrics.DiceMetric(include_background=False, reduction="none")(p, t)
        iou = metrics.MeanIoU(include_background=False, reduction="none")(p, t)
        hd = metrics.HausdorffDistanceMetric(
            include_background=False, percentile=95, reduction="none"
        )(p, t, spacing=spacing)
    return {"dice": dice.numpy()[0], "iou": iou.numpy()[0], "hd95": hd.numpy()[0]}


# the MONAI references load torch (seconds): the full suite runs them, the quick lane not
@pytest.mark.slow
@pytest.mark.parametrize("shape", [(20, 24), (12, 14, 10)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_monai_on_random_masks(shape, seed):
    rng = np.random.default_rng(seed)
    pred, target = _blobs(shape, rng)
    if seed == 2:
        pred[pred == 1] = 0  # a class missed entirely
    spacing = None if seed == 0 else tuple(float(s) for s in rng.uniform(0.5, 2.0, len(shape)))
    ours = case_metrics(pred, target, 4, spacing=spacing)
    reference = _monai(pred, target, 4, spacing)
    for name in ("dice", "iou", "hd95"):
        np.testing.assert_allclose(ours[name], reference[name], rtol=1e-5, equal_nan=True)


@pytest.mark.slow
@pytest.mark.parametrize(
    "case",
    ["empty pred", "empty target", "both empty", "full", "one voxel", "one voxel apart"],
)
def test_metrics_match_monai_on_edge_cases(case):
    target = np.zeros((7, 8, 6), int)
    pred = target.copy()
    if case == "empty pred":
        target[2:5, 2:5, 1:4] = 1
    elif case == "empty target":
        pred[2:5, 2:5, 1:4] = 1
    elif case == "full":
        pred[:], target[:] = 1, 1
    elif case == "one voxel":
        pred[3, 3, 3] = target[3, 3, 3] = 1
    elif case == "one voxel apart":
        pred[0, 0, 0] = target[6, 7, 5] = 1
    ours = case_metrics(pred, target, 2)
    reference = _monai(pred, target, 2)
    for name in ("dice", "iou", "hd95"):
        np.testing.assert_allclose(ours[name], reference[name], rtol=1e-5, equal_nan=True)


def test_aggregate_gives_the_t_interval_over_defined_cases():
    from scipy import stats

    dice = [0.9, 0.7, math.nan, 0.8, 0.6]
    cases = [
        {"dice": np.array([d]), "iou": np.array([d / 2]), "hd95": np.array([math.nan])}
        for d in dice
    ]
    out = aggregate(cases, ["organ"])
    values = np.array([0.9, 0.7, 0.8, 0.6])
    half = stats.t.ppf(0.975, 3) * values.std(ddof=1) / 2
    row = out["per_class"]["organ"]["dice"]
    assert row["n"] == 4 and row["mean"] == pytest.approx(values.mean())
    # senet.stats.t_quantile is a series approximation of the t quantile (1e-5 relative)
    expected = (values.mean() - half, values.mean() + half)
    assert (row["low"], row["high"]) == pytest.approx(expected, rel=1e-4)
    assert out["per_class"]["organ"]["hd95"] == {"mean": None, "low": None, "high": None, "n": 0}
    assert out["mean_dice"] == pytest.approx(values.mean()) and out["mean_hd95"] is None
    assert out["num_cases"] == 5


def test_segmentation_metrics_over_a_batch_of_cases():
    rng = np.random.default_rng(5)
    pairs = [_blobs((10, 12), rng) for _ in range(6)]
    preds = np.stack([p for p, _ in pairs])
    targets = np.stack([t for _, t in pairs])
    out = segmentation_metrics(preds, targets, 4, ["bg", "a", "b", "c"])
    per_case = [case_metrics(p, t, 4)["dice"] for p, t in pairs]
    assert out["per_class"]["a"]["dice"]["mean"] == pytest.approx(
        np.nanmean([d[0] for d in per_case])
    )
    assert out["per_class"]["c"]["dice"]["n"] == 0  # never in a target
    assert out["mean_dice"] == pytest.approx(
        np.mean([out["per_class"][k]["dice"]["mean"] for k in ("a", "b")])
    )
    with pytest.raises(ValueError, match="class_names"):
        segmentation_metrics(preds, targets, 4, ["bg", "a"])
