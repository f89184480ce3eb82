"""What the multi-worker tests read from a run and from the launcher's output."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

# 700 faces (560 to train on: 18 global batches of 32 an epoch), small images, no augmentation
# and a learning rate that leaves chance level within two epochs
RUN_ARGS = [
    "--data",
    "synthetic",
    "--synthetic-size",
    "700",
    "--image-size",
    "32",
    "--epochs",
    "2",
    "--batch-size",
    "32",
    "--lr",
    "0.003",
    "--no-augment",
    "--seed",
    "0",
    "--quiet",
]
RUN_FILES = {
    "config.json",
    "state.json",
    "history.csv",
    "model.keras",
    "metrics.json",
    "curves.png",
    "confusion.png",
}
TIMEOUT = 240  # seconds, for any one `senet train`


def backend_env(backend: str) -> dict[str, str]:
    """This process's environment with ``KERAS_BACKEND`` set and TensorFlow's logs off."""
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": backend}


def senet_train(backend: str, *args: str) -> subprocess.CompletedProcess:
    """``senet train *args`` on ``backend`` in a subprocess, bounded by :data:`TIMEOUT`."""
    return subprocess.run(
        [sys.executable, "-m", "senet", "train", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=backend_env(backend),
    )


def history(run_dir) -> list[dict[str, float]]:
    with open(run_dir / "history.csv", newline="") as file:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(file)]


def worker_lines(stderr: str) -> dict[int, str]:
    """The launcher's `worker i of n: pid P, ...` lines by worker."""
    lines = {}
    for line in stderr.splitlines():
        if line.startswith("senet train: worker ") and " pid " in line:
            lines[int(line.split()[3])] = line
    return lines


def pid_of(line: str) -> int:
    return int(line.split(" pid ")[1].split(",")[0])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class Killed:
    """What :func:`kill_worker_1_in_epoch_2` saw: the launcher's exit status and stderr, and
    the chief's and worker 1's process ids."""

    returncode: int
    stderr: str
    chief: int
    worker: int


def kill_worker_1_in_epoch_2(train_args, run_dir, env, timeout: float) -> Killed:
    """Start ``senet train --workers 2 *train_args --out run_dir`` and SIGKILL worker 1 as
    soon as the chief has recorded epoch 1 (so during epoch 2); wait for the launcher."""
    command = [sys.executable, "-m", "senet", "train", "--workers", "2", *train_args]
    command += ["--out", str(run_dir)]
    launcher = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        lines = {}
        while len(lines) < 2:
            line = launcher.stderr.readline()
            assert line, "the launcher ended before starting its workers"
            lines.update(worker_lines(line))
        chief, worker = pid_of(lines[0]), pid_of(lines[1])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = run_dir / "state.json"
            if state.exists() and '"epochs_done": 1' in state.read_text():
                break
            assert launcher.poll() is None, launcher.stderr.read()[-3000:]
            time.sleep(0.05)
        os.kill(worker, signal.SIGKILL)
        error = launcher.communicate(timeout=60)[1]
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    return Killed(launcher.returncode, error, chief, worker)
