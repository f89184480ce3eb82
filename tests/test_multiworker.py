"""Multi-worker training across processes: `senet train --workers N`, the chief's run
directory, a killed worker and `--resume`, the launcher, and one-line errors.

The slow tests start real TensorFlow workers on 127.0.0.1 (MultiWorkerMirroredStrategy);
every process is bounded by a timeout and stopped at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest

from senet import distributed
from senet.cli import main
from senet.errors import MESSAGE_LIMIT, one_line
from senet.launch import WorkerFailed, free_ports, launch, tf_config
from workers import (
    RUN_ARGS,
    RUN_FILES,
    alive,
    backend_env,
    history,
    killed_resumed_and_single,
    pid_of,
    save_small_model,
    worker_lines,
)


@pytest.fixture(autouse=True)
def _temporary_files_here(tmp_path, monkeypatch):
    """Workers' logs (kept after a failure) and temporary saves go under tmp_path."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("TMPDIR", str(tmp_path))


def _env() -> dict[str, str]:
    return backend_env("tensorflow")


@pytest.fixture(scope="module")
def run_args(tmp_path_factory):
    """:data:`RUN_ARGS` with the small model of :func:`save_small_model` to start from."""
    model = save_small_model(tmp_path_factory.mktemp("model") / "small.keras")
    return [*RUN_ARGS, "--init-from", model]


@pytest.fixture(scope="module")
def cluster_run(run_args, tmp_path_factory):
    """Two local workers (`--workers 2`), two epochs, worker 1 SIGKILLed during epoch 2,
    then `--resume` on two workers; and the same run on one process.

    One cluster run serves every acceptance check (a run on two workers costs two
    TensorFlow processes): the kill, the resume, and the comparison with one process.
    Returns ``(run_dir, killed, history after the kill, resumed, single_dir, single)``.
    """
    return killed_resumed_and_single("tensorflow", run_args, tmp_path_factory.mktemp("multiworker"))


# --------------------------------------------------------------------------- acceptance


@pytest.mark.slow
def test_a_killed_worker_stops_every_worker_and_keeps_the_finished_epoch(cluster_run):
    run_dir, killed, before, *_ = cluster_run
    assert killed.returncode == 1, killed.stderr[-3000:]
    last = killed.stderr.strip().splitlines()[-1]
    assert last.startswith("senet train: error: worker 1 was killed by SIGKILL")
    assert "every worker was stopped" in last and len(last) < 400
    assert not alive(killed.chief) and not alive(killed.worker)
    assert [row["epoch"] for row in before] == [1]  # epoch 2 never finished


@pytest.mark.slow
def test_resume_on_two_workers_finishes_the_run_and_loses_nothing(cluster_run):
    run_dir, _, before, resumed, *_ = cluster_run
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed after epoch 1" in resumed.stdout and "run directory:" in resumed.stdout
    workers = worker_lines(resumed.stderr)
    assert sorted(workers) == [0, 1] and "127.0.0.1:" in workers[1]
    # the other worker's log folder is deleted after a run that succeeds
    log = workers[1].split(" log ")[1]
    assert not os.path.exists(os.path.dirname(log))
    rows = history(run_dir)
    assert [row["epoch"] for row in rows] == [1, 2]  # every epoch exactly once
    assert rows[0] == before[0]  # the finished epoch is kept as it was, not redone
    # the chief's run directory is complete
    assert {path.name for path in run_dir.iterdir()} >= RUN_FILES
    assert {p.name for p in (run_dir / "checkpoints").iterdir()} == {
        "epoch-0001.keras",
        "epoch-0002.keras",
    }
    config = json.loads((run_dir / "config.json").read_text())
    assert config["distribute"] == "multiworker" and config["batch_size"] == 40
    from senet.layers import load_model

    assert load_model(run_dir / "model.keras").output_shape == (None, 7)
    assert json.loads((run_dir / "metrics.json").read_text())["epochs_run"] == 2


@pytest.mark.slow
def test_two_workers_train_one_model_like_one_process(cluster_run):
    run_dir, _, _, resumed, single_dir, single = cluster_run
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert single.returncode == 0, single.stderr[-3000:]
    multi_metrics = json.loads((run_dir / "metrics.json").read_text())
    single_metrics = json.loads((single_dir / "metrics.json").read_text())
    assert multi_metrics["num_examples"] == single_metrics["num_examples"] == 210
    # The same global batches, but not bit for bit: each replica normalizes its half batch
    # (20 images) with its own batch statistics and draws its own dropout mask, where one
    # process uses the whole 40. The gradients themselves are all-reduced exactly (a model
    # without batch norm and dropout gives the same losses to 1e-7). So: training losses
    # within 5% epoch by epoch (epoch 2 is the resumed one), and test accuracy within 10
    # points (21 of the 210 test images; one accuracy's binomial standard deviation is
    # about 3 points here).
    for multi_row, single_row in zip(history(run_dir), history(single_dir), strict=True):
        assert multi_row["loss"] == pytest.approx(single_row["loss"], rel=0.05)
    assert abs(multi_metrics["test_accuracy"] - single_metrics["test_accuracy"]) <= 0.10


