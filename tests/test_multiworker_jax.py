"""Multi-worker training on the JAX backend: `senet train --workers 2` with KERAS_BACKEND=jax.

Two real JAX processes on 127.0.0.1 (``keras.distribution.initialize`` with worker 0 as the
coordinator, gloo collectives on CPU, ``DataParallel`` over both processes' devices); every
process is bounded by a timeout and stopped at the end.
"""

from __future__ import annotations

import json
import subprocess
import tempfile

import pytest

from senet.cli import main
from workers import (
    RUN_ARGS,
    RUN_FILES,
    TIMEOUT,
    alive,
    backend_env,
    history,
    kill_worker_1_in_epoch_2,
    save_small_model,
    senet_train,
    worker_lines,
)

pytest.importorskip("jax")


@pytest.fixture(autouse=True)
def _temporary_files_here(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("TMPDIR", str(tmp_path))


def _env() -> dict[str, str]:
    return backend_env("jax")


def _senet(*args: str) -> subprocess.CompletedProcess:
    return senet_train("jax", *args)


@pytest.fixture(scope="module")
def run_args(tmp_path_factory):
    """:data:`RUN_ARGS` with the small model of :func:`save_small_model` to start from."""
    model = save_small_model(tmp_path_factory.mktemp("model") / "small.keras")
    return [*RUN_ARGS, "--init-from", model]


@pytest.fixture(scope="module")
def jax_workers(run_args, tmp_path_factory):
    """Two JAX workers, two epochs, uninterrupted: (run_dir, completed)."""
    run_dir = tmp_path_factory.mktemp("jax-multiworker") / "run"
    completed = _senet(
        "--workers", "2", "--timeout", str(TIMEOUT - 20), *run_args, "--out", str(run_dir)
    )
    return run_dir, completed


@pytest.mark.slow
def test_two_jax_workers_train_one_model_like_one_process(jax_workers, run_args, tmp_path):
    run_dir, completed = jax_workers
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert sorted(worker_lines(completed.stderr)) == [0, 1]
    # validation over Keras' sharded copy of the data stops at its own length
    assert "ran out of data" not in completed.stderr
    assert {path.name for path in run_dir.iterdir()} >= RUN_FILES
    assert [row["epoch"] for row in history(run_dir)] == [1, 2]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["distribute"] == "multiworker"
    single_dir = tmp_path / "single"
    single = _senet(*run_args, "--out", str(single_dir))
    assert single.returncode == 0, single.stderr[-3000:]
    # Each step is one computation over the global batch (batch norm sees all 40 images),
    # and both train on the same 42 whole batches an epoch (the order is a function of the
    # seed and the epoch), but not bit for bit: the cluster's program is partitioned over
    # two processes and draws its dropout masks otherwise. So: losses within 5% epoch by
    # epoch, and test accuracy (both evaluate all 210 test images) within 10 points.
    for multi_row, single_row in zip(history(run_dir), history(single_dir), strict=True):
        assert multi_row["loss"] == pytest.approx(single_row["loss"], rel=0.05)
    multi = json.loads((run_dir / "metrics.json").read_text())
    one = json.loads((single_dir / "metrics.json").read_text())
    assert multi["num_examples"] == one["num_examples"] == 210
    assert abs(multi["test_accuracy"] - one["test_accuracy"]) <= 0.10


@pytest.mark.slow
def test_killed_jax_worker_then_resume_loses_nothing(jax_workers, run_args, tmp_path):
    reference_dir, reference = jax_workers
    assert reference.returncode == 0, reference.stderr[-3000:]
    run_dir = tmp_path / "run"
    args = ["--timeout", str(TIMEOUT - 20), *run_args]
    killed = kill_worker_1_in_epoch_2(args, run_dir, _env(), TIMEOUT)
    assert killed.returncode == 1
    last = killed.stderr.strip().splitlines()[-1]
    assert last.startswith("senet train: error: worker 1 was killed by SIGKILL"), last
    assert not alive(killed.chief) and not alive(killed.worker)
    assert [row["epoch"] for row in history(run_dir)] == [1]

    resumed = _senet("--workers", "2", "--timeout", str(TIMEOUT - 20), "--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed after epoch 1" in resumed.stdout
    rows = history(run_dir)
    assert [row["epoch"] for row in rows] == [1, 2]  # every epoch exactly once
    # nothing lost: the epochs of the run that was never interrupted
    for row, expected in zip(rows, history(reference_dir), strict=True):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert row[key] == pytest.approx(expected[key], rel=1e-4, abs=1e-6), key
    from senet.layers import load_model

    assert load_model(run_dir / "model.keras").output_shape == (None, 7)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2
    reference_metrics = json.loads((reference_dir / "metrics.json").read_text())
    assert metrics["test_accuracy"] == pytest.approx(reference_metrics["test_accuracy"])


def test_cli_workers_on_torch_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    assert main(["train", "--workers", "2", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "needs the tensorflow or jax backend" in err
    assert not (tmp_path / "run").exists()
