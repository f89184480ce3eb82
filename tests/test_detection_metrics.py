"""senet.detection.coco_metrics against hand-computed COCO average precision."""

import numpy as np
import pytest

from senet.data.coco import DetectionSet, pad_boxes
from senet.detection import coco_metrics

pytest.importorskip("pycocotools")


def _truth(boxes, labels, names=("a", "b")):
    dense_boxes, dense_labels = pad_boxes(
        [np.asarray(b, np.float32).reshape(-1, 4) for b in boxes],
        [np.asarray(k, np.int32) for k in labels],
    )
    return DetectionSet(
        np.zeros((len(boxes), 64, 64, 1), np.float32), dense_boxes, dense_labels, names
    )


def _interpolated_ap(hits: list[bool], positives: int) -> float:
    """COCO's AP for one class and one IoU threshold, from scratch: detections sorted by
    score, precision made monotone from the right, read at recall 0, 0.01, ..., 1."""
    tp = np.cumsum(hits)
    precision = tp / np.arange(1, len(hits) + 1)
    recall = tp / positives
    total = 0.0
    for point in np.linspace(0, 1, 101):
        reached = precision[recall >= point - 1e-12]
        total += reached.max() if reached.size else 0.0
    return total / 101


def test_perfect_detections_score_one_and_absent_classes_none():
    truth = _truth([[[4, 4, 30, 30], [34, 34, 60, 62]], [[10, 8, 40, 50]]], [[0, 0], [0]])
    boxes = [truth.image_boxes(i)[0] for i in range(2)]
    labels = [truth.image_boxes(i)[1] for i in range(2)]
    scores = [np.ones(len(b)) for b in boxes]
    result = coco_metrics(truth, boxes, scores, labels)
    assert result["map"] == pytest.approx(1.0) and result["map_50"] == pytest.approx(1.0)
    assert result["per_class"]["a"]["ap"] == pytest.approx(1.0)
    assert result["per_class"]["b"] == {"ap": None, "ap_50": None}
    assert (result["num_images"], result["num_boxes"], result["num_detections"]) == (2, 3, 3)


def test_a_box_at_iou_062_counts_at_three_of_ten_thresholds():
    # truth 40 wide; the detection shifted right so that IoU = overlap / union = 0.62
    truth = _truth([[[10, 10, 50, 50]]], [[1]])
    shift = 40 * (1 - 0.62) / (1 + 0.62)  # IoU of two 40x40 squares shifted by s: (40-s)/(40+s)
    found = np.array([[10 + shift, 10, 50 + shift, 50]])
    result = coco_metrics(truth, [found], [np.array([0.9])], [np.array([1])])
    assert result["map_50"] == pytest.approx(1.0) and result["map_75"] == pytest.approx(0.0)
    assert result["map"] == pytest.approx(3 / 10)  # matched at 0.50, 0.55, 0.60


def test_ranked_detections_match_the_interpolated_precision_by_hand():
    # two images, one true box each; three detections: hit (0.9), miss (0.8), hit (0.7)
    truth = _truth([[[5, 5, 25, 25]], [[30, 30, 60, 60]]], [[0], [0]])
    boxes = [np.array([[5, 5, 25, 25], [40, 0, 60, 20]]), np.array([[30, 30, 60, 60]])]
    scores = [np.array([0.9, 0.8]), np.array([0.7])]
    labels = [np.array([0, 0]), np.array([0])]
    result = coco_metrics(truth, boxes, scores, labels)
    expected = _interpolated_ap([True, False, True], positives=2)
    assert expected == pytest.approx((51 + 50 * 2 / 3) / 101)
    assert result["map"] == pytest.approx(expected)  # every threshold: the hits are exact
    assert result["per_class"]["a"]["ap_50"] == pytest.approx(expected)
    # a hit named with the wrong class is no hit: class a keeps the miss (0.8) and the
    # second hit (0.7); class b has no true box, so it is left out of the mean
    result = coco_metrics(truth, boxes, scores, [np.array([1, 0]), np.array([0])])
    assert result["map"] == pytest.approx(_interpolated_ap([False, True], positives=2))
    assert result["per_class"]["b"]["ap"] is None
    # with the classes ignored the wrongly named hit counts again: hit, miss, hit
    assert result["map_agnostic"] == pytest.approx(expected)
    assert result["map_50_agnostic"] == pytest.approx(expected)


def test_no_detections_and_mismatched_lengths():
    truth = _truth([[[5, 5, 25, 25]]], [[0]])
    empty = coco_metrics(truth, [np.zeros((0, 4))], [np.zeros(0)], [np.zeros(0, int)])
    assert empty["map"] == 0.0 and empty["per_class"]["a"]["ap"] == 0.0
    assert empty["map_agnostic"] == 0.0
    assert empty["per_class"]["b"]["ap"] is None
    with pytest.raises(ValueError, match="predictions for 2"):
        coco_metrics(truth, [np.zeros((0, 4))] * 2, [np.zeros(0)] * 2, [np.zeros(0)] * 2)
