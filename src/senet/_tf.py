"""Importing TensorFlow without the notices it writes to fd 2 while it loads, and senet's
worker processes (``ablate --jobs``, the demo's two models): their threads and their pool."""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings

__all__ = [
    "TRAINING_COMMANDS",
    "WorkerPool",
    "import_tensorflow_quietly",
    "limit_threads",
    "prefer_onednn",
    "worker_layout",
]

# seconds a terminated worker has to run its `finally` blocks before it is killed
_GRACE_SECONDS = 10.0

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


def _start_worker(threads: int) -> None:
    """A worker process's start: its threads, SIGTERM as :class:`senet.errors.Terminated`,
    and (Linux) SIGTERM when the parent dies, however it dies."""
    from senet.errors import raise_on_sigterm

    raise_on_sigterm()
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    limit_threads(threads)


def _run_task(function, *args):
    """Run ``function(*args)`` in a worker; interrupted, exit once its ``finally`` blocks
    ran (the pool's own loop would catch the exception and wait for more work)."""
    try:
        return function(*args)
    except KeyboardInterrupt as error:  # Terminated (SIGTERM) included
        from senet.errors import Terminated

        sys.stderr.flush()
        os._exit(143 if isinstance(error, Terminated) else 130)


class WorkerPool:
    """Spawned worker processes with ``threads`` TensorFlow threads each, that never
    outlive the work: leaving the ``with`` block on an error, Ctrl-C or SIGTERM stops every
    worker (SIGTERM, so their ``finally`` blocks release run locks; SIGKILL after
    10 s), instead of waiting for the cells they are training.

    Example:
        >>> with WorkerPool(2, threads=1) as pool:  # doctest: +SKIP
        ...     future = pool.submit(train_one, config)
    """

    def __init__(self, processes: int, threads: int):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self._pool = ProcessPoolExecutor(
            processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(threads,),
        )

    def submit(self, function, *args):
        """``function(*args)`` in a worker (a module-level function); a Future."""
        return self._pool.submit(_run_task, function, *args)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            self._pool.shutdown(wait=True)
            return
        self.terminate()

    def terminate(self) -> None:
        """Stop every worker now (SIGTERM, then SIGKILL after the grace period)."""
        # ProcessPoolExecutor has no public way to stop running tasks before Python 3.14
        processes = list((getattr(self._pool, "_processes", None) or {}).values())
        for process in processes:
            with contextlib.suppress(OSError, ValueError):
                process.terminate()
        self._pool.shutdown(wait=False, cancel_futures=True)
        # one grace period for all of them (as senet.launch stops its workers), not one each
        deadline = time.monotonic() + _GRACE_SECONDS
        for process in processes:
            with contextlib.suppress(OSError, ValueError, AssertionError):
                process.join(max(0.0, deadline - time.monotonic()))
                if process.is_alive():
                    process.kill()
                    process.join()
