"""Segmentation metrics against NumPy formulas, a brute-force Hausdorff distance and MONAI's
DiceMetric, MeanIoU and HausdorffDistanceMetric (random masks and the edge cases)."""

import json
import math
import warnings

import numpy as np
import pytest

from senet.segmentation import aggregate, case_metrics, hd95, segmentation_metrics
from senet.segmentation.metrics import _hd95


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
    """Every pairwise distance between the two surfaces, on the whole arrays."""
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
    assert math.isnan(out["hd95"][2])
    both = case_metrics(pred, target, 4, include_background=True)
    assert both["dice"].shape == (4,)
    # background: |P & T| = 2 of |P| = 4, |T| = 3
    assert both["dice"][0] == pytest.approx(4 / 7) and both["iou"][0] == pytest.approx(2 / 5)
    np.testing.assert_array_equal(both["dice"][1:], out["dice"])
    # float label maps of whole numbers and booleans are label maps too
    again = case_metrics(pred.astype(np.float32), target.astype(np.uint8), 4)
    np.testing.assert_array_equal(again["dice"], out["dice"])
    binary = case_metrics(pred == 1, target == 1, 2)
    assert binary["dice"][0] == pytest.approx(2 / 3)


def test_a_class_missed_or_invented_scores_dice_zero_or_nothing():
    target = np.zeros((6, 6), int)
    target[1:3, 1:3] = 1
    missed = case_metrics(np.zeros_like(target), target, 3)
    assert missed["dice"][0] == 0 and missed["iou"][0] == 0 and math.isnan(missed["hd95"][0])
    invented = np.where(target == 1, 1, 0)
    invented[5, 5] = 2  # class 2 predicted, never true: undefined, like MONAI's ignore_empty
    out = case_metrics(invented, target, 3)
    assert out["dice"][0] == 1 and out["hd95"][0] == 0
    assert all(math.isnan(out[m][1]) for m in ("dice", "iou", "hd95"))


@pytest.mark.parametrize("shape", [(9, 11), (5, 7, 6)])
@pytest.mark.parametrize("spacing", [None, "random"])
def test_hd95_is_the_brute_force_percentile(shape, spacing):
    rng = np.random.default_rng(len(shape))
    spacing = None if spacing is None else tuple(rng.uniform(0.4, 2.5, len(shape)))
    for _ in range(3):
        pred, target = _blobs(shape, rng, classes=3, noise=0.2)
        for k in (1, 2):
            a, b = pred == k, target == k
            if a.any() and b.any():
                expected = _brute_hd95(a, b, spacing or (1,) * len(shape))
                assert hd95(a, b, spacing) == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("where", ["middle", "corner", "border", "apart"])
def test_cropping_to_the_box_changes_nothing(where):
    """The distances in the union's bounding box (+1 voxel) are those of the whole volume:
    against the same computation uncropped and the brute force."""
    shape = (24, 19, 21)
    spacing = (2.5, 0.7, 1.1)
    a, b = np.zeros(shape, bool), np.zeros(shape, bool)
    if where == "middle":
        a[8:13, 6:11, 9:12] = True
        b[9:15, 5:9, 8:13] = True
    elif where == "corner":  # touching the volume's edges, where the box is cut
        a[:4, :3, :5] = True
        b[:3, :5, :2] = True
    elif where == "border":
        a[:, 7:10, 3:6] = True
        b[2:, 8:12, 4:9] = True
    else:  # a box spanning the volume, nearly empty
        a[1, 2, 3] = a[2, 2, 3] = True
        b[22, 17, 20] = b[10, 3, 19] = True
    cropped = _hd95(a, b, spacing, crop=True)
    assert cropped == _hd95(a, b, spacing, crop=False)
    assert cropped == pytest.approx(_brute_hd95(a, b, spacing), rel=1e-12)


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
    assert hd95(one, other, spacing=2.0) == pytest.approx(2 * math.hypot(3, 3))
    full = np.ones((4, 5), bool)
    assert hd95(full, full) == 0.0


def test_bad_arguments_are_one_line_errors_naming_them():
    labels = np.zeros((4, 4), int)
    with pytest.raises(ValueError, match="`pred`.*shape"):
        case_metrics(np.zeros((4, 5), int), labels, 2)
    with pytest.raises(ValueError, match=r"`target` must be labels in \[0, 2\)"):
        case_metrics(labels, labels + 2, 2)
    with pytest.raises(ValueError, match="`pred` must be a label map of integers"):
        case_metrics(labels + 0.5, labels, 2)
    with pytest.raises(ValueError, match="`spacing`"):
        case_metrics(labels, labels, 2, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="`spacing`"):
        hd95(labels, labels, spacing=(1.0, -1.0))
    with pytest.raises(ValueError, match="`num_classes`"):
        case_metrics(labels, labels, 0)


