"""senet.train options: TensorBoard logs, mixed precision, class weights, seeds, JAX data
parallelism and the `senet train` flags that set them.

Every run is as tiny as tests/test_train.py's (210 synthetic 24x24 faces, batch 32).
"""

import json
import math
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from senet.cli import main
from senet.data import ImageSet, load_dataset
from senet.layers import load_model
from senet.train import TrainConfig, train
from workers import save_small_model

# two narrow blocks of the emotion CNN instead of four: what these tests check is the
# training machinery, and each run traces in about half the time
TINY = {
    "synthetic_size": 210,
    "image_size": 24,
    "epochs": 1,
    "batch_size": 32,
    "seed": 1,
    "model_options": {"widths": [8, 16]},
}


def _balanced_weights(labels, num_classes):
    """n / (k * count_c) for each label, k the classes that occur (scikit-learn's "balanced")."""
    counts = np.bincount(labels, minlength=num_classes)
    per_class = np.zeros(num_classes)
    present = counts > 0
    per_class[present] = len(labels) / (present.sum() * counts[present])
    return per_class[labels]


def _events(path):
    """``{tag: {step: value}}`` of the scalar summaries in one TensorBoard event file."""
    import tensorflow as tf
    from tensorflow.core.util import event_pb2

    scalars = {}
    for record in tf.data.TFRecordDataset(str(path)):
        event = event_pb2.Event.FromString(record.numpy())
        for value in event.summary.value:
            scalars.setdefault(value.tag, {})[event.step] = float(tf.make_ndarray(value.tensor))
    return scalars


# --------------------------------------------------------------------------- tensorboard


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    """A 2-epoch run with seed 7 and TensorBoard logs (the seed test repeats it without)."""
    keras.utils.set_random_seed(0)
    config = {**TINY, "epochs": 2, "seed": 7, "tensorboard": True}
    return train(config, tmp_path_factory.mktemp("runs") / "logged", verbose=0)


@pytest.mark.slow  # trains a tiny run
def test_tensorboard_logs_hold_the_history_per_epoch(logged_run):
    logs = logged_run.out_dir / "logs"
    for split, prefix in (("train", ""), ("validation", "val_")):
        files = sorted((logs / split).glob("events.out.tfevents.*"))
        assert len(files) == 1 and files[0].stat().st_size > 0, split
        scalars = _events(files[0])
        # the same numbers as history.csv, one step per epoch (step 0 = epoch 1)
        for metric in ("loss", "accuracy"):
            expected = {row["epoch"] - 1: row[prefix + metric] for row in logged_run.history}
            assert scalars[f"epoch_{metric}"] == pytest.approx(expected, rel=1e-6), (split, metric)


# --------------------------------------------------------------------------- mixed precision


@pytest.mark.slow  # a tiny training in bfloat16
def test_mixed_precision_trains_in_bfloat16_and_restores_the_policy(tmp_path):
    result = train({**TINY, "mixed_precision": True}, tmp_path / "run", verbose=0)
    assert np.isfinite(result.history[0]["loss"])
    # no GPU here: mixed_bfloat16 (float32 variables, bfloat16 compute) in the saved model
    model = load_model(tmp_path / "run" / "model.keras")
    convolutions = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convolutions
    for layer in convolutions:
        assert layer.dtype_policy.name == "mixed_bfloat16", layer.name
        assert (layer.compute_dtype, layer.variable_dtype) == ("bfloat16", "float32")
    assert {keras.backend.standardize_dtype(w.dtype) for w in model.weights} == {"float32"}
    assert all(np.isfinite(w).all() for w in model.get_weights())
    # the global policy is the one before the run: layers made afterwards compute in float32
    assert keras.config.dtype_policy().name == "float32"
    assert keras.layers.Dense(2).compute_dtype == "float32"


# --------------------------------------------------------------------------- class weights


