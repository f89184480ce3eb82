"""senet.train: run artefacts, metrics against NumPy, exact resume, NaN stop, mirrored training.

Every run is tiny (210 synthetic 24x24 faces, 3 epochs of 6 batches), and the uninterrupted
reference run is shared by the module.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from senet.data import load_dataset
from senet.layers import load_model
from senet.report import plot_confusion, plot_curves
from senet.train import (
    MODEL_NAMES,
    TrainConfig,
    TrainingDiverged,
    classification_metrics,
    evaluate,
    train,
)
from workers import save_small_model

# two narrow blocks of the emotion CNN instead of four: what these tests check is the
# training machinery, and each run traces in about half the time
TINY = {
    "synthetic_size": 210,
    "image_size": 24,
    "epochs": 3,
    "batch_size": 32,
    "seed": 1,
    "model_options": {"widths": [8, 16]},
}
ROOT = Path(__file__).resolve().parents[1]


def _weights(path):
    return load_model(path).get_weights()


def _assert_same_weights(path_a, path_b, atol=1e-6):
    # TF CPU with op determinism repeats a run bit for bit; 1e-6 leaves room for other backends
    for a, b in zip(_weights(path_a), _weights(path_b), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=atol)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run with TINY's config."""
    keras.utils.set_random_seed(0)
    return train(TINY, tmp_path_factory.mktemp("runs") / "reference", verbose=0)


# --------------------------------------------------------------------------- artefacts


