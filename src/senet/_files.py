"""Atomic file writes: a reader (or a run resumed after a crash) sees the old file or the
new one, never a part of it.

The one mechanism behind every file senet writes that something later reads back: run
directories (config, state, history, metrics, checkpoints), reports and index pages.
Standard library only, so any module may use it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["TEMP_PREFIX", "atomic_write", "atomic_write_text"]

#: Name prefix of the temporary files; a crash can leave one behind, to be removed on resume.
TEMP_PREFIX = ".tmp-"


def _fsync_directory(directory: Path) -> None:
    # makes the rename itself durable; not possible (nor needed) on Windows
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


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
    path = Path(path)
    temporary = path.with_name(f"{TEMP_PREFIX}{os.getpid()}-{path.name}")
    try:
        write(temporary)
        with open(temporary, "rb") as file:
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    _fsync_directory(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) so ``path`` holds either its old or its new content."""
    atomic_write(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))
