"""The run's lock: ``RUN_DIR/run.lock``, a kernel lock (``fcntl.flock``) held by the process
that trains, released by the kernel when that process ends (``kill -9`` included), and a
lock file naming another host refused (its process cannot be seen from here).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from senet._files import read_json
from senet.errors import RunError, RunInUse
from senet.runs.directory import LOCK_FILE


def _lock_holder(path: Path) -> dict[str, Any] | None:
    """What the lock file says of its holder, ``{"pid", "host"}``; None when the file is gone
    or says nothing senet wrote (the kernel's lock, not the text, decides who holds it)."""
    try:
        holder = read_json(path)
    except (OSError, ValueError):
        return None
    if (
        not isinstance(holder, dict)
        or isinstance(holder.get("pid"), bool)
        or not isinstance(holder.get("pid"), int)
        or not isinstance(holder.get("host"), str)
    ):
        return None
    return holder


def _elsewhere(holder: dict[str, Any] | None) -> bool:
    """Whether the lock file names another host: its holder's ``flock`` may not reach this
    one (a shared file system), so the run counts as in use while the file is there."""
    return holder is not None and holder["host"] != socket.gethostname()


def _in_use(run_dir: Path, holder: dict[str, Any] | None) -> RunInUse:
    holder = holder or {"pid": "unknown", "host": socket.gethostname()}
    where = "" if holder["host"] == socket.gethostname() else f" on host {holder['host']}"
    return RunInUse(f"run {run_dir} is in use by PID {holder['pid']}{where}")


def _open_lock_file(path: Path, flags: int) -> int | None:
    """A descriptor of the lock file (never through a link); None when it does not exist."""
    try:
        return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise RunError(f"cannot lock run {path.parent}: {path}: {error.strerror}") from None


def _flock(descriptor: int, operation: int) -> bool:
    """``flock(descriptor, operation | LOCK_NB)``; False when another descriptor holds it."""
    try:
        fcntl.flock(descriptor, operation | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def check_unlocked(run_dir: Path) -> None:
    """Raise :class:`RunInUse` if a process holds ``run_dir``'s lock (changes nothing).

    A quick refusal before slow work; :func:`lock_run` is what actually takes the lock.
    """
    run_dir = Path(run_dir)
    path = run_dir / LOCK_FILE
    descriptor = _open_lock_file(path, os.O_RDONLY)
    if descriptor is None:
        return
    try:
        if not _flock(descriptor, fcntl.LOCK_SH):
            raise _in_use(run_dir, _lock_holder(path))
        holder = _lock_holder(path)
        if _elsewhere(holder):
            raise _in_use(run_dir, holder)
    finally:
        os.close(descriptor)  # and with it the shared lock


def _same_file(descriptor: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(descriptor), os.stat(path, follow_symlinks=False))
    except FileNotFoundError:
        return False


def _acquire(run_dir: Path, path: Path) -> tuple[int, dict[str, Any] | None]:
    """Lock ``path`` (created if missing) for this process: its descriptor, and what the
    file said before (a holder that ended without removing it: ``kill -9``, a crash)."""
    for _ in range(5):
        descriptor = _open_lock_file(path, os.O_RDWR | os.O_CREAT)
        if descriptor is None:
            continue  # a dangling name in a race: try again
        if not _flock(descriptor, fcntl.LOCK_EX):
            os.close(descriptor)
            raise _in_use(run_dir, _lock_holder(path))
        if _same_file(descriptor, path):
            return descriptor, _lock_holder(path)
        os.close(descriptor)  # the holder released (and removed) it meanwhile: lock anew
    raise _in_use(run_dir, _lock_holder(path))


@contextlib.contextmanager
def lock_run(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir/run.lock`` for the ``with`` block: one process uses a run at a time.

    The lock is the kernel's (``flock`` on ``run.lock``), so it ends with its process, however
    that ends (``kill -9`` included); the file holds the holder's PID and host for the
    messages, and is removed when the block ends, on exceptions too. A file left by a process
    that was killed is taken over with a one-line warning. Locks are advisory, and on a
    shared file system only as good as its ``flock``: a file naming another host is
    refused while it exists. ``run_dir`` must exist.

    Raises:
        RunInUse: Another process (or this one, elsewhere) holds the lock, or the file names
            another host: "run DIR is in use by PID n".
    """
    run_dir = Path(run_dir)
    path = run_dir / LOCK_FILE
    descriptor, left = _acquire(run_dir, path)
    try:
        if _elsewhere(left):
            raise _in_use(run_dir, left)
        mine = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, json.dumps(mine).encode(), 0)
        os.fsync(descriptor)
        if left is not None and left["pid"] != os.getpid():
            warnings.warn(
                f"run {run_dir}: took over the stale lock of PID {left['pid']}, which no "
                "longer runs",
                stacklevel=3,
            )
        try:
            yield
        finally:
            if _same_file(descriptor, path):
                path.unlink(missing_ok=True)  # before the lock ends: see _acquire
    finally:
        os.close(descriptor)
