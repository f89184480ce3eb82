"""senet.detect: a detector's boxes on photos and video frames, in the file's pixels."""

import cv2
import numpy as np
import pytest

from senet.cli import main
from senet.detect import Detection, annotate_detections, detect_image, iter_detections


class FakeDetector:
    """keras-hub's detector interface with fixed decoded outputs (letterboxed pixels)."""

    num_classes = 2

    def __init__(self, size, channels, boxes, scores, labels):
        import keras

        self.inputs = [keras.KerasTensor((None, size, size, channels))]
        self.boxes, self.scores, self.labels = boxes, scores, labels
        self.seen = []

    def __call__(self, x, training=False):
        self.seen.append(np.asarray(x))
        return {}

    def decode_predictions(self, raw, x):
        count = len(self.scores)
        pad = 100 - count
        return {
            "boxes": np.pad(np.float32(self.boxes), ((0, pad), (0, 0)))[None],
            "confidence": np.pad(np.float32(self.scores), (0, pad))[None],
            "labels": np.pad(np.int32(self.labels), (0, pad))[None],
            "num_detections": np.array([count]),
        }


def test_boxes_come_back_in_the_files_pixels_above_the_threshold():
    # a 200 x 100 (w x h) photo letterboxed into 50 x 50: scale 0.25, padded below
    image = np.zeros((100, 200, 3), np.uint8)
    image[:, :100] = 255
    model = FakeDetector(
        50,
        1,
        [[10, 5, 20, 15], [0, 0, 60, 60], [1, 30, 2, 40], [1, 1, 2, 2]],
        [0.9, 0.6, 0.55, 0.2],
        [1, 0, 0, 1],
    )
    found = detect_image(model, image, ["cat", "dog"], min_score=0.5)
    assert found == [
        Detection((40.0, 20.0, 80.0, 60.0), "dog", pytest.approx(0.9)),
        # outside the image after scaling back: clipped to it
        Detection((0.0, 0.0, 200.0, 100.0), "cat", pytest.approx(0.6)),
        # (1, 30, 2, 40) is wholly in the padding, below the photo: dropped
    ]
    # the model saw the letterboxed grey image: left half white, bottom half padding
    (x,) = model.seen
    assert x.shape == (1, 50, 50, 1)
    assert x[0, 10, 10, 0] == pytest.approx(1.0) and x[0, 10, 40, 0] == 0.0
    assert np.all(x[0, 25:] == 0)
    assert detect_image(model, image, ["cat", "dog"], min_score=0.1)[-1].score == pytest.approx(0.2)


def test_annotated_copies_show_the_boxes():
    image = np.zeros((40, 60, 3), np.uint8)
    drawn = annotate_detections(image, [Detection((10.0, 5.0, 30.0, 25.0), "dog", 0.9)])
    assert drawn.shape == image.shape and drawn[15, 10].any() and drawn[15, 30].any()
    assert not drawn[15, 20].any()  # inside the box: untouched
    assert not image.any()  # the input is not drawn on


def test_a_classifier_is_not_a_detector(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten()])
    model.save(tmp_path / "m.keras")
    photo = tmp_path / "p.png"
    cv2.imwrite(str(photo), np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="not a Keras detector"):
        list(iter_detections(tmp_path / "m.keras", [photo]))
    with pytest.raises(ValueError, match="min_score"):
        list(iter_detections(tmp_path / "m.keras", [photo], min_score=2))


def test_min_score_is_refused_for_classifiers(tmp_path, capsys):
    import keras

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten()])
    model.save(tmp_path / "m.keras")
    photo = tmp_path / "p.png"
    cv2.imwrite(str(photo), np.zeros((8, 8), np.uint8))
    assert main(["predict", str(tmp_path / "m.keras"), str(photo), "--min-score", "0.3"]) == 2
    assert "--min-score is for detectors" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["predict", str(tmp_path / "m.keras"), str(photo), "--min-score", "3"])
    assert exit_.value.code == 2 and "a number in [0, 1]" in capsys.readouterr().err


def test_an_exported_detector_is_refused_by_evaluate_in_one_line(tmp_path):
    from senet.evaluation import _evaluate_boxes

    class Exported:  # what load_exported gives: callable, with shapes, no decoder
        input_shape = (None, 64, 64, 1)

    with pytest.raises(ValueError, match=r"det.tflite is not a Keras detector"):
        _evaluate_boxes(
            Exported(),
            tmp_path / "det.tflite",
            "synthetic",
            "test",
            None,
            batch_size=2,
            skip_bad=False,
        )


def test_an_image_with_nothing_over_the_bar_says_how_close_it_came(tmp_path):
    model = FakeDetector(50, 1, [[10, 5, 20, 15], [1, 1, 9, 9]], [0.45, 0.3], [1, 0])
    model.layers = []  # what senet's record lookup reads of a Keras model
    photo, path = tmp_path / "p.png", tmp_path / "d.keras"
    cv2.imwrite(str(photo), np.zeros((100, 200, 3), np.uint8))
    path.write_bytes(b"")  # loaded already: only its name is read (class names, record)
    (frame,) = iter_detections(path, [photo], model=model)
    assert frame.detections == [] and frame.best_score == pytest.approx(0.45)
    assert frame.to_dict()["best_score"] == pytest.approx(0.45)
    (low,) = iter_detections(path, [photo], model=model, min_score=0.4)
    assert [d.label for d in low.detections] == ["class_1"]
    assert low.best_score == low.detections[0].score
