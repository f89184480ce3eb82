"""`senet train --task detection`: keras-hub's RetinaNet on a senet ResNet, trained on the
synthetic face scenes, recorded, evaluated with COCO mAP; its options refused where they
do not apply."""

import importlib.util
import json

import cv2
import numpy as np
import pytest

from senet.cli import main
from senet.config import TrainConfig
from senet.data.base import EMOTIONS
from senet.layers.pyramid import KERAS_HUB_INSTALL

needs_keras_hub = pytest.mark.skipif(
    importlib.util.find_spec("keras_hub") is None,
    reason=f"keras-hub is not installed ({KERAS_HUB_INSTALL})",
)


def test_detection_options_are_refused_where_they_do_not_apply():
    with pytest.raises(ValueError, match="backbone"):
        TrainConfig(model="resnet18", backbone="resnet50")
    with pytest.raises(ValueError, match="a network of the detection task"):
        TrainConfig(task="detection", model="unet")
    with pytest.raises(ValueError, match="a network of the classification task"):
        TrainConfig(model="retinanet")
    assert TrainConfig(task="detection", model="retinanet", backbone="resnet50").backbone


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("det") / "run"
    argv = ["train", "--task", "detection", "--model", "retinanet", "--attention", "se"]
    argv += ["--synthetic-size", "40", "--image-size", "64", "--epochs", "1"]
    argv += ["--batch-size", "8", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    return out


@needs_keras_hub
@pytest.mark.slow
def test_a_detection_run_records_and_evaluates_alike(run, tmp_path, capsys):
    from senet.layers import load_model, training_info

    metrics = json.loads((run / "metrics.json").read_text())
    assert {"map", "map_50", "map_75", "per_class", "test_map"} <= set(metrics)
    assert 0.0 <= metrics["map"] <= metrics["map_50"] <= 1.0
    assert list(metrics["per_class"]) == list(EMOTIONS)
    assert (run / "ap.png").stat().st_size > 0
    model = load_model(run / "model.keras", compile=False)  # a fresh load: keras-hub classes
    record = training_info(model)
    assert record["task"] == "detection" and record["class_names"] == list(EMOTIONS)
    assert record["backbone"] == "resnet18" and record["image_size"] == 64
    assert any(layer.name.endswith("_se") for layer in model.backbone.image_encoder.layers)
    # evaluate reads the run's split: the same test images, the same mAP
    out = tmp_path / "eval"
    argv = ["evaluate", str(run / "model.keras"), "--data", "synthetic", "--out", str(out)]
    assert main(argv) == 0
    again = json.loads((out / "metrics.json").read_text())
    assert again["task"] == "detection" and again["num_images"] == metrics["num_images"]
    assert again["map"] == pytest.approx(metrics["map"], abs=1e-6)
    assert (out / "ap.png").exists()
    # predict: one JSON line per photo, boxes inside it, classes of the run, a drawn copy
    photo = tmp_path / "x.png"
    photo.write_bytes((run / "ap.png").read_bytes())
    argv = ["predict", str(run / "model.keras"), str(photo), "--json", "--min-score", "0"]
    capsys.readouterr()  # what came before
    assert main([*argv, "--annotate", str(tmp_path / "drawn")]) == 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    result = json.loads(line)
    assert result["path"] == str(photo) and 1 <= len(result["detections"]) <= 100
    height, width = cv2.imread(str(photo)).shape[:2]
    for item in result["detections"]:
        x0, y0, x1, y1 = item["box"]
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        assert item["class"] in EMOTIONS and 0 <= item["score"] <= 1
    assert (tmp_path / "drawn" / "x_annotated.png").stat().st_size > 0
    # as text, an image with nothing over the bar says how close it came
    assert main(["predict", str(run / "model.keras"), str(photo), "--min-score", "1"]) == 0
    best = max(item["score"] for item in result["detections"])
    assert f"x.png: nothing scored 1 or more (best {best:.2f};" in capsys.readouterr().out
    # explain does not take detectors yet, and says so in one line
    assert main(["explain", str(run / "model.keras"), str(photo), "--out", str(tmp_path)]) == 2


@needs_keras_hub
@pytest.mark.slow
def test_a_detection_run_resumes_after_its_last_epoch(run, tmp_path):
    # a finished run asked for one epoch more trains that one epoch from its checkpoint
    state = json.loads((run / "state.json").read_text())
    assert state["epochs_done"] == 1
    argv = ["train", "--resume", str(run), "--epochs", "2", "--quiet"]
    assert main(argv) == 0
    rows = (run / "history.csv").read_text().strip().splitlines()
    assert len(rows) == 3  # header and two epochs
    assert np.isfinite(json.loads((run / "metrics.json").read_text())["map"])


@needs_keras_hub
def test_anchor_coverage_counts_the_boxes_an_anchor_matches():
    from senet.data.coco import DetectionSet, pad_boxes
    from senet.tasks.detection import anchor_coverage

    # 64x64 images: P3's anchors are centred at 0, 8, 16, ... (keras-hub: multiples of the
    # stride, 8); its square ones are 8 * anchor_size pixels a side at the first scale:
    # (0, 0, 32, 32) with anchor_size 4, (6, 6, 10, 10) with 0.5
    big, small = [0, 0, 32, 32], [6, 6, 10, 10]
    boxes, labels = pad_boxes(
        [np.array([big, small], np.float32), np.array([small], np.float32)],
        [np.array([0, 0]), np.array([0])],
    )
    split = DetectionSet(np.zeros((2, 64, 64, 1), np.float32), boxes, labels, ("face",))
    assert anchor_coverage(split, 64, 4) == pytest.approx(1 / 3)  # the small ones match none
    assert anchor_coverage(split.subset([1]), 64, 4) == 0.0
    assert anchor_coverage(split.subset([1]), 64, 0.5) == 1.0
    nothing = pad_boxes([np.zeros((0, 4), np.float32)], [np.zeros(0, int)])
    empty = DetectionSet(np.zeros((1, 64, 64, 1), np.float32), *nothing, ("face",))
    assert anchor_coverage(empty, 64) == 1.0  # no boxes


@needs_keras_hub
def test_too_few_boxes_matching_an_anchor_is_a_warning():
    config = TrainConfig(
        task="detection", model="retinanet", data="synthetic", image_size=64, synthetic_size=20
    )
    from senet.tasks import get_task

    with pytest.warns(UserWarning, match=r'match an anchor.*"anchor_size": 2'):
        get_task("detection").load_data(config)
