"""Which engine runs a classifier at inference: Keras, or its LiteRT file, exported once.

``senet serve`` (by default) and ``senet predict --runtime litert`` run a ``.keras``
classifier as the ``.tflite`` file :func:`senet.export.export_model` writes (its SE residual
tails fused, its parity with the Keras model checked), which answers a face in a fraction of
Keras' time on a CPU (BENCHMARKS.md, "senet serve"). The file is made on first use and kept
in senet's cache directory (:func:`cache_dir`), named by the SHA-256 of the model file and
the TensorFlow version that converted it, so a retrained model (other bytes) gets a new
file and a second start costs nothing. The model's training record goes into the file with
it (class names, input range, training data).

``keras`` runs the model itself on senet's inference path (what ``senet predict`` does by
default): no export, and the only runtime for models senet cannot export or that are not
classifiers.

Example:
    >>> model = runtime_model("run/model.keras", "litert")  # doctest: +SKIP
    >>> model.format  # doctest: +SKIP
    'tflite'
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from senet.checks import check_choice

__all__ = ["CACHE_ENV", "RUNTIMES", "cache_dir", "file_digest", "litert_file", "runtime_model"]

#: The runtimes a classifier can run in, the default of ``senet serve`` first.
RUNTIMES = ("litert", "keras")
#: Environment variable naming senet's cache directory.
CACHE_ENV = "SENET_CACHE_DIR"


def cache_dir() -> Path:
    """senet's cache directory: ``$SENET_CACHE_DIR``, else ``$XDG_CACHE_HOME/senet``, else
    ``~/.cache/senet`` (``%LOCALAPPDATA%\\senet\\cache`` on Windows)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "senet" / "cache"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "senet"


def file_digest(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def litert_file(model_path: str | os.PathLike, *, say: Callable[[str], None] | None = None) -> Path:
    """The cached, checked ``.tflite`` export of the ``.keras`` file ``model_path``.

    Made on first use with :func:`senet.export.export_model` (parity checked: a file
    beyond tolerance is not kept) and found by the file's SHA-256 after that (unopened:
    :func:`runtime_model` opens it, and makes it again when it no longer opens).

    Args:
        model_path: The ``.keras`` file (loaded again to export: its run's record, when
            it has one beside it, goes into the export).
        say: Where to report a first export (one line before, one after); default
            stderr.

    Raises:
        senet.errors.ExportError: The model cannot be exported or fails the parity check.
    """
    import tensorflow as tf

    from senet.errors import ExportError
    from senet.export import export_model

    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    key = f"{file_digest(model_path)[:32]}-tf{tf.__version__}"
    target = cache_dir() / "litert" / f"{key}.tflite"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    say(f"exporting {model_path} to LiteRT (first use; cached as {target}) ...")
    try:
        result = export_model(model_path, target, format="tflite")
    except ExportError:
        if target.is_file():  # another process made it meanwhile
            return target
        raise
    say(
        f"exported: max abs diff {result.max_abs_diff:.1e} on {result.samples} inputs, "
        f"{result.size_bytes / 1e6:.1f} MB"
    )
    return target


def runtime_model(
    model_path: str | os.PathLike,
    runtime: str,
    model: Any = None,
    *,
    say: Callable[[str], None] | None = None,
) -> Any:
    """The classifier at ``model_path`` ready to run in ``runtime`` (:data:`RUNTIMES`).

    An exported file (``.tflite``, ``.onnx``, a SavedModel) runs in its own runtime as it
    is. A ``.keras`` file: ``"keras"`` runs ``model`` (or the file loaded) on senet's
    inference path (:func:`senet.models.fused.fuse_for_inference`: SE-ResNet tails fused,
    what ``senet predict`` runs); ``"litert"`` runs its cached LiteRT export
    (:func:`litert_file`, fused alike), an :class:`senet.inference.ExportedModel`.
    """
    from senet.errors import ExportError
    from senet.inference import ExportedModel, is_exported, load_classifier, open_exported

    runtime = check_choice("runtime", runtime, RUNTIMES)
    if is_exported(model_path) or isinstance(model, ExportedModel):
        return model if model is not None else load_classifier(model_path)
    if runtime == "keras":
        from senet.models.fused import fuse_for_inference

        return fuse_for_inference(model if model is not None else load_classifier(model_path))[0]
    path = litert_file(model_path, say=say)
    try:
        return open_exported(path)
    except (ExportError, OSError):
        # a cached file that no longer opens (a disk that filled up under another
        # process): made again
        path.unlink(missing_ok=True)
        return open_exported(litert_file(model_path, say=say))
