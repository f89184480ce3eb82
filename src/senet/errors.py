"""Error messages as one short line: what the ``senet`` command prints for an exception.

Library exceptions sometimes carry a tensor or array in their message (TensorFlow's
``Attempt to convert a value (PerReplica:{ 0: <tf.Tensor: ... numpy=array([[[[0.65...``
prints a whole batch of pixels). :func:`one_line` shortens every such repr to its name and
joins the message into one line of bounded length; the full text stays in the exception
(the traceback ``--debug`` shows). Standard library only, so any module may use it.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["MESSAGE_LIMIT", "first_line", "one_line", "printable"]

#: The longest message :func:`one_line` returns (characters).
#: Long enough for senet's own messages that name two full paths (a run directory and a
#: file in it), short enough that no tensor or traceback fits.
MESSAGE_LIMIT = 600

# the start of an array's or tensor's repr: NumPy `array([`, JAX `Array([`, torch
# `tensor([`, TensorFlow's `PerReplica:{`/`Mirrored:{` and `<tf.Tensor: ...>`
_REPR_START = re.compile(
    r"\b(?:array|Array|tensor)\((?=\s*\[)|\b(?:PerReplica|Mirrored):(?=\{)|<tf\.Tensor\b"
)
_CLOSING = {"(": ")", "[": "]", "{": "}", "<": ">"}


def _end_of_repr(text: str, start: int) -> int:
    """The index after the bracket that closes the first one at or after ``start``."""
    position = start
    while position < len(text) and text[position] not in _CLOSING:
        position += 1
    stack = []
    for index in range(position, len(text)):
        char = text[index]
        if char in "([{" or (char == "<" and not stack):
            stack.append(_CLOSING[char])
        elif stack and char == stack[-1]:
            stack.pop()
            if not stack:
                return index + 1
    return len(text)  # never closed: the repr runs to the end


def _collapse_reprs(text: str) -> str:
    parts, position = [], 0
    while match := _REPR_START.search(text, position):
        end = _end_of_repr(text, match.start())
        name = match.group(0).rstrip("(:").lstrip("<")
        parts.append(text[position : match.start()])
        parts.append(f"<{name} ...>")
        position = end
    parts.append(text[position:])
    return "".join(parts)


def printable(text: object) -> str:
    """``str(text)`` safe to print on a terminal: control and format characters escaped.

    Names read from files (class names, file names, records in a model) may hold terminal
    escape sequences that clear the screen or set the window title, or bidirectional
    overrides that show text in another order than it is. Each such character (Unicode
    categories Cc and Cf: C0 and C1 controls, DEL, newlines and tabs included, and the
    invisible format characters) becomes its Python escape (``\\x1b``, ``\\u202e``); all
    else, accents and other scripts included, stays as it is.

    Example:
        >>> printable("happy\\x1b[2J\\x1b]0;owned\\x07")
        'happy\\\\x1b[2J\\\\x1b]0;owned\\\\x07'
        >>> printable("colère")
        'colère'
    """
    text = str(text)
    if text.isprintable():
        return text
    return "".join(
        char.encode("unicode_escape").decode("ascii")
        if unicodedata.category(char) in ("Cc", "Cf")
        else char
        for char in text
    )


def one_line(error: BaseException | str, limit: int = MESSAGE_LIMIT) -> str:
    """``error``'s message in one line of at most ``limit`` characters, arrays left out.

    Every array or tensor repr becomes ``<array ...>`` (``<PerReplica ...>``,
    ``<tf.Tensor ...>``), whitespace runs (newlines included) become one space, any other
    control or format character is escaped (:func:`printable`), and a message still longer
    than ``limit`` is cut with ``...``. An empty message gives the exception's type name.

    Example:
        >>> import numpy as np
        >>> one_line(ValueError(f"bad value {np.zeros((40, 40))!r} in x"))
        'bad value <array ...> in x'
    """
    text = str(error).strip()
    if not text:
        return type(error).__name__ if isinstance(error, BaseException) else ""
    text = printable(" ".join(_collapse_reprs(text).split()))
    if len(text) > limit:
        text = text[: limit - 3].rstrip() + "..."
    return text


def first_line(error: BaseException | str, limit: int = 300) -> str:
    """The first non-empty line of ``error``'s message, whitespace runs as one space, control
    characters escaped and cut at ``limit`` characters; the type name when it has none (a
    library's multi-line error quoted inside one of senet's).

    Example:
        >>> first_line(ValueError("bad header\n  at byte 12"))
        'bad header'
    """
    for line in str(error).splitlines():
        if line.strip():
            text = printable(" ".join(line.split()))
            return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."
    return type(error).__name__ if isinstance(error, BaseException) else ""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt, so that every
    ``finally`` runs on the way out: locks released, temporary files removed, child
    processes stopped. The CLI exits with status 143 (128 + 15)."""