def test_sample_weights_are_n_over_k_times_class_count():
    labels = np.array([0, 0, 0, 0, 0, 0, 1, 1, 3, 3, 3, 0])  # class 2 absent
    images = ImageSet(np.zeros((len(labels), 4, 4, 1), np.float32), labels, ("a", "b", "c", "d"))
    from senet.tasks.classification import ClassificationTask

    task = ClassificationTask()
    weights = task.sample_weights(images, TrainConfig(class_weights=True))
    assert weights.dtype == np.float32 and weights.shape == labels.shape
    np.testing.assert_allclose(weights, _balanced_weights(labels, 4), rtol=1e-6)
    # by hand: n = 12, k = 3 classes occur; class 0 has 7 -> 12 / 21, class 1 has 2 -> 2
    assert weights[0] == pytest.approx(12 / 21) and weights[6] == pytest.approx(2.0)
    assert weights.mean() == pytest.approx(1.0)
    assert task.sample_weights(images, TrainConfig(class_weights=False)) is None


@pytest.mark.slow  # a tiny training on an npz
def test_class_weighted_run_on_an_imbalanced_npz(tmp_path, monkeypatch, rng):
    counts = [120, 40, 20]
    labels = rng.permutation(np.repeat(np.arange(3), counts))
    images = rng.random((len(labels), 24, 24)).astype(np.float32)
    data = tmp_path / "imbalanced.npz"
    np.savez(data, x=images, y=labels)

    seen = []
    from senet import fitting

    original = fitting.epoch_batches

    def recording(images, **kwargs):
        seen.append((images.y.copy(), kwargs["sample_weights"]))
        return original(images, **kwargs)

    monkeypatch.setattr(fitting, "epoch_batches", recording)
    config = {**TINY, "data": str(data), "class_weights": True}
    result = train(config, tmp_path / "run", verbose=0)

    ((train_labels, weights),) = seen
    assert np.bincount(train_labels).tolist() == [96, 32, 16]  # 80% of each class
    np.testing.assert_allclose(weights, _balanced_weights(train_labels, 3), rtol=1e-6)
    assert np.isfinite(result.history[0]["loss"])
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["class_weights"] is True and saved["data"] == str(data)
    assert result.metrics["class_names"] == ["0", "1", "2"]


# --------------------------------------------------------------------------- seeds


def _history_without_times(result):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in result.history]


