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
from pathlib import Path

import keras
import numpy as np
import pytest

from senet.cli import main
from senet.config import TrainConfig
from senet.layers import training_info
from senet.tasks import get_task, register_task, task_names
from senet.train import train
from toy_task import Brightness


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


def test_a_task_from_a_package_trains_from_the_command_line(tmp_path):
    """The `senet.tasks` entry point of a package makes `senet train --task NAME` work in a
    fresh process, which knows the task from nothing but the installed package."""
    import os
    import subprocess
    import sys

    info = tmp_path / "senet_toy_task-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: senet-toy-task\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[senet.tasks]\nbrightness = toy_task:Brightness\n")
    tests = Path(__file__).resolve().parent
    path = [str(tmp_path), str(tests), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}
    run = tmp_path / "run"
    argv = ["--task", "brightness", "--reduction", "2", "--image-size", "16", "--epochs", "1"]
    argv += ["--batch-size", "16", "--quiet", "--out", str(run)]
    done = subprocess.run(
        [sys.executable, "-m", "senet", "train", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((run / "metrics.json").read_text())
    # what the command printed is the task's summary of those metrics
    assert f"test r2 {metrics['r2']:.4f}" in done.stdout
    assert json.loads((run / "config.json").read_text())["task"] == "brightness"


def test_bench_times_a_toy_task_model_with_its_own_loss(task, tmp_path, monkeypatch):
    from senet.bench import run_bench

    train(_config(epochs=1), tmp_path / "run", verbose=0)
    losses = []
    original = task.compile_options

    def recording(config, model):
        options = original(config, model)
        losses.append(options["loss"])
        return options

    monkeypatch.setattr(task, "compile_options", recording)
    result = run_bench(
        tmp_path / "run" / "model.keras",
        task="brightness",
        batch_sizes=(1,),
        train_batch_size=4,
        rounds=1,
        warmup=0,
    )
    assert result["task"] == "brightness" and result["attention"] == "SqueezeExcite"
    assert losses == ["mse", "mse"]  # the plain and the SE model's training steps
    assert result["train_step"]["batch"] == 4
    with pytest.raises(
        ValueError, match="must be a .keras file or a network of the task 'brightness'"
    ):
        run_bench("emotion_cnn", task="brightness")


def test_overwrite_deletes_the_figures_of_the_task_it_replaces(task, tmp_path):
    run = tmp_path / "run"
    tiny = {"data": "synthetic", "synthetic_size": 70, "image_size": 16, "epochs": 1}
    train({**tiny, "batch_size": 16}, run, verbose=0)
    assert (run / "confusion.png").is_file()  # classification's figure
    train(_config(epochs=1), run, overwrite=True, verbose=0)
    assert not (run / "confusion.png").exists()  # the old task's figure went with its run
    assert (run / "residuals.json").is_file() and (run / "curves.png").is_file()
    train({**tiny, "batch_size": 16}, run, overwrite=True, verbose=0)
    assert not (run / "residuals.json").exists()  # the toy task's figure went too
    assert (run / "confusion.png").is_file()