def _monai(pred, target, classes, spacing=None, include_background=False):
    torch = pytest.importorskip("torch")
    metrics = pytest.importorskip("monai.metrics")

    def one_hot(labels):
        return torch.tensor(np.moveaxis(np.eye(classes)[labels], -1, 0)[None]).float()

    p, t = one_hot(pred), one_hot(target)
    options = {"include_background": include_background, "reduction": "none"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI warns of empty classes
        dice = metrics.DiceMetric(**options)(p, t)
        iou = metrics.MeanIoU(**options)(p, t)
        hd = metrics.HausdorffDistanceMetric(percentile=95, **options)(p, t, spacing=spacing)
    return {"dice": dice.numpy()[0], "iou": iou.numpy()[0], "hd95": hd.numpy()[0]}


def _assert_like_monai(ours, reference):
    for name in ("dice", "iou", "hd95"):
        # MONAI's distances are float32: 1e-6 relative
        np.testing.assert_allclose(
            ours[name], reference[name], rtol=1e-6, atol=1e-6, equal_nan=True, err_msg=name
        )


# the MONAI references load torch (seconds): the full suite runs them, the quick lane not
@pytest.mark.slow
@pytest.mark.parametrize("shape", [(20, 24), (12, 14, 10)])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_metrics_match_monai_on_random_masks(shape, seed):
    rng = np.random.default_rng(seed)
    pred, target = _blobs(shape, rng, classes=5)
    if seed == 2:
        pred[pred == 1] = 0  # a class missed entirely
    spacing = None if seed == 0 else tuple(float(s) for s in rng.uniform(0.5, 2.0, len(shape)))
    background = seed == 3
    ours = case_metrics(pred, target, 5, spacing=spacing, include_background=background)
    _assert_like_monai(ours, _monai(pred, target, 5, spacing, include_background=background))
    assert np.isfinite(ours["dice"]).sum() >= 2


@pytest.mark.slow
def test_isotropic_spacing_given_as_one_number_matches_monai():
    pred, target = _blobs((11, 9, 13), np.random.default_rng(7))
    _assert_like_monai(case_metrics(pred, target, 4, spacing=1.7), _monai(pred, target, 4, 1.7))


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(7, 8), (7, 8, 6)])
@pytest.mark.parametrize(
    "case",
    ["empty pred", "empty target", "both empty", "full", "one voxel", "one voxel apart"],
)
def test_metrics_match_monai_on_edge_cases(shape, case):
    target = np.zeros(shape, int)
    pred = target.copy()
    box = tuple(slice(2, 5) for _ in shape)
    if case == "empty pred":
        target[box] = 1
    elif case == "empty target":
        pred[box] = 1
    elif case == "full":
        pred[:], target[:] = 1, 1
    elif case == "one voxel":
        pred[(3,) * len(shape)] = target[(3,) * len(shape)] = 1
    elif case == "one voxel apart":
        pred[(0,) * len(shape)] = 1
        target[tuple(s - 1 for s in shape)] = 1
    ours = case_metrics(pred, target, 2)
    _assert_like_monai(ours, _monai(pred, target, 2))
    if case in ("empty pred", "empty target", "both empty"):
        assert math.isnan(ours["hd95"][0])  # MONAI 1.6: NaN, not inf


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
    # senet.stats.t_quantile is a 4-decimal table of the t quantile
    expected = (values.mean() - half, values.mean() + half)
    assert (row["low"], row["high"]) == pytest.approx(expected, rel=1e-4)
    assert out["per_class"]["organ"]["hd95"] == {"mean": None, "low": None, "high": None, "n": 0}
    assert out["mean_dice"] == pytest.approx(values.mean()) and out["mean_hd95"] is None
    assert out["mean_iou"] == pytest.approx(values.mean() / 2)
    assert out["num_cases"] == 5


def test_aggregate_over_classes_and_many_cases_is_plain_json():
    from scipy import stats

    rng = np.random.default_rng(3)
    dice = rng.uniform(0.3, 1.0, (40, 2))
    dice[rng.random((40, 2)) < 0.2] = math.nan
    cases = [{"dice": d, "iou": d / 2, "hd95": 10 * d} for d in dice]
    out = aggregate(cases, ["a", "b"])
    for i, name in enumerate(("a", "b")):
        values = dice[:, i][np.isfinite(dice[:, i])]
        n = len(values)
        half = stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n)
        row = out["per_class"][name]["dice"]
        assert row["n"] == n
        assert (row["low"], row["high"]) == pytest.approx(
            (values.mean() - half, values.mean() + half), rel=1e-4
        )
    assert out["mean_dice"] == pytest.approx(float(np.mean(np.nanmean(dice, axis=0))))
    one = {"dice": np.array([0.5, math.nan]), "iou": np.zeros(2), "hd95": np.ones(2)}
    single = aggregate([one], ["a", "b"])["per_class"]
    assert single["a"]["dice"] == {"mean": 0.5, "low": None, "high": None, "n": 1}
    assert single["b"]["dice"]["n"] == 0
    json.dumps(out, allow_nan=False)  # floats, ints and None only
    with pytest.raises(ValueError, match="class_names"):
        aggregate(cases, ["a"])


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
    assert out["num_cases"] == 6
    with pytest.raises(ValueError, match="class_names"):
        segmentation_metrics(preds, targets, 4, ["bg", "a"])
    with pytest.raises(ValueError, match="preds"):
        segmentation_metrics(preds[:5], targets, 4, ["bg", "a", "b", "c"])


def test_cases_of_different_shapes_with_spacing():
    rng = np.random.default_rng(9)
    pairs = [_blobs((8, 9, 10), rng), _blobs((6, 12, 7), rng)]
    out = segmentation_metrics(
        [p for p, _ in pairs], [t for _, t in pairs], 4, ["bg", "a", "b", "c"], spacing=(2, 1, 1)
    )
    first = case_metrics(*pairs[0], 4, spacing=(2, 1, 1))["hd95"][0]
    second = case_metrics(*pairs[1], 4, spacing=(2, 1, 1))["hd95"][0]
    assert out["per_class"]["a"]["hd95"]["mean"] == pytest.approx(np.nanmean([first, second]))
