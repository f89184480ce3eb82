"""A run directory's files: their names, which of them are senet's, the config, the final
model, metrics and history, and the run a model file belongs to (:func:`find_run`).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras

from senet._files import TEMP_PREFIX, atomic_write, atomic_write_text, read_json

CONFIG_FILE = "config.json"


STATE_FILE = "state.json"


HISTORY_FILE = "history.csv"


MODEL_FILE = "model.keras"


METRICS_FILE = "metrics.json"


CHECKPOINT_DIR = "checkpoints"


LOCK_FILE = "run.lock"


#: The files every finished run has (the curves come from training's last step); a task
#: adds its own figures (``senet.tasks.Task.report_files``: classification's confusion.png),
#: which the functions here take as ``also``.
FINAL_FILES = (MODEL_FILE, METRICS_FILE, HISTORY_FILE, "curves.png")


#: A checkpoint file name senet writes (see :func:`checkpoint_name`).
CHECKPOINT_RE = re.compile(r"epoch-(\d{4,})\.keras")


#: The files senet writes at the top of a run directory (figures come from senet.train).
_OWN_FILES = (CONFIG_FILE, STATE_FILE, *FINAL_FILES)


#: The folders TensorBoard logs go to (``RUN_DIR/logs/<split>``) and their files' prefix.
_LOG_SPLITS = ("train", "validation")


_LOG_PREFIX = "events.out.tfevents."


def make_run_dir(run_dir: Path) -> None:
    """Create ``run_dir`` and its checkpoint folder (no error if they exist)."""
    (Path(run_dir) / CHECKPOINT_DIR).mkdir(parents=True, exist_ok=True)


def holds_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` already holds a run (its config or its state)."""
    run_dir = Path(run_dir)
    return (run_dir / CONFIG_FILE).exists() or (run_dir / STATE_FILE).exists()


def is_unused(run_dir: Path) -> bool:
    """Whether a new run may start in ``run_dir`` without touching anything in it.

    True when it does not exist or holds nothing but what a run killed before its first
    write leaves: a lock file and an empty ``checkpoints/``.
    """
    run_dir = Path(run_dir)
    if not run_dir.exists():
        return not run_dir.is_symlink()  # a dangling link is not a place to write
    if not run_dir.is_dir():
        return False
    for path in run_dir.iterdir():
        if path.name == LOCK_FILE and path.is_file() and not path.is_symlink():
            continue
        is_folder = path.name == CHECKPOINT_DIR and path.is_dir() and not path.is_symlink()
        if is_folder and not any(path.iterdir()):
            continue
        return False
    return True


def _is_temporary(name: str, top: bool, also: Sequence[str] = ()) -> bool:
    """Whether ``name`` is a temporary file senet's atomic writes make (``.tmp-PID-NAME``)
    of a run file (or one of ``also``, a task's figures)."""
    match = re.fullmatch(re.escape(TEMP_PREFIX) + r"\d+-(.+)", name)
    if match is None:
        return False
    final = match.group(1)
    if top:
        return final in _OWN_FILES or final in also
    return CHECKPOINT_RE.fullmatch(final) is not None


def remove_temporary_files(run_dir: Path, also: Sequence[str] = ()) -> None:
    """Delete leftovers of writes killed half-way; nothing ever reads them.

    Only names senet's atomic writes use (``.tmp-PID-<a run file>``) are deleted. Call it
    only while holding the run's lock (:func:`lock_run`): another process's writes in
    progress have these names too.
    """
    run_dir = Path(run_dir)
    for directory, top in ((run_dir, True), (run_dir / CHECKPOINT_DIR, False)):
        if directory.is_dir() and not directory.is_symlink():
            for path in directory.glob(f"{TEMP_PREFIX}*"):
                if _is_temporary(path.name, top, also):
                    with contextlib.suppress(OSError):
                        path.unlink()


def clear_run(run_dir: Path, also: Sequence[str] = ()) -> list[str]:
    """Delete the files senet writes in ``run_dir``, to start a new run there.

    Deleted: ``state.json`` first (so a run killed half-way is not resumed from
    checkpoints that are gone), then ``checkpoints/epoch-NNNN.keras``, ``config.json``,
    ``history.csv``, ``model.keras``, ``metrics.json``, ``curves.png``, the files named in
    ``also`` (the run's task's figures), TensorBoard event files in ``logs/train`` and
    ``logs/validation`` and temporary files. Nothing else, so files senet did not write
    stay where they are. Call it holding the run's lock.

    Returns:
        The deleted paths, relative to ``run_dir``.
    """
    run_dir = Path(run_dir)
    doomed = [run_dir / STATE_FILE]
    checkpoints = run_dir / CHECKPOINT_DIR
    if checkpoints.is_dir() and not checkpoints.is_symlink():
        doomed += sorted(p for p in checkpoints.iterdir() if CHECKPOINT_RE.fullmatch(p.name))
    doomed += [run_dir / name for name in (*_OWN_FILES, *also) if name != STATE_FILE]
    for split in _LOG_SPLITS:
        logs = run_dir / "logs" / split
        if logs.is_dir() and not logs.is_symlink() and not logs.parent.is_symlink():
            doomed += sorted(logs.glob(f"{_LOG_PREFIX}*"))
    removed = []
    for path in doomed:
        if path.is_symlink() or path.is_file():
            path.unlink()
            removed.append(str(path.relative_to(run_dir)))
    remove_temporary_files(run_dir, also)
    return removed