def raise_on_sigterm():
    """From now on SIGTERM raises :class:`Terminated` in this process's main thread
    (no-op elsewhere, and where signals cannot be set). Returns the handler it replaced
    (None if none was replaced), for ``signal.signal`` to put back."""
    import contextlib
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise Terminated("terminated (SIGTERM)")

    # ValueError: not the main interpreter; OSError: no such signal here
    with contextlib.suppress(ValueError, OSError):
        return signal.signal(signal.SIGTERM, handler)
    return None


# --------------------------------------------------------------------------- senet's errors
# Every error senet raises on purpose, in one place. Bad input is a ValueError (the CLI:
# one line, exit status 2); a run that stopped is a RuntimeError (the CLI: one line, exit
# status 1, see senet.cli.EXIT_STATUS). The modules that raise them re-export them
# (``from senet.runs import RunInUse`` keeps working).


class SenetError(Exception):
    """The base of every error senet raises on purpose."""


class DataError(SenetError, ValueError):
    """Bad or missing input data: the message names the file and row (1-based) or path."""


class ModelLoadError(SenetError, ValueError):
    """A model file that exists but cannot be loaded: one line naming the file and the fault.

    The error Keras (or zipfile, h5py, json) raised is chained as ``__cause__``.
    """


class WeightMismatchError(SenetError, ValueError):
    """The file's tensors do not fit the network: missing, unexpected or wrongly shaped ones."""


class RunError(SenetError, ValueError):
    """A run directory that cannot be used as asked; nothing in it was changed."""


class RunInUse(RunError):
    """Another process holds the run directory's lock."""


class ResumeConflict(SenetError, ValueError):
    """A resume was asked with settings the run cannot take; nothing was changed.

    Attributes:
        run_dir: The run directory.
        conflicts: ``{field: (the run's value, the value asked)}``.
        reason: Why, in a few words.
    """

    def __init__(self, run_dir, conflicts: dict, reason: str):
        from pathlib import Path

        asked = ", ".join(
            f"{name}={new!r} (the run has {old!r})" for name, (old, new) in conflicts.items()
        )
        super().__init__(f"cannot resume {run_dir} with {asked}: {reason}")
        self.run_dir = Path(run_dir)
        self.conflicts = dict(conflicts)
        self.reason = reason


class ExportError(SenetError, ValueError):
    """A model that cannot be exported, or a file that cannot be read as an exported model."""


class MissingDependencyError(ExportError, ImportError):
    """An optional export dependency is not installed; the message names the extra."""


class ParityError(ExportError):
    """The exported file does not compute what the Keras model computes; ``result`` (a
    :class:`senet.export.ExportResult`) says how."""

    def __init__(self, message: str, result):
        super().__init__(message)
        self.result = result


class TrainingDiverged(SenetError, RuntimeError):
    """The loss became NaN or infinite; the run directory keeps its last good checkpoint."""

    def __init__(self, message: str, *, epoch: int, checkpoint=None):
        super().__init__(message)
        self.epoch = epoch
        self.checkpoint = checkpoint


class ClusterError(SenetError, RuntimeError):
    """A multi-worker run stopped because another worker (or the chief) could not go on."""


class WorkerFailed(SenetError, RuntimeError):
    """A worker of a launched run failed (or the run timed out); every worker was stopped.

    Attributes:
        index: The worker that failed first (None for a timeout).
        status: Its exit status (negative: killed by that signal).
    """

    def __init__(self, message: str, *, index: int | None = None, status: int | None = None):
        super().__init__(message)
        self.index = index
        self.status = status