@pytest.mark.slow  # trains a tiny run (or reads the module's)
def test_run_writes_every_artefact(reference):
    run = reference.out_dir
    for name in ("config.json", "state.json", "model.keras", "history.csv", "metrics.json"):
        assert (run / name).is_file(), name
    assert TrainConfig.from_dict(json.loads((run / "config.json").read_text())) == TrainConfig(
        **TINY
    )
    with open(run / "history.csv") as file:
        rows = list(csv.DictReader(file))
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(rows[0])
    assert all(np.isfinite(float(row["loss"])) for row in rows)
    # the last 2 checkpoints are kept, and no temporary file is left
    assert sorted(os.listdir(run / "checkpoints")) == ["epoch-0002.keras", "epoch-0003.keras"]
    state = json.loads((run / "state.json").read_text())
    assert state["epochs_done"] == 3 and len(state["history"]) == 3
    assert not list(run.rglob(".tmp-*"))
    for figure in ("curves.png", "confusion.png"):
        assert (run / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert reference.epochs_run == 3 and reference.resumed_from == 0
    # the final model is the last checkpoint's
    _assert_same_weights(run / "model.keras", run / "checkpoints" / "epoch-0003.keras", atol=0)


@pytest.mark.slow  # trains a tiny run (or reads the module's)
def test_metrics_agree_with_numpy_on_the_saved_model(reference):
    metrics = json.loads((reference.out_dir / "metrics.json").read_text())
    model = load_model(reference.out_dir / "model.keras")
    test = load_dataset("synthetic", image_size=24, channels=1, synthetic_size=210, seed=0)["test"]
    probabilities = model.predict(test.x, verbose=0)
    predicted = probabilities.argmax(axis=1)
    confusion = np.zeros((7, 7), int)
    for true, guess in zip(test.y, predicted, strict=True):
        confusion[true, guess] += 1
    assert metrics["confusion_matrix"] == confusion.tolist()
    assert metrics["num_examples"] == len(test) == confusion.sum()
    assert metrics["accuracy"] == pytest.approx(np.mean(predicted == test.y), abs=1e-12)
    assert metrics["test_accuracy"] == metrics["accuracy"]
    loss = -np.mean(np.log(np.clip(probabilities[np.arange(len(test)), test.y], 1e-7, 1)))
    assert metrics["loss"] == pytest.approx(loss, rel=1e-4)
    assert metrics["class_names"] == list(test.class_names)
    for k, name in enumerate(test.class_names):
        per_class = metrics["per_class"][name]
        assert per_class["support"] == int(np.sum(test.y == k))
        hits = np.sum((predicted == k) & (test.y == k))
        if np.sum(predicted == k):
            assert per_class["precision"] == pytest.approx(hits / np.sum(predicted == k))
    assert metrics["params"] == model.count_params()
    assert metrics["epochs_run"] == 3


def test_classification_metrics_by_hand():
    labels = np.array([0, 0, 1, 2])
    probabilities = np.array([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.2, 0.7, 0.1], [0.1, 0.5, 0.4]])
    metrics = classification_metrics(labels, probabilities, ["a", "b", "c"])
    assert metrics["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]
    assert metrics["accuracy"] == 0.5
    assert metrics["loss"] == pytest.approx(-np.log([0.8, 0.3, 0.7, 0.4]).mean())
    # b: predicted 3 times, right once; c: never predicted -> precision 0 (not NaN)
    assert metrics["per_class"]["b"] == {"precision": 1 / 3, "recall": 1.0, "f1": 0.5, "support": 1}
    assert metrics["per_class"]["a"]["f1"] == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert metrics["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 0.5 + 0) / 3)
    with pytest.raises(ValueError, match="probabilities"):
        classification_metrics(labels, probabilities[:, :2], ["a", "b", "c"])


@pytest.mark.slow  # trains a tiny run (or reads the module's)
def test_evaluate_reproduces_the_runs_test_metrics(reference, tmp_path):
    # config.json beside model.keras gives evaluate the run's split: the same test images
    metrics = evaluate(reference.out_dir / "model.keras", "synthetic", out_dir=tmp_path)
    assert metrics["confusion_matrix"] == reference.metrics["confusion_matrix"]
    assert metrics["accuracy"] == reference.metrics["accuracy"]
    assert json.loads((tmp_path / "metrics.json").read_text())["split"] == "test"
    assert (tmp_path / "confusion.png").is_file()
    with pytest.raises(ValueError, match="split"):
        evaluate(reference.out_dir / "model.keras", "synthetic", split="dev")
    with pytest.raises(FileNotFoundError):
        evaluate(tmp_path / "missing.keras", "synthetic")


# --------------------------------------------------------------------------- resume


class _Interrupt(keras.callbacks.Callback):
    """Raises at the end of epoch ``after`` (1-based), as a crash would."""

    def __init__(self, after):
        super().__init__()
        self.after = after

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.after:
            raise KeyboardInterrupt(f"interrupted after epoch {self.after}")


@pytest.mark.slow  # two tiny trainings
def test_resume_after_a_crash_and_a_corrupt_checkpoint(reference, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(TINY, run, verbose=0, callbacks=[_Interrupt(after=2)])
    assert sorted(os.listdir(run / "checkpoints")) == ["epoch-0001.keras", "epoch-0002.keras"]
    assert not (run / "model.keras").exists()
    # the newest checkpoint cut in half, and a temporary file a killed write left behind
    newest = run / "checkpoints" / "epoch-0002.keras"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    (run / "checkpoints" / ".tmp-999-epoch-0003.keras").write_bytes(b"PK\x03\x04 half")

    with pytest.warns(UserWarning, match="unreadable checkpoint"):
        resumed = train(None, run, resume=True, verbose=0)
    assert resumed.resumed_from == 1  # fell back to the older checkpoint
    assert resumed.epochs_run == 3
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3]
    assert not list(run.rglob(".tmp-*"))
    _assert_same_weights(run / "model.keras", reference.out_dir / "model.keras")
    assert [row["loss"] for row in resumed.history] == pytest.approx(
        [row["loss"] for row in reference.history], abs=1e-6
    )


_KILLABLE = """
import sys, time, keras
from senet.train import train

class Slow(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        time.sleep(600)  # after the epoch's checkpoint: the parent kills us here

train({config!r}, sys.argv[1], verbose=0, callbacks=[Slow()])
"""


@pytest.mark.slow  # a TensorFlow process trains, is killed, then resumes
def test_resume_after_sigkill(reference, tmp_path):
    run = tmp_path / "killed"
    script = tmp_path / "killable.py"
    script.write_text(_KILLABLE.format(config=TINY))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(
        [sys.executable, str(script), str(run)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not (run / "state.json").exists():
            if process.poll() is not None:
                pytest.fail(f"the training subprocess died: {process.stderr.read()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("no checkpoint after 240 s")
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert json.loads((run / "state.json").read_text())["epochs_done"] == 1

    resumed = train(None, run, resume=True, verbose=0)
    assert (resumed.resumed_from, resumed.epochs_run) == (1, 3)
    _assert_same_weights(run / "model.keras", reference.out_dir / "model.keras")


@pytest.mark.slow  # trains a tiny run (or reads the module's)
def test_resume_of_a_finished_run_only_rewrites_its_results(reference, tmp_path):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(reference.out_dir, run)
    (run / "metrics.json").unlink()
    again = train(None, run, resume=True, verbose=0)
    assert (again.resumed_from, again.epochs_run) == (3, 3)
    assert (
        json.loads((run / "metrics.json").read_text())["accuracy"] == reference.metrics["accuracy"]
    )


# --------------------------------------------------------------------------- failures


class _PoisonAfterFirstEpoch(keras.callbacks.Callback):
    """Sets the classifier's kernel to NaN after epoch 1 (the loss turns NaN in epoch 2)."""

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            kernel = self.model.get_layer("predictions").kernel
            kernel.assign(np.full(kernel.shape, np.nan, "float32"))


@pytest.mark.slow  # trains a tiny run (or reads the module's)
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    run = tmp_path / "nan"
    with pytest.raises(TrainingDiverged, match=r"NaN/inf at epoch 2") as caught:
        train({**TINY, "epochs": 4}, run, verbose=0, callbacks=[_PoisonAfterFirstEpoch()])
    assert caught.value.epoch == 2
    assert caught.value.checkpoint == run / "checkpoints" / "epoch-0001.keras"
    assert str(caught.value.checkpoint) in str(caught.value)
    assert os.listdir(run / "checkpoints") == ["epoch-0001.keras"]
    state = json.loads((run / "state.json").read_text())
    assert state["epochs_done"] == 1 and len(state["history"]) == 1
    assert all(np.isfinite(w).all() for w in _weights(caught.value.checkpoint))
    assert not (run / "model.keras").exists()


def test_bad_configs_name_the_field(tmp_path):
    with pytest.raises(ValueError, match="`epochs`.*got 0"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="`model`.*'vgg'"):
        TrainConfig(model="vgg")
    with pytest.raises(ValueError, match="`attention`"):
        TrainConfig(attention="transformer")
    with pytest.raises(ValueError, match="learning_rate"):
        TrainConfig(learning_rate=-1.0)
    with pytest.raises(ValueError, match=r"Unknown TrainConfig field\(s\) \['lr'\]"):
        TrainConfig.from_dict({"lr": 0.1})
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        train(None, tmp_path / "nothing", resume=True)
    assert "resnet20" in MODEL_NAMES and "resnet50" in MODEL_NAMES


@pytest.mark.slow  # trains a tiny run (or reads the module's)
def test_a_new_run_never_overwrites_an_old_one(reference):
    before = (reference.out_dir / "metrics.json").read_bytes()
    with pytest.raises(ValueError, match="already holds a run"):
        train(TINY, reference.out_dir, verbose=0)
    assert (reference.out_dir / "metrics.json").read_bytes() == before


# --------------------------------------------------------------------------- distribution


_MIRRORED = """
import json, sys
import tensorflow as tf

# two logical CPUs, before anything initialises TensorFlow's devices
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)
from senet.train import train

result = train({config!r}, sys.argv[1], verbose=0)
print(json.dumps({{"replicas": result.replicas, "epochs": result.epochs_run,
                  "loss": [row["loss"] for row in result.history]}}))
"""


@pytest.mark.slow  # a TensorFlow process with two logical CPUs trains
def test_mirrored_training_on_two_logical_cpus(tmp_path):
    script = tmp_path / "mirrored.py"
    # 203 images: 161 to train on, one more than 5 batches of 32, and odd val/test splits.
    # Each epoch drops that one image (an empty replica shard breaks a step) and so has 5
    # steps, not 6; a wrong step count would run into the next epoch's batches.
    # The small model of the multi-worker tests: this is about the distribution.
    model = save_small_model(tmp_path / "small.keras", image_size=TINY["image_size"])
    config = {**TINY, "synthetic_size": 203, "epochs": 2, "distribute": "mirrored"}
    config["init_from"] = model
    script.write_text(textwrap.dedent(_MIRRORED.format(config=config)))
    completed = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    assert summary["replicas"] == 2
    assert summary["epochs"] == 2 and len(summary["loss"]) == 2
    assert "ran out of data" not in completed.stderr  # Keras' words for a wrong step count
    assert np.isfinite(summary["loss"]).all()
    model = load_model(tmp_path / "run" / "model.keras")
    assert model.output_shape == (None, 7)


# --------------------------------------------------------------------------- figures


def test_curve_figure_has_titled_labelled_panels():
    history = [
        {"epoch": 1, "loss": 2.0, "accuracy": 0.2, "val_loss": 2.1, "val_accuracy": 0.1},
        {"epoch": 2, "loss": 1.5, "accuracy": 0.4, "val_loss": 1.8, "val_accuracy": 0.3},
    ]
    figure = plot_curves(history, title="run")
    loss_axes, accuracy_axes = figure.axes
    assert (loss_axes.get_title(), accuracy_axes.get_title()) == ("Loss", "Accuracy")
    assert loss_axes.get_xlabel() == "epoch" and accuracy_axes.get_ylabel() == "accuracy"
    train_line, val_line = loss_axes.get_lines()
    np.testing.assert_array_equal(train_line.get_ydata(), [2.0, 1.5])
    np.testing.assert_array_equal(val_line.get_ydata(), [2.1, 1.8])
    assert [t.get_text() for t in loss_axes.get_legend().get_texts()] == ["train", "validation"]


def test_confusion_figure_has_colour_bar_and_counts(tmp_path):
    matrix = [[5, 1, 0], [2, 3, 0], [0, 0, 4]]
    figure = plot_confusion(matrix, ["a", "b", "c"], tmp_path / "c.png")
    axes, colour_bar = figure.axes
    assert colour_bar.get_ylabel() == "fraction of true class"
    assert (axes.get_xlabel(), axes.get_ylabel()) == ("predicted class", "true class")
    assert [t.get_text() for t in axes.texts] == [str(v) for row in matrix for v in row]
    # row-normalised colours: row a is 5/6, 1/6, 0
    np.testing.assert_allclose(axes.images[0].get_array()[0], [5 / 6, 1 / 6, 0])
    assert (tmp_path / "c.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="class_names"):
        plot_confusion(matrix, ["a", "b"])


class _TraceCount(keras.callbacks.Callback):
    """Counts the Python calls of the model's train_step: in a tf.function, one per trace."""

    traces = 0

    def set_model(self, model):  # before fit makes its train function
        super().set_model(model)
        step = model.train_step

        def counted(data):
            self.traces += 1
            return step(data)

        model.train_step = counted


@pytest.mark.slow  # trains a tiny run (or reads the module's)
@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.function tracing")
def test_the_train_step_is_traced_once(tmp_path):
    # a tf.function that creates variables is traced twice; train creates them beforehand
    probe = _TraceCount()
    train({**TINY, "epochs": 1}, tmp_path / "run", verbose=0, callbacks=[probe])
    assert probe.traces == 1


def test_training_and_validation_data_do_not_autotune():
    # tf.data's autotuning thread held up the end of `fit` by 16-32 s in the demo's workers
    import tensorflow as tf

    from senet.data import make_dataset
    from senet.data.pipeline import epoch_batches, eval_batches
    from senet.tasks.classification import ClassificationTask

    sets = load_dataset("synthetic", image_size=24, synthetic_size=70, seed=0)
    datasets = [
        epoch_batches(
            sets["train"],
            batch_size=16,
            seed=0,
            first_epoch=0,
            epochs=2,
            augment=ClassificationTask().augment,
            sample_weights=None,
        ),
        eval_batches(sets["val"], 16),
        make_dataset(sets["train"], batch_size=16, augment=True),
    ]
    for dataset in datasets:
        assert dataset.options().autotune.enabled is False
        assert isinstance(dataset, tf.data.Dataset)
        assert len(list(dataset.take(1))) == 1  # and it still yields batches
