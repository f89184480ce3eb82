"""The task seam (senet.tasks): a second, tiny task goes through the run machinery and an
ablation.

The toy task regresses one number, an image's mean brightness, from 16x16 images with an
SE layer in its model. Nothing in senet.train, senet.runs or the CLI knows it: it is
registered here and named by `TrainConfig.task`. The run directory, the lock, the history,
the final metrics and figures, and an exact resume all come from the seam; the metrics
are checked against NumPy on the model's own predictions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pytest

from senet.cli import main
from senet.config import TrainConfig
from senet.layers import attention, training_info
from senet.tasks import Task, get_task, register_task, task_names
from senet.train import train


@dataclass
class Numbers:
    """A split of the toy task: images and one target each."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


class Brightness(Task):
    name = "brightness"
    score = "r2"

    def load_data(self, config):
        rng = np.random.default_rng(config.split_seed)
        size = config.image_size
        # a bright square of random size and level on a dark ground: brightness varies
        x = np.zeros((120, size, size, 1), np.float32)
        for image in x:
            side, level = rng.integers(2, size), rng.uniform(0.2, 1.0)
            image[:side, :side] = level
        x += rng.normal(0, 0.02, x.shape).astype(np.float32)
        y = x.mean(axis=(1, 2, 3))[:, None].astype(np.float32)
        return {
            "train": Numbers(x[:80], y[:80]),
            "val": Numbers(x[80:100], y[80:100]),
            "test": Numbers(x[100:], y[100:]),
        }

    def output_names(self, split):
        return ["brightness"]

    def build_model(self, config, output_names):
        inputs = keras.Input((config.image_size, config.image_size, config.channels))
        x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
        layer = attention(config.attention, reduction=config.reduction)
        x = layer(x) if layer is not None else x
        x = keras.layers.GlobalAveragePooling2D()(x)
        return keras.Model(inputs, keras.layers.Dense(len(output_names))(x))

    def compile_options(self, config):
        return {"loss": "mse", "metrics": [keras.metrics.R2Score(name="r2")]}

    def record(self, config, output_names):
        return {"task": self.name, "image_size": config.image_size, "channels": 1}

    def evaluate(self, model, split, *, batch_size):
        predicted = model.predict(split.x, batch_size=batch_size, verbose=0)
        error = predicted - split.y
        total = ((split.y - split.y.mean()) ** 2).sum()
        return {
            "mse": float((error**2).mean()),
            "r2": float(1 - (error**2).sum() / total),
            "num_examples": len(split),
        }

    def report(self, metrics, out_dir, *, title, split, output_names):
        (out_dir / "residuals.json").write_text(json.dumps({"mse": metrics["mse"]}))
        return ["residuals.json"]

    def predictions(self, outputs, output_names):
        return [{"brightness": float(row[0])} for row in np.asarray(outputs)]


@pytest.fixture(scope="module")
def task():
    register_task(Brightness)
    return get_task("brightness")


def _config(**changes):
    values = dict(
        task="brightness",
        attention="se",
        reduction=2,
        image_size=16,
        epochs=3,
        batch_size=16,
        learning_rate=0.01,
    )
    return TrainConfig(**{**values, **changes})


def test_a_registered_task_trains_through_the_run_machinery(task, tmp_path):
    assert "brightness" in task_names() and task_names()[0] == "classification"
    result = train(_config(), tmp_path / "run", verbose=0)
    run = tmp_path / "run"
    for name in ("config.json", "state.json", "history.csv", "model.keras", "metrics.json"):
        assert (run / name).is_file(), name
    assert (run / "curves.png").is_file() and (run / "residuals.json").is_file()
    assert not (run / "confusion.png").exists()  # classification's figure is not drawn
    assert json.loads((run / "config.json").read_text())["task"] == "brightness"
    assert json.loads((run / "state.json").read_text())["class_names"] == ["brightness"]
    # the history logs the task's score, and metrics.json names it by split
    assert [set(row) >= {"loss", "r2", "val_loss", "val_r2"} for row in result.history] == [
        True
    ] * 3
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["test_r2"] == metrics["r2"]
    assert metrics["best_val_r2"] == max(row["val_r2"] for row in result.history)
    # the metrics are the model's: NumPy on its predictions of the test images
    test = task.load_data(result.config)["test"]
    predicted = keras.ops.convert_to_numpy(result.model(test.x))
    assert metrics["mse"] == pytest.approx(float(((predicted - test.y) ** 2).mean()), rel=1e-4)
    # the model carries the task's record, and the task says what a prediction is
    assert training_info(result.model)["task"] == "brightness"
    said = task.predictions(predicted[:2], ["brightness"])
    assert said == [{"brightness": pytest.approx(float(p[0]))} for p in predicted[:2]]


@pytest.mark.filterwarnings("ignore:resuming .* epochs 1 -> 3")
def test_a_toy_task_run_resumes_to_the_uninterrupted_weights(task, tmp_path):
    whole = train(_config(), tmp_path / "whole", verbose=0)
    train(_config(epochs=1), tmp_path / "parts", verbose=0)
    resumed = train({"epochs": 3}, tmp_path / "parts", resume=True, verbose=0)
    assert resumed.resumed_from == 1 and resumed.epochs_run == 3
    for a, b in zip(whole.model.get_weights(), resumed.model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_an_unknown_task_is_a_one_line_error(task, tmp_path, capsys):
    with pytest.raises(ValueError, match="`task` must be one of .*'brightness'"):
        TrainConfig(task="segmentation-of-cats")
    status = main(["train", "--task", "nope", "--out", str(tmp_path / "run"), "--epochs", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "task" in err[0] and "nope" in err[0]
    assert not (tmp_path / "run").exists()


def test_ablate_compares_a_toy_task_by_its_score(task, tmp_path):
    from senet.ablate import run_ablation

    out = tmp_path / "ablation"
    result = run_ablation(
        out,
        attentions=("se",),
        seeds=2,
        task="brightness",
        image_size=16,
        epochs=2,
        batch_size=16,
        learning_rate=0.01,
        latency_rounds=1,
    )
    rows = {row["attention"]: row for row in result.rows}
    assert set(rows) == {"none", "se"} and {row["score"] for row in rows.values()} == {"r2"}
    # each record is its run's metrics.json score; the rows are their mean and paired diff
    r2 = {(r["cell"]["attention"], r["seed"]): r["r2"] for r in result.records}
    for record in result.records:
        metrics = json.loads((Path(record["run_dir"]) / "metrics.json").read_text())
        assert record["r2"] == metrics["test_r2"] and record["score"] == "r2"
    assert rows["se"]["r2_mean"] == pytest.approx((r2["se", 0] + r2["se", 1]) / 2)
    paired = [r2["se", seed] - r2["none", seed] for seed in (0, 1)]
    assert rows["se"]["diff_mean"] == pytest.approx(sum(paired) / 2)
    header = (out / "results.csv").read_text().splitlines()[0].split(",")
    assert "r2_mean" in header and not any("accuracy" in column for column in header)
    table = (out / "ablation.md").read_text()
    assert "Δ r2 vs none" in table and "paper top-1" not in table
    # a rerun keeps the finished cells
    again = run_ablation(out, attentions=("se",), seeds=2, task="brightness", image_size=16,
                         epochs=2, batch_size=16, learning_rate=0.01, latency_rounds=1)  # fmt: skip
    assert again.trained == 0 and again.skipped == 4
