"""What the multi-worker tests read from a run and from the launcher's output."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

# 2100 faces (1680 to train on: 42 global batches of 40 an epoch, none of them partial, so
# each process compiles or traces one training step), small images, no augmentation, and
# the small model of :func:`save_small_model` given with `--init-from` (add
# ``--init-from FILE``): with a learning rate that leaves chance level within two epochs
# (about 0.28 test accuracy on 210 faces, chance 0.14), each process costs half the CPU
# time the default emotion CNN does (TensorFlow 8 s against 17 s, 2-core Zen 3).
RUN_ARGS = [
    "--data",
    "synthetic",
    "--synthetic-size",
    "2100",
    "--image-size",
    "32",
    "--epochs",
    "2",
    "--batch-size",
    "40",
    "--lr",
    "0.01",
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


def save_small_model(path, image_size: int = 32) -> str:
    """A small untrained classifier of grey faces (``image_size`` square) with an SE block,
    saved at ``path``:
    two strided convolutions with batch norm (so replicas' batch statistics differ),
    dropout, 7 classes. Its programs compile and trace in a fraction of the time the default
    emotion CNN's do; the multi-worker tests are about the distribution, not the model."""
    import keras

    from senet.layers import SqueezeExcite

    inputs = keras.Input((image_size, image_size, 1))
    x = inputs
    for filters in (8, 16):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization(momentum=0.8)(x)
        x = keras.layers.ReLU()(x)
    x = SqueezeExcite(reduction=4)(x)
    x = keras.layers.Dropout(0.2)(keras.layers.Flatten()(x))
    outputs = keras.layers.Dense(7, activation="softmax")(x)
    keras.Model(inputs, outputs, name="small").save(path)
    return str(path)


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


def killed_resumed_and_single(backend: str, run_args, root):
    """The one cluster run of the multi-worker tests on ``backend``: two workers, worker 1
    SIGKILLed during epoch 2, then ``--resume`` on two workers; and the same run on one
    process. Returns ``(run_dir, killed, history after the kill, resumed, single_dir,
    single)``."""
    run_dir, single_dir = root / "run", root / "single"
    args = ["--timeout", str(TIMEOUT - 20), *run_args]
    killed = kill_worker_1_in_epoch_2(args, run_dir, backend_env(backend), TIMEOUT)
    before = history(run_dir) if (run_dir / "history.csv").exists() else []
    resumed = senet_train(
        backend, "--workers", "2", "--timeout", str(TIMEOUT - 20), "--resume", str(run_dir)
    )
    single = senet_train(backend, *run_args, "--out", str(single_dir))
    return run_dir, killed, before, resumed, single_dir, single
