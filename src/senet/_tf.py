"""Importing TensorFlow without the notices it writes to fd 2 while it loads."""

from __future__ import annotations

import os
import sys

__all__ = ["import_tensorflow_quietly"]


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
