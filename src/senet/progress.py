"""The one progress reporter: a line per step of long work (demo, ablate, bench), or none.

Every long job takes ``progress``: ``True`` prints its lines, ``False`` (the CLI's
``--quiet``) prints none, and a callable receives each line instead (a GUI, a log, a test).
:class:`Progress` is that choice made once, optionally with the job's name and the seconds
since it started in front of each line (``[demo   12.3s] training``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """Report a line of progress, or nothing.

    Args:
        progress: ``True`` to print, ``False``/``None`` for silence, or a callable that
            takes each line (a :class:`Progress` is taken as it is).
        label: With it, each printed line starts ``[label  seconds]``, the seconds since
            ``started``.
        stream: Where lines are printed (default standard error; the demo's go to standard
            output).
        started: ``time.time()`` the seconds count from (default now); worker processes get
            their parent's, so their lines count from the same start.
    """

    def __init__(
        self,
        progress: bool | Callable[[str], None] | Progress | None = True,
        *,
        label: str | None = None,
        stream: TextIO | None = None,
        started: float | None = None,
    ):
        if isinstance(progress, Progress):
            self.__dict__.update(progress.__dict__)
            return
        self._callback = progress if callable(progress) else None
        self.verbose = bool(progress)
        self.label = label
        self.stream = stream
        self.started = time.time() if started is None else started

    def __call__(self, message: str) -> None:
        if self._callback is not None:
            self._callback(message)
        elif self.verbose:
            if self.label is not None:
                message = f"[{self.label} {self.elapsed():6.1f}s] {message}"
            print(message, file=self.stream or sys.stderr, flush=True)

    def __bool__(self) -> bool:
        return self.verbose

    def elapsed(self) -> float:
        """Seconds since ``started``."""
        return time.time() - self.started