@pytest.mark.slow  # two more tiny trainings
def test_a_seed_repeats_a_run_and_another_seed_does_not(logged_run, tmp_path):
    # the logged run again in a fresh directory, without logs (they must not change training)
    config = {**logged_run.config.to_dict(), "tensorboard": False}
    keras.utils.set_random_seed(123)  # global state between runs must not matter
    again = train(config, tmp_path / "again", verbose=0)
    other = train({**config, "seed": 8}, tmp_path / "other", verbose=0)

    first = load_model(logged_run.out_dir / "model.keras").get_weights()
    for a, b in zip(
        first, load_model(tmp_path / "again" / "model.keras").get_weights(), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    assert _history_without_times(again) == _history_without_times(logged_run)
    assert again.metrics["confusion_matrix"] == logged_run.metrics["confusion_matrix"]
    other_weights = load_model(tmp_path / "other" / "model.keras").get_weights()
    assert any(not np.array_equal(a, c) for a, c in zip(first, other_weights, strict=True))
    assert _history_without_times(other) != _history_without_times(logged_run)


# --------------------------------------------------------------------------- CLI


@pytest.mark.slow  # a tiny training through the CLI
def test_cli_train_flags_reach_the_run(tmp_path, capsys):
    run = tmp_path / "cli"
    argv = ["train", "--data", "synthetic", "--synthetic-size", "210", "--image-size", "24"]
    argv += ["--epochs", "1", "--out", str(run), "--quiet", "--tensorboard", "--class-weights"]
    assert main(argv) == 0
    assert f"run directory: {run}" in capsys.readouterr().out
    config = json.loads((run / "config.json").read_text())
    expected = TrainConfig(
        synthetic_size=210, image_size=24, epochs=1, tensorboard=True, class_weights=True
    ).to_dict()
    assert config == expected
    assert (run / "model.keras").is_file()
    assert next((run / "logs" / "train").glob("events.out.tfevents.*")).stat().st_size > 0


# --------------------------------------------------------------------------- JAX


_JAX_DATA_PARALLEL = """
import json, sys
import jax, keras
from senet.train import train

class Probe(keras.callbacks.Callback):
    # what fit runs under: the distribution in scope and the devices holding the weights
    def on_train_batch_end(self, batch, logs=None):
        if batch == 0:
            kernel = self.model.trainable_weights[0].value
            self.seen = {{
                "distribution": type(keras.distribution.distribution()).__name__,
                "weight_devices": len(kernel.sharding.device_set),
            }}

probe = Probe()
result = train({config!r}, sys.argv[1], verbose=0, callbacks=[probe])
print(json.dumps({{"backend": keras.backend.backend(), "devices": len(jax.devices()),
                  "replicas": result.replicas, "epochs": result.epochs_run,
                  "loss": [row["loss"] for row in result.history], **probe.seen}}))
"""


@pytest.mark.slow
# a model saved by JAX asks for jit_compile, which TF op determinism (train's) turns down
@pytest.mark.filterwarnings("ignore:Model doesn't support `jit_compile=True`")
def test_jax_data_parallel_on_two_host_devices(tmp_path):
    pytest.importorskip("jax")
    script = tmp_path / "data_parallel.py"
    # no augmentation: a shorter run, and what is tested here is the sharding
    # and the small model of the multi-worker tests
    model = save_small_model(tmp_path / "small.keras", image_size=TINY["image_size"])
    config = {**TINY, "distribute": "mirrored", "augment": False, "init_from": model}
    script.write_text(textwrap.dedent(_JAX_DATA_PARALLEL.format(config=config)))
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        # only this flag: with the tests' unoptimised XLA (conftest) the sharded run took
        # 106 s instead of 59
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    completed = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    assert (summary["backend"], summary["devices"]) == ("jax", 2)
    assert summary["distribution"] == "DataParallel"
    assert summary["weight_devices"] == 2  # weights replicated on both devices
    assert summary["replicas"] == 2 and summary["epochs"] == 1
    assert np.isfinite(summary["loss"]).all()
    # the final metrics cover every test image, an odd count (21) included
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["num_examples"] == 21
    assert load_model(tmp_path / "run" / "model.keras").output_shape == (None, 7)


# --------------------------------------------------------------------- learning-rate schedule


class _StopAfter(keras.callbacks.Callback):
    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            raise KeyboardInterrupt


@pytest.mark.slow  # three tiny trainings
def test_cosine_schedule_follows_the_formula_and_survives_a_resume(tmp_path):
    config = {**TINY, "epochs": 3, "learning_rate": 2e-3, "lr_schedule": "cosine"}
    whole = train(config, tmp_path / "whole", verbose=0)
    train_size = len(
        load_dataset("synthetic", image_size=24, channels=1, synthetic_size=210, seed=0)["train"]
    )
    steps = math.ceil(train_size / config["batch_size"])
    total = config["epochs"] * steps
    # the rate after epoch e: lr0 * (1 + cos(pi * e*steps / total)) / 2, reaching 0 at the end
    expected = [
        config["learning_rate"] * 0.5 * (1 + math.cos(math.pi * (e * steps) / total))
        for e in range(1, config["epochs"] + 1)
    ]
    logged = [row["learning_rate"] for row in whole.history]
    assert logged == pytest.approx(expected, rel=1e-4, abs=1e-9)
    assert logged[-1] == pytest.approx(0.0, abs=1e-9)

    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "cut", verbose=0, callbacks=[_StopAfter(1)])
    resumed = train(None, tmp_path / "cut", resume=True, verbose=0)
    assert [row["learning_rate"] for row in resumed.history] == pytest.approx(logged, rel=1e-5)
    for a, b in zip(
        load_model(tmp_path / "cut" / "model.keras").get_weights(),
        load_model(tmp_path / "whole" / "model.keras").get_weights(),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="lr_schedule.*'linear'"):
        TrainConfig(lr_schedule="linear")