# --------------------------------------------------------------------------- launcher

# a stand-in worker: reads its TF_CONFIG, says what it got, then acts as ACTIONS says
_STAND_IN = textwrap.dedent(
    """
    import json, os, sys, time
    config = json.loads(os.environ["TF_CONFIG"])
    index = config["task"]["index"]
    print(json.dumps({"index": index, "config": config, "argv": sys.argv[1:]}), flush=True)
    action = json.loads(os.environ["ACTIONS"])[index]
    if action == "fail":
        time.sleep(0.3)
        print("senet train: error: boom " + "0.123 " * 200, file=sys.stderr, flush=True)
        sys.exit(3)
    if action == "sleep":
        time.sleep(120)
    """
)


def _launch(tmp_path, actions, capsys, **kwargs):
    script = tmp_path / "stand_in.py"
    script.write_text(_STAND_IN)
    env = {**os.environ, "ACTIONS": json.dumps(actions)}
    return launch(
        ["--out", "RUN"], len(actions), env=env, program=[sys.executable, str(script)], **kwargs
    )


def test_launcher_gives_each_worker_its_loopback_tf_config(tmp_path, capsys):
    assert _launch(tmp_path, ["ok", "ok", "ok"], capsys, timeout=60) == 0
    captured = capsys.readouterr()
    said = json.loads(captured.out.strip().splitlines()[-1])  # only the chief's output shows
    assert said["index"] == 0
    assert said["argv"] == ["--out", "RUN", "--distribute", "multiworker"]
    addresses = said["config"]["cluster"]["worker"]
    assert len(addresses) == 3 and all(a.startswith("127.0.0.1:") for a in addresses)
    assert len(set(addresses)) == 3
    assert sorted(worker_lines(captured.err)) == [0, 1, 2]


def test_launcher_stops_every_worker_when_one_fails(tmp_path, capsys):
    with pytest.raises(WorkerFailed) as caught:
        _launch(tmp_path, ["sleep", "fail"], capsys, timeout=60)
    error = caught.value
    assert (error.index, error.status) == (1, 3)
    message = str(error)
    assert message.startswith("worker 1 exited with status 3; every worker was stopped")
    assert "boom" in message and len(message) < 400 and "\n" not in message
    chief = pid_of(worker_lines(capsys.readouterr().err)[0])
    assert not alive(chief)


def test_launcher_timeout_stops_every_worker(tmp_path, capsys):
    with pytest.raises(WorkerFailed, match="timeout") as caught:
        _launch(tmp_path, ["sleep", "sleep"], capsys, timeout=1)
    assert caught.value.index is None
    for line in worker_lines(capsys.readouterr().err).values():
        assert not alive(pid_of(line))


def test_free_ports_are_distinct():
    ports = free_ports(4)
    assert len(set(ports)) == 4 and all(0 < port < 65536 for port in ports)
    assert json.loads(tf_config(ports, 2))["task"] == {"type": "worker", "index": 2}


def test_cli_workers_passes_the_options_given(tmp_path, monkeypatch):
    import senet.launch

    seen = {}

    def fake_launch(args, workers, *, timeout=None, env=None):
        seen.update(args=args, workers=workers, timeout=timeout)
        return 0

    monkeypatch.setattr(senet.launch, "launch", fake_launch)
    run = str(tmp_path / "run")
    argv = ["train", "--workers", "3", "--timeout", "30", "--out", run, "--lr", "0.5"]
    assert main([*argv, "--no-augment", "--quiet"]) == 0
    assert seen["workers"] == 3 and seen["timeout"] == 30
    assert seen["args"] == ["--out", run, "--lr", "0.5", "--no-augment", "--quiet"]


def test_the_workers_launcher_does_not_import_tensorflow(tmp_path):
    """The launcher only starts and watches processes: importing TensorFlow there cost each
    `--workers` run about 4 s before its workers started."""
    script = (
        "import sys\n"
        "import senet.launch\n"
        "from senet.cli import main\n"
        "senet.launch.launch = lambda *args, **kwargs: 0\n"
        f"code = main(['train', '--workers', '2', '--out', {str(tmp_path / 'run')!r}])\n"
        "print(code, [m for m in ('tensorflow', 'keras', 'jax') if m in sys.modules])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
        check=True,
    )
    assert done.stdout.strip().splitlines()[-1] == "0 []"


