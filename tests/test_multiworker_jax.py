"""Multi-worker training on the JAX backend: `senet train --workers 2` with KERAS_BACKEND=jax.

Two real JAX processes on 127.0.0.1 (``keras.distribution.initialize`` with worker 0 as the
coordinator, gloo collectives on CPU, ``DataParallel`` over both processes' devices); every
process is bounded by a timeout and stopped at the end.
"""

from __future__ import annotations

import json
import tempfile

import pytest

from senet.cli import main
from workers import (
    RUN_ARGS,
    RUN_FILES,
    alive,
    history,
    killed_resumed_and_single,
    save_small_model,
    worker_lines,
)

pytest.importorskip("jax")


@pytest.fixture(autouse=True)
def _temporary_files_here(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("TMPDIR", str(tmp_path))


@pytest.fixture(scope="module")
def run_args(tmp_path_factory):
    """:data:`RUN_ARGS` with the small model of :func:`save_small_model` to start from."""
    model = save_small_model(tmp_path_factory.mktemp("model") / "small.keras")
    return [*RUN_ARGS, "--init-from", model]


@pytest.fixture(scope="module")
def cluster_run(run_args, tmp_path_factory):
    """Two JAX workers, two epochs, worker 1 SIGKILLed during epoch 2, then `--resume` on
    two workers; and the same run on one process. One cluster run serves every check.
    Returns ``(run_dir, killed, history after the kill, resumed, single_dir, single)``."""
    return killed_resumed_and_single("jax", run_args, tmp_path_factory.mktemp("jax-multiworker"))


@pytest.mark.slow
def test_a_killed_jax_worker_stops_every_worker_and_resume_loses_nothing(cluster_run):
    run_dir, killed, before, resumed, *_ = cluster_run
    assert killed.returncode == 1, killed.stderr[-3000:]
    last = killed.stderr.strip().splitlines()[-1]
    assert last.startswith("senet train: error: worker 1 was killed by SIGKILL"), last
    assert not alive(killed.chief) and not alive(killed.worker)
    assert [row["epoch"] for row in before] == [1]

    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed after epoch 1" in resumed.stdout
    assert sorted(worker_lines(resumed.stderr)) == [0, 1]
    # validation over Keras' sharded copy of the data stops at its own length
    assert "ran out of data" not in resumed.stderr
    rows = history(run_dir)
    assert [row["epoch"] for row in rows] == [1, 2]  # every epoch exactly once
    assert rows[0] == before[0]  # the finished epoch is kept as it was, not redone
    assert {path.name for path in run_dir.iterdir()} >= RUN_FILES
    config = json.loads((run_dir / "config.json").read_text())
    assert config["distribute"] == "multiworker"
    from senet.layers import load_model

    assert load_model(run_dir / "model.keras").output_shape == (None, 7)
    assert json.loads((run_dir / "metrics.json").read_text())["epochs_run"] == 2


@pytest.mark.slow
def test_two_jax_workers_train_one_model_like_one_process(cluster_run):
    run_dir, _, _, resumed, single_dir, single = cluster_run
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert single.returncode == 0, single.stderr[-3000:]
    # Each step is one computation over the global batch (batch norm sees all 40 images),
    # and both train on the same 42 whole batches an epoch (the order is a function of the
    # seed and the epoch), but not bit for bit: the cluster's program is partitioned over
    # two processes and draws its dropout masks otherwise. So: losses within 5% epoch by
    # epoch (epoch 2 is the resumed one), and test accuracy (both evaluate all 210 test
    # images) within 10 points.
    for multi_row, single_row in zip(history(run_dir), history(single_dir), strict=True):
        assert multi_row["loss"] == pytest.approx(single_row["loss"], rel=0.05)
    multi = json.loads((run_dir / "metrics.json").read_text())
    one = json.loads((single_dir / "metrics.json").read_text())
    assert multi["num_examples"] == one["num_examples"] == 210
    assert abs(multi["test_accuracy"] - one["test_accuracy"]) <= 0.10


def test_cli_workers_on_torch_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    assert main(["train", "--workers", "2", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "needs the tensorflow or jax backend" in err
    assert not (tmp_path / "run").exists()
