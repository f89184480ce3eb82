"""Importing TensorFlow without the notices it writes to fd 2 while it loads."""

from __future__ import annotations

import os
import sys
import warnings

__all__ = [
    "TRAINING_COMMANDS",
    "import_tensorflow_quietly",
    "limit_threads",
    "prefer_onednn",
    "worker_layout",
]

#: The CLI commands that train models: they turn oneDNN on (see :func:`prefer_onednn`).
TRAINING_COMMANDS = ("train", "demo", "ablate")


def prefer_onednn() -> bool:
    """Ask TensorFlow for its oneDNN CPU kernels, unless the user has chosen; True if set here.

    TensorFlow turns oneDNN on by default only on CPUs with AVX-512-class features. On an
    AMD Zen 3 CPU (AVX2, no AVX-512) the SE emotion CNN's training step of 64 48x48 faces
    took 162 ms with oneDNN on against 314 ms with it off (2 threads), so the commands that
    train (:data:`TRAINING_COMMANDS`) set ``TF_ENABLE_ONEDNN_OPTS=1``. Inference commands do
    not: there oneDNN made ResNet-50 at batch 1 1.6x slower on the same CPU (152 against
    95 ms, BENCHMARKS.md). A value the user set, ``0`` included, is kept, and nothing
    changes once TensorFlow is loaded (it reads the variable once). Child processes
    (``--workers``, ``--jobs``) inherit the setting.
    """
    if "TF_ENABLE_ONEDNN_OPTS" in os.environ or "tensorflow" in sys.modules:
        return False
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1"
    return True


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with file descriptor 2 pointed at /dev/null.

    TensorFlow 2.21 writes absl's "log messages before absl::InitializeLog()" notice and a
    oneDNN note straight to fd 2 while it loads, whatever TF_CPP_MIN_LOG_LEVEL says; without
    this, every command's one-line error or report would follow four lines of that.
    """
    if "tensorflow" in sys.modules or os.environ.get("KERAS_BACKEND", "tensorflow") != (
        "tensorflow"
    ):
        return
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            try:
                import tensorflow  # noqa: F401
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def limit_threads(threads: int) -> None:
    """Give this process ``threads`` TensorFlow threads (a worker process, before any work).

    The initializer of senet's spawned workers (``ablate --jobs``, the demo's two models).
    """
    for name in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
        os.environ[name] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import_tensorflow_quietly()  # each worker would print TensorFlow's load-time notices
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # TensorFlow already started: the variables above apply
            pass


def worker_layout(jobs: int, todo: int, *, stacklevel: int = 2) -> tuple[int, int]:
    """``(processes, TensorFlow threads each)``: ``jobs`` of ``todo`` tasks on these cores.

    More ``jobs`` than cores warns (at ``stacklevel``) and runs one process a core.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    processes = max(1, min(jobs, cores, todo))
    if jobs > cores:
        warnings.warn(
            f"jobs={jobs} on {cores} cores: running {processes} at a time",
            stacklevel=stacklevel,
        )
    return processes, max(1, cores // processes)