def test_cli_workers_refuses_another_distribution(tmp_path, capsys):
    argv = ["train", "--workers", "2", "--distribute", "mirrored", "--out", str(tmp_path / "r")]
    assert main(argv) == 2
    assert "--distribute multiworker" in capsys.readouterr().err


def test_worker_role_comes_from_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert distributed.is_chief() and distributed.cluster_size() == 1
    monkeypatch.setenv("TF_CONFIG", tf_config([1, 2], 1))
    assert not distributed.is_chief() and distributed.cluster_size() == 2
    assert distributed.task_name() == "worker 1"
    chief = {
        "cluster": {"chief": ["a:1"], "worker": ["b:1"]},
        "task": {"type": "worker", "index": 0},
    }
    monkeypatch.setenv("TF_CONFIG", json.dumps(chief))
    assert not distributed.is_chief() and distributed.cluster_size() == 2
    # the JAX cluster's process order: the chief first, so it is process 0
    assert distributed.cluster_addresses() == (["a:1", "b:1"], 1)
    monkeypatch.setenv("TF_CONFIG", tf_config([5, 6, 7], 2))
    assert distributed.cluster_addresses() == (["127.0.0.1:5", "127.0.0.1:6", "127.0.0.1:7"], 2)


# --------------------------------------------------------------------------- errors


def _array_error() -> ValueError:
    # what TensorFlow said when two workers met Keras' fit: a batch of pixels in the message
    pixels = np.random.default_rng(0).random((16, 24, 24, 1), dtype=np.float32)
    return ValueError(
        f"Attempt to convert a value (PerReplica:{{\n  0: {pixels!r}\n}}) with an unsupported "
        "type (<class 'tensorflow.python.distribute.values.PerReplica'>) to a Tensor."
    )


def test_one_line_leaves_arrays_out():
    error = _array_error()
    assert len(str(error)) > 3000
    line = one_line(error)
    assert line == (
        "Attempt to convert a value (<PerReplica ...>) with an unsupported type "
        "(<class 'tensorflow.python.distribute.values.PerReplica'>) to a Tensor."
    )
    torch_like = "bad logits tensor([[0.1, 0.2],\n        [0.3, 0.4]]) for x"
    assert one_line(torch_like) == "bad logits <tensor ...> for x"
    long = one_line("word " * 500)
    assert len(long) == MESSAGE_LIMIT and long.endswith("...")


@pytest.mark.parametrize("debug", ["flag", "env"])
def test_cli_error_is_one_short_line_and_debug_shows_the_traceback(
    tmp_path, monkeypatch, capsys, debug
):
    import senet.train

    def failing_train(*args, **kwargs):
        raise _array_error()

    monkeypatch.setattr(senet.train, "train", failing_train)
    argv = ["train", "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and len(err) < 400
    assert err.startswith("senet train: error: Attempt to convert a value (<PerReplica ...>)")
    assert "0." not in err.split("Tensor.")[0] and "--debug" in err
    if debug == "flag":
        argv = ["--debug", *argv]
    else:
        monkeypatch.setenv("SENET_DEBUG", "1")
    with pytest.raises(ValueError, match="PerReplica"):
        main(argv)


@pytest.mark.slow
def test_a_segmentation_run_trains_and_scores_on_two_workers(tmp_path):
    """The segmentation task on the cluster path: its uint8 synthetic labels once broke the
    workers' collectives, and its final labels must be the model's for each test image
    (a distributed predict hands each worker a share of the batch)."""
    import json
    import subprocess
    import sys

    run = tmp_path / "seg"
    argv = ["train", "--workers", "2", "--task", "segmentation", "--model", "unet"]
    argv += ["--attention", "scse", "--synthetic-size", "40", "--image-size", "16"]
    argv += ["--epochs", "1", "--batch-size", "8", "--quiet", "--out", str(run)]
    argv += ["--model-options", '{"depth": 2, "base_filters": 4}']
    done = subprocess.run(
        [sys.executable, "-m", "senet", *argv],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((run / "metrics.json").read_text())
    from senet.data.masks import load_masks
    from senet.layers import load_model
    from senet.tasks import get_task

    test = load_masks("synthetic", synthetic_size=40, image_size=16)["test"]
    model = load_model(run / "model.keras", compile=False)
    again = get_task("segmentation").evaluate(model, test, batch_size=8)
    assert metrics["num_examples"] == len(test) == 4
    assert metrics["test_dice"] == pytest.approx(again["dice"], abs=1e-6)