def has_final_files(run_dir: Path, also: Sequence[str] = ()) -> bool:
    """Whether every file of a finished run (``FINAL_FILES`` and ``also``, its task's
    figures) is in ``run_dir``."""
    return all((Path(run_dir) / name).is_file() for name in (*FINAL_FILES, *also))


def read_config(run_dir: Path) -> dict[str, Any]:
    """The dict in ``run_dir/config.json``.

    Raises:
        FileNotFoundError: No ``config.json``.
        ValueError: Not JSON, or not a JSON object.
    """
    path = Path(run_dir) / CONFIG_FILE
    values = read_json(path)
    if not isinstance(values, dict):
        raise ValueError(f"{path} holds {type(values).__name__}, not an object")
    return values


def write_config(run_dir: Path, values: dict[str, Any]) -> None:
    """Write ``values`` as ``run_dir/config.json`` (atomically)."""
    atomic_write_text(Path(run_dir) / CONFIG_FILE, json.dumps(values, indent=2))


#: The files by which a directory is a model's run (its config, state or results).
_RUN_RECORDS = (CONFIG_FILE, STATE_FILE, METRICS_FILE)


def find_run(model_path: str | os.PathLike) -> Path | None:
    """The run directory a model file belongs to, or None: the one lookup.

    The directory beside the model (``RUN_DIR/model.keras``, or an export written there) or
    one level up (a checkpoint in ``RUN_DIR/checkpoints/``), the first that holds a run's
    config, state or metrics.
    """
    model_path = Path(model_path)
    for directory in (model_path.parent, model_path.parent.parent):
        if any((directory / name).is_file() for name in _RUN_RECORDS):
            return directory
    return None


def find_run_config(model_path: str | os.PathLike) -> dict[str, Any] | None:
    """The ``config.json`` of the run a model file belongs to (:func:`find_run`), or None
    (an unreadable file counts as none)."""
    run_dir = find_run(model_path)
    if run_dir is not None and (run_dir / CONFIG_FILE).is_file():
        with contextlib.suppress(OSError, ValueError):
            return read_config(run_dir)
    return None


def run_class_names(model_path: str | os.PathLike) -> list[str] | None:
    """The class names the run a model file belongs to (:func:`find_run`) was trained on,
    from its ``metrics.json``, else its ``state.json``; None when neither names them. Names
    from files come with control characters escaped (:func:`senet.errors.printable`)."""
    from senet.errors import printable

    run_dir = find_run(model_path)
    if run_dir is None:
        return None
    for name in (METRICS_FILE, STATE_FILE):
        try:
            names = read_json(run_dir / name)["class_names"]
        except (OSError, ValueError, TypeError, KeyError):
            continue
        if isinstance(names, list) and all(isinstance(item, str) for item in names):
            return [printable(name) for name in names]
    return None


def write_model(run_dir: Path, model: keras.Model) -> None:
    """Save ``model`` as ``run_dir/model.keras`` (atomically)."""
    atomic_write(Path(run_dir) / MODEL_FILE, model.save)


def save_and_discard(model: keras.Model) -> None:
    """Save ``model`` into a new temporary folder and delete it: a worker that is not the
    chief of a multi-worker run does this wherever the chief saves.

    TensorFlow's multi-worker guide asks every worker to save: reading a variable that is
    synced on read (a metric's, for example) is an all-reduce, which waits for every worker.
    """
    with tempfile.TemporaryDirectory(prefix="senet-worker-") as folder:
        model.save(Path(folder) / MODEL_FILE)


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> None:
    """Write ``metrics`` as ``run_dir/metrics.json`` (atomically)."""
    atomic_write_text(Path(run_dir) / METRICS_FILE, json.dumps(metrics, indent=2))


def read_metrics(run_dir: Path) -> dict[str, Any]:
    """The dict in ``run_dir/metrics.json``."""
    return read_json(Path(run_dir) / METRICS_FILE)


def history_columns(keys) -> list[str]:
    """history.csv's column order, whatever the task logs: ``epoch``, ``loss`` and the
    training metrics (sorted), ``val_loss`` and the validation metrics, ``learning_rate``,
    ``seconds`` (classification: epoch, loss, accuracy, val_loss, val_accuracy, ...).

    >>> history_columns(["val_r2", "seconds", "r2", "loss", "epoch", "val_loss"])
    ['epoch', 'loss', 'r2', 'val_loss', 'val_r2', 'seconds']
    """
    keys = set(keys)
    last = [key for key in ("learning_rate", "seconds") if key in keys]
    validation = sorted(key for key in keys if key.startswith("val_") and key != "val_loss")
    training = sorted(keys - {"epoch", "loss", "val_loss", *last, *validation})
    ordered = [*(["epoch"] if "epoch" in keys else []), *(["loss"] if "loss" in keys else [])]
    ordered += [*training, *(["val_loss"] if "val_loss" in keys else []), *validation, *last]
    return ordered


def write_history_csv(path: Path, rows: list[dict[str, float]]) -> None:
    """One row per epoch, in :func:`history_columns`' order."""
    keys = history_columns({key for row in rows for key in row})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def read_history_csv(path: Path) -> list[dict[str, float]]:
    """The rows :func:`write_history_csv` wrote, every value as a float."""
    with open(path, newline="", encoding="utf-8") as file:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(file)]
