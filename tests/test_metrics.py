"""senet.metrics: evaluate() and `senet evaluate` on a tiny saved model, against NumPy."""

import json

import keras
import numpy as np
import pytest

from senet.cli import main
from senet.data import load_dataset
from senet.evaluation import evaluate
from senet.metrics import classification_metrics

CLASSES = ("calm", "glad", "sad")
SIDE = 6


def _softmax(logits):
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


@pytest.fixture
def saved(tmp_path, rng):
    """A linear softmax classifier with random weights and a 60-image .npz it can read."""
    model = keras.Sequential(
        [
            keras.Input((SIDE, SIDE, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(len(CLASSES), activation="softmax"),
        ]
    )
    kernel = rng.normal(0, 3, (SIDE * SIDE, len(CLASSES))).astype(np.float32)
    bias = rng.normal(0, 0.5, len(CLASSES)).astype(np.float32)
    model.set_weights([kernel, bias])
    model_path = tmp_path / "model" / "model.keras"
    model_path.parent.mkdir()
    model.save(model_path)
    x = rng.integers(0, 256, (60, SIDE, SIDE)).astype(np.uint8)
    y = rng.integers(0, len(CLASSES), 60)
    data = tmp_path / "data.npz"
    np.savez(data, x=x, y=y, class_names=np.array(CLASSES))
    return model_path, data, (kernel, bias)


def _expected(images, weights):
    """Accuracy, loss and confusion matrix of the linear classifier, in NumPy."""
    kernel, bias = weights
    probabilities = _softmax(images.x.reshape(len(images), -1).astype(np.float64) @ kernel + bias)
    predicted = probabilities.argmax(axis=1)
    confusion = np.zeros((len(CLASSES), len(CLASSES)), int)
    np.add.at(confusion, (images.y, predicted), 1)
    picked = np.clip(probabilities[np.arange(len(images)), images.y], 1e-7, 1)
    return float(np.mean(predicted == images.y)), float(-np.log(picked).mean()), confusion


def _all_images(data):
    sets = load_dataset(data, image_size=SIDE, channels=1)
    x = np.concatenate([sets[split].x for split in ("train", "val", "test")])
    y = np.concatenate([sets[split].y for split in ("train", "val", "test")])
    return type(sets["train"])(x, y, sets["train"].class_names)


def test_evaluate_agrees_with_numpy_on_every_image(saved, tmp_path):
    model_path, data, weights = saved
    metrics = evaluate(model_path, data, split="all", out_dir=tmp_path / "out", batch_size=7)
    images = _all_images(data)
    accuracy, loss, confusion = _expected(images, weights)
    assert metrics["num_examples"] == 60
    assert metrics["confusion_matrix"] == confusion.tolist()
    assert metrics["accuracy"] == pytest.approx(accuracy, abs=1e-12)
    assert metrics["loss"] == pytest.approx(loss, rel=1e-5)
    assert metrics["class_names"] == list(CLASSES)
    for k, name in enumerate(CLASSES):
        predicted_k = confusion[:, k].sum()
        precision = confusion[k, k] / predicted_k if predicted_k else 0.0
        assert metrics["per_class"][name]["precision"] == pytest.approx(precision)
        assert metrics["per_class"][name]["support"] == int(confusion[k].sum())
    assert (metrics["split"], metrics["params"]) == ("all", SIDE * SIDE * 3 + 3)
    saved_metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved_metrics["confusion_matrix"] == confusion.tolist()
    assert (tmp_path / "out" / "confusion.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_uses_the_split_of_the_runs_config(saved):
    model_path, data, weights = saved
    # a run's config beside the model: its fractions and split seed choose the test images
    split = {"val_fraction": 0.2, "test_fraction": 0.5, "split_seed": 3, "synthetic_size": 70}
    (model_path.parent / "config.json").write_text(json.dumps(split))
    metrics = evaluate(model_path, data)
    test = load_dataset(
        data, image_size=SIDE, channels=1, val_fraction=0.2, test_fraction=0.5, seed=3
    )["test"]
    accuracy, _, confusion = _expected(test, weights)
    assert metrics["num_examples"] == len(test) > 20  # about half the 60 images
    assert metrics["confusion_matrix"] == confusion.tolist()
    assert metrics["accuracy"] == pytest.approx(accuracy, abs=1e-12)
    # an invalid config is ignored: the default split (10% test)
    (model_path.parent / "config.json").write_text(json.dumps({**split, "test_fraction": 2}))
    assert evaluate(model_path, data)["num_examples"] == len(
        load_dataset(data, image_size=SIDE, channels=1)["test"]
    )


def test_evaluate_draws_the_synthetic_faces_of_the_runs_difficulty(saved, monkeypatch):
    """A run trained on the hard synthetic faces is evaluated on hard faces, not easy ones."""
    import senet.evaluation

    model_path, _, _ = saved
    (model_path.parent / "config.json").write_text(
        json.dumps({"synthetic_size": 70, "synthetic_difficulty": "hard", "split_seed": 2})
    )
    asked = {}

    class Stop(Exception):
        pass

    def recording(data, **options):
        asked.update(options)
        raise Stop

    monkeypatch.setattr(senet.evaluation, "load_dataset", recording)
    with pytest.raises(Stop):
        evaluate(model_path, "synthetic")
    assert asked["synthetic_difficulty"] == "hard"
    assert (asked["synthetic_size"], asked["seed"]) == (70, 2)


def test_cli_evaluate_prints_the_same_metrics(saved, capsys):
    model_path, data, weights = saved
    status = main(["evaluate", str(model_path), "--data", str(data), "--split", "all", "--json"])
    assert status == 0
    printed = json.loads(capsys.readouterr().out)
    accuracy, loss, confusion = _expected(_all_images(data), weights)
    assert printed["confusion_matrix"] == confusion.tolist()
    assert printed["accuracy"] == pytest.approx(accuracy, abs=1e-12)
    assert printed["loss"] == pytest.approx(loss, rel=1e-5)


def test_classification_metrics_of_a_perfect_classifier():
    labels = np.array([2, 0, 1, 1])
    metrics = classification_metrics(labels, np.eye(3)[labels], CLASSES)
    assert metrics["accuracy"] == 1.0 and metrics["macro_f1"] == 1.0
    assert metrics["confusion_matrix"] == [[1, 0, 0], [0, 2, 0], [0, 0, 1]]
    assert metrics["loss"] == pytest.approx(0.0, abs=1e-6)
