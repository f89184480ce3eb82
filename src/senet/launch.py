"""A local multi-worker launcher: ``senet train --workers N`` on one machine.

:func:`launch` starts ``N`` ``senet train ... --distribute multiworker`` processes on
127.0.0.1, each on a free port and with the ``TF_CONFIG`` that names the cluster and its
own place in it (worker 0 is the chief), the way a cluster scheduler (a Kubernetes TFJob,
for example) starts one process per host. The chief's output is passed through (its
progress bar, its metrics); the other workers' output goes to log files that are deleted
after a run that succeeds. If any worker fails, every other one is stopped at once and
:class:`WorkerFailed` names it in one line.

Only loopback addresses are used; a cluster of hosts is started by setting ``TF_CONFIG``
on each host by hand or by its scheduler.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from senet.errors import WorkerFailed, one_line

__all__ = ["WorkerFailed", "free_ports", "launch", "tf_config"]

LOOPBACK = "127.0.0.1"
_GRACE_SECONDS = 5.0  # between SIGTERM and SIGKILL when the workers are stopped


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 now (the system picks them)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((LOOPBACK, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def tf_config(ports: Sequence[int], index: int) -> str:
    """The ``TF_CONFIG`` of worker ``index`` of a cluster on 127.0.0.1 at ``ports``.

    Example:
        >>> tf_config([2222, 2223], 1)
        '{"cluster": {"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]}, "task": {"type": "worker", "index": 1}}'
    """
    workers = [f"{LOOPBACK}:{port}" for port in ports]
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


def _describe(status: int) -> str:
    if status < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-status).name}"
        return f"was killed by signal {-status}"
    return f"exited with status {status}"


def _last_line(path: Path) -> str:
    """The last line of a worker's log that says something (its one-line error)."""
    with contextlib.suppress(OSError):
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines()]
        lines = [line for line in lines if line]
        errors = [line for line in lines if "error" in line.lower()]
        if errors or lines:
            return one_line((errors or lines)[-1], limit=160)
    return ""


class _PassThrough(threading.Thread):
    """Copies a worker's output pipe to ``target`` as it comes (progress bars included) and
    remembers its last line."""

    def __init__(self, source, target: TextIO):
        super().__init__(daemon=True)
        self.source, self.target, self.last_line = source, target, ""

    def run(self) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        while chunk := self.source.read1(4096):
            text = decoder.decode(chunk)
            self.target.write(text)
            self.target.flush()
            lines = [line.strip() for line in text.replace("\r", "\n").splitlines()]
            self.last_line = next((line for line in reversed(lines) if line), self.last_line)


def _stop(processes: Sequence[subprocess.Popen]) -> None:
    """SIGTERM every worker still running, then SIGKILL what is left after a grace period."""
    running = [process for process in processes if process.poll() is None]
    for process in running:
        with contextlib.suppress(OSError):
            process.terminate()
    deadline = time.monotonic() + _GRACE_SECONDS
    for process in running:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(max(0.0, deadline - time.monotonic()))
    for process in running:
        if process.poll() is None:
            with contextlib.suppress(OSError):
                process.kill()
            process.wait()


def launch(
    train_args: Sequence[str],
    workers: int,
    *,
    timeout: float | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    env: dict[str, str] | None = None,
    program: Sequence[str] | None = None,
) -> int:
    """Run ``senet train *train_args --distribute multiworker`` as ``workers`` local workers.

    Args:
        train_args: The ``senet train`` arguments every worker gets (``--out``/``--resume``
            and the run's options; not ``--workers``).
        workers: How many worker processes (at least 1); worker 0 is the chief, which
            alone writes the run directory.
        timeout: Stop every worker after this many seconds (None: no limit).
        stdout, stderr: Where the chief's output goes (default: this process's).
        env: The workers' environment (default: this process's); ``TF_CONFIG`` is set.
        program: The command each worker runs before ``train_args`` (default: this Python
            running ``senet train``); ``--distribute multiworker`` is appended.

    Returns:
        0 when every worker finished.

    Raises:
        WorkerFailed: A worker failed (or the run timed out); every worker was stopped.
            The message names the worker and ends with its own last error line.
    """
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    if workers < 1:
        raise ValueError(f"`workers` must be at least 1, got {workers}")
    logs = Path(tempfile.mkdtemp(prefix="senet-workers-"))
    ports = free_ports(workers)
    processes: list[subprocess.Popen] = []
    chief_output: list[_PassThrough] = []
    failure = None
    try:
        for index in range(workers):
            command = [*(program or (sys.executable, "-m", "senet", "train")), *train_args]
            process = _start_worker(index, command, ports, logs, env)
            processes.append(process)
            if index == 0:
                chief_output = [
                    _PassThrough(process.stdout, stdout),
                    _PassThrough(process.stderr, stderr),
                ]
                for thread in chief_output:
                    thread.start()
            where = "its output follows" if index == 0 else f"log {logs / _log_name(index)}"
            print(
                f"senet train: worker {index} of {workers}{' (chief)' if index == 0 else ''}: "
                f"pid {process.pid}, {LOOPBACK}:{ports[index]}, {where}",
                file=stderr,
                flush=True,
            )
        failure = _wait(processes, timeout)
    finally:
        _stop(processes)
        for thread in chief_output:
            thread.join(timeout=_GRACE_SECONDS)
    if failure is None:
        shutil.rmtree(logs, ignore_errors=True)
        return 0
    index, status = failure
    if index is None:
        raise WorkerFailed(
            f"the workers ran past the {timeout:g} s timeout; every worker was stopped "
            f"(logs: {logs})"
        )
    said = chief_output[1].last_line if index == 0 else _last_line(logs / _log_name(index))
    name = "worker 0 (the chief)" if index == 0 else f"worker {index}"
    where = "" if index == 0 else f" (log: {logs / _log_name(index)})"
    raise WorkerFailed(
        f"{name} {_describe(status)}; every worker was stopped"
        + (f"; it said: {one_line(said, limit=160)}" if said else "")
        + where,
        index=index,
        status=status,
    )


def _log_name(index: int) -> str:
    return f"worker-{index}.log"


def _start_worker(
    index: int,
    command: Sequence[str],
    ports: Sequence[int],
    logs: Path,
    env: dict[str, str] | None,
) -> subprocess.Popen:
    """Worker ``index``: the chief's output piped here, the others' into their log files."""
    worker_env = {**(env if env is not None else os.environ), "TF_CONFIG": tf_config(ports, index)}
    command = [*command, "--distribute", "multiworker"]
    if index == 0:
        return subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=worker_env,
            start_new_session=True,  # Ctrl-C reaches the launcher, which stops every worker
        )
    with open(logs / _log_name(index), "wb") as log:
        return subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=worker_env,
            start_new_session=True,
        )


def _wait(
    processes: Sequence[subprocess.Popen], timeout: float | None
) -> tuple[int | None, int | None] | None:
    """None once every worker exited 0; else ``(index, status)`` of the first that failed,
    or ``(None, None)`` at the timeout."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        statuses = [process.poll() for process in processes]
        for index, status in enumerate(statuses):
            if status not in (None, 0):
                return index, status
        if all(status == 0 for status in statuses):
            return None
        if deadline is not None and time.monotonic() > deadline:
            return None, None
        time.sleep(0.2)
