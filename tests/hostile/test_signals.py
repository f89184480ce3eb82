"""SIGTERM and SIGINT stop every child and release every lock; temporary files go, or the
next run removes them (issue 20, item 5)."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import pytest

from senet import export
from senet._files import pid_alive
from senet.cli import main
from senet.models import emotion_cnn


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("signals") / "m.keras"
    keras.utils.set_random_seed(1)
    emotion_cnn((32, 32, 1), widths=(4, 8), attention="se").save(path)
    return path


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.slow  # exports twice
@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_during_export_leaves_no_temporary_file(
    small_model, tmp_path, monkeypatch, capsys, request, signum, status
):
    # before: SIGTERM left a hidden .tmp-PID-m.tflite that later exports never removed
    write = export._write

    def write_then_signal(*args, **kwargs):
        write(*args, **kwargs)
        assert list(tmp_path.glob(".tmp-*"))  # the temporary file is there now
        os.kill(os.getpid(), signum)
        time.sleep(5)  # the handler raises here

    monkeypatch.setattr(export, "_write", write_then_signal)
    # a terminal's Ctrl-C: Python's own SIGINT handler (pytest-xdist workers ignore SIGINT)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous))
    out = tmp_path / "m.tflite"
    assert main(["export", str(small_model), "--format", "tflite", "--out", str(out)]) == status
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("terminated (SIGTERM)" if status == 143 else "interrupted")
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # main put the handler back


@pytest.mark.slow  # exports
def test_an_export_removes_what_a_killed_export_left(small_model, tmp_path):
    out = tmp_path / "m.tflite"
    dead, live = _dead_pid(), os.getppid()
    (tmp_path / f".tmp-{dead}-m.tflite").write_bytes(b"half")
    (tmp_path / f".tmp-{dead}-old-m.tflite").mkdir()
    (tmp_path / f".tmp-{live}-m.tflite").write_bytes(b"another export, running")
    (tmp_path / f".tmp-{dead}-other.tflite").write_bytes(b"not this output's")
    export.export_model(small_model, out, format="tflite", samples=4)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        ["m.tflite", f".tmp-{live}-m.tflite", f".tmp-{dead}-other.tflite"]
    )


@pytest.mark.slow  # three processes import TensorFlow; two start training
def test_sigterm_to_ablate_jobs_2_stops_every_worker_and_frees_their_locks(tmp_path):
    # before: the parent exited 143, both workers lived on under PID 1, trained the next
    # cell and then hung holding run.lock, so a rerun was refused
    out = tmp_path / "abl"
    command = [sys.executable, "-m", "senet", "ablate", "--out", str(out), "--jobs", "2"]
    command += ["--attention", "none", "se", "--seeds", "1", "--synthetic-size", "1400"]
    command += ["--image-size", "24", "--epochs", "200", "--latency-rounds", "1"]
    # no TF_CPP_MIN_LOG_LEVEL: the workers' TensorFlow notices would show (they must not)
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["KERAS_BACKEND"] = "tensorflow"
    parent = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        deadline = time.monotonic() + 180
        while len(locks := list(out.rglob("run.lock"))) < 2:
            assert parent.poll() is None, parent.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the workers did not start training"
            time.sleep(0.2)
        workers = {json.loads(lock.read_text())["pid"] for lock in locks}
        assert len(workers) == 2 and parent.pid not in workers
        parent.send_signal(signal.SIGTERM)
        _, err = parent.communicate(timeout=60)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
    assert parent.returncode == 143, err[-3000:]
    assert err.strip().splitlines()[-1] == "senet ablate: terminated (SIGTERM)"
    assert not any(pid_alive(pid) for pid in workers)
    assert list(out.rglob("run.lock")) == []  # released by the workers on the way out
    # what each worker printed on start: before, absl's and oneDNN's load-time notices
    assert "oneDNN" not in err and "absl::InitializeLog" not in err
