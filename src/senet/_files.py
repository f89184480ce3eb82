"""Atomic file writes: a reader (or a run resumed after a crash) sees the old file or the
new one, never a part of it; and the check of an input file, with a message that says what
is wrong with it (:func:`check_input_file`).

The one mechanism behind every file senet writes that something later reads back: run
directories (config, state, history, metrics, checkpoints), reports and index pages.
Standard library only, so any module may use it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = [
    "DISK_FULL",
    "TEMP_PREFIX",
    "atomic_write",
    "atomic_write_text",
    "check_input_file",
    "check_json_size",
    "disk_full",
    "pid_alive",
    "read_json",
    "remove_stale_temporaries",
    "save_figure",
    "writing",
]

#: Name prefix of the temporary files; a crash can leave one behind, to be removed on resume.
TEMP_PREFIX = ".tmp-"
#: The errors of a full disk: no space, a quota, a file-size limit.
DISK_FULL = frozenset(
    code for code in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EFBIG) if code
)


def _fsync_directory(directory: Path) -> None:
    # makes the rename itself durable; not possible (nor needed) on Windows
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def disk_full(code: int, message: str) -> OSError:
    """An ``OSError`` with ``errno`` ``code`` whose text is ``message`` alone (no
    ``[Errno N]`` before it, for the CLI's one line)."""
    error = OSError(message)
    error.errno = code
    return error


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> None:
    """Call ``write(temporary)`` and move the finished file over ``path``.

    The temporary file sits in the same directory (so the rename is atomic) and keeps
    ``path``'s name at its end (so writers that check the extension, like
    ``keras.Model.save``, accept it); it is fsynced before the rename, and the directory
    after it. On any error the temporary file is removed and ``path`` is left as it was.

    Args:
        path: The file to write.
        write: Writes the complete content to the path it is given.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "note.txt"
        >>> atomic_write(target, lambda temporary: temporary.write_text("done"))
        >>> target.read_text()
        'done'
    """
    with writing(path) as temporary:
        write(temporary)


@contextlib.contextmanager
def writing(path: str | os.PathLike) -> Iterator[Path]:
    """:func:`atomic_write` for writers that cannot be one call: yields the temporary path;
    when the block ends without an error, the file there is fsynced and moved over
    ``path``; on an error (or a generator closed early) it is removed, ``path`` untouched.

    A ``path`` that is a symbolic link to a file keeps its link: the file it names is
    replaced. A ``path`` that is not a regular file (a terminal, a pipe, ``/dev/stdout``)
    is yielded itself and written through, never replaced; a directory is an
    ``IsADirectoryError``.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "log.txt"
        >>> with writing(target) as temporary:
        ...     _ = temporary.write_text("one")
        >>> target.read_text()
        'one'
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode  # follows links: what the name leads to
    except (FileNotFoundError, NotADirectoryError):
        mode = None
    if mode is not None and stat.S_ISDIR(mode):
        raise IsADirectoryError(f"{path} is a directory, not a file to write")
    if mode is not None and not stat.S_ISREG(mode):
        # a terminal, pipe or device (/dev/stdout, /proc/self/fd/1): written through, never
        # replaced by a regular file (a rename there would replace the device node or link)
        yield path
        return
    if path.is_symlink():  # a link to a file: the file it names is replaced, the link kept
        path = Path(os.path.realpath(path))
    temporary = path.with_name(f"{TEMP_PREFIX}{os.getpid()}-{path.name}")
    try:
        yield temporary
        with open(temporary, "rb") as file:
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as error:
        if error.errno not in DISK_FULL or str(path) in str(error):
            raise
        # writers (Keras' save, h5py) often say "No space left on device" and not where
        raise disk_full(error.errno, f"cannot write {path}: {os.strerror(error.errno)}") from error
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    _fsync_directory(path.parent)


def save_figure(figure, path: str | os.PathLike, **options) -> None:
    """``figure.savefig(path, **options)`` through :func:`atomic_write` (the format from
    ``path``'s suffix), its folder made first: a full disk leaves no half-written picture."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda temporary: figure.savefig(temporary, **options))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) so ``path`` holds either its old or its new content."""
    atomic_write(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def check_input_file(path: str | os.PathLike, *, wanted: str = "an image or video file") -> Path:
    """``path`` as a :class:`~pathlib.Path` when it names a regular file to read, else one
    line that says what it is instead of ``wanted`` (``"a .keras model file"``, ...).

    A URL (``https://...``; senet reads no network), a directory, something that is not a
    regular file (a FIFO, a device, a socket: reading one could block or never end) and a
    missing path each get their own message, naming the path as given.

    Raises:
        FileNotFoundError: The path does not exist, or is a URL.
        IsADirectoryError: It is a directory.
        ValueError: It is not a regular file.
    """
    from senet.errors import printable

    text = os.fspath(path)
    shown = printable(text)
    if isinstance(text, str) and _URL.match(text):
        raise FileNotFoundError(
            f"{shown} is a URL: senet reads local files only; download it and give the file"
        )
    try:
        mode = os.stat(text).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"no such file: {shown}") from None
    except OSError as error:
        raise OSError(f"cannot read {shown}: {error.strerror}") from None
    if stat.S_ISDIR(mode):
        message = f"{shown} is a directory, not {wanted}"
        if wanted == "an image or video file":
            message += f"; give the files in it (e.g. {shown.rstrip('/') or '/'}/*.jpg)"
        raise IsADirectoryError(message)
    if not stat.S_ISREG(mode):
        raise ValueError(
            f"{shown} is not a regular file (a FIFO, device or socket); senet needs {wanted}"
        )
    return Path(text)


#: The environment variable that caps the bytes of a JSON file senet reads (a run's
#: config/state/metrics, a model archive's config.json), and the cap without it: 64 MiB,
#: hundreds of times what any senet or Keras model needs.
MAX_JSON_BYTES_ENV = "SENET_MAX_JSON_BYTES"
DEFAULT_MAX_JSON_BYTES = 64 * 2**20


def json_cap() -> int:
    """The JSON size cap in bytes (``SENET_MAX_JSON_BYTES``, else 64 MiB)."""
    from senet.checks import env_cap

    return env_cap(None, "max_bytes", MAX_JSON_BYTES_ENV, DEFAULT_MAX_JSON_BYTES)


def check_json_size(size: int, where: str) -> None:
    """Refuse, in one line naming ``where``, JSON of ``size`` bytes over :func:`json_cap`."""
    cap = json_cap()
    if size > cap:
        raise ValueError(
            f"{where} is {size} bytes, over the {cap}-byte cap for JSON files "
            f"(set {MAX_JSON_BYTES_ENV} to raise it for a file you trust)"
        )


def read_json(path: str | os.PathLike):
    """The JSON in ``path``, its size checked against :func:`json_cap` before it is read.

    Raises:
        FileNotFoundError: No such file (any ``OSError`` reading it).
        ValueError: Over the cap, not UTF-8, or not JSON (``json.JSONDecodeError``); one
            line naming the file.
    """
    import json

    path = Path(path)
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        check_json_size(size, str(path))
        data = file.read(size + 1)  # one byte more: a file that grows meanwhile is caught
    check_json_size(len(data), str(path))  # a file that grew since
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not UTF-8 text ({error.reason})") from None
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path} is not valid JSON ({error.msg}: line {error.lineno} column {error.colno})"
        ) from None
    except RecursionError:
        raise ValueError(f"{path} nests JSON too deeply to read") from None


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (one owned by another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by another user
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove what writers of ``path`` killed half-way left beside it: ``.tmp-PID-NAME``
    (and ``.tmp-PID-old-NAME``) files or folders whose process ``PID`` is gone. Another
    live process's temporaries are left alone. Returns what was removed."""
    import shutil

    path = Path(path)
    pattern = re.compile(re.escape(TEMP_PREFIX) + r"(\d+)-(?:old-)?" + re.escape(path.name))
    removed = []
    with contextlib.suppress(OSError):
        for candidate in path.parent.glob(f"{TEMP_PREFIX}*"):
            match = pattern.fullmatch(candidate.name)
            if match is None or pid_alive(int(match.group(1))):
                continue
            with contextlib.suppress(OSError):
                if candidate.is_dir() and not candidate.is_symlink():
                    shutil.rmtree(candidate)
                else:
                    candidate.unlink()
                removed.append(candidate)
    return removed
