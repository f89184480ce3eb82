"""A run directory: what :func:`senet.train.train` writes, reads back and recovers from.

Layout::

    RUN_DIR/config.json          the run's settings (a TrainConfig as a dict)
    RUN_DIR/state.json           last finished epoch, history rows, the checkpoints kept
    RUN_DIR/checkpoints/         epoch-0001.keras, epoch-0002.keras, ... (the last few kept)
    RUN_DIR/history.csv          one row per finished epoch
    RUN_DIR/model.keras          the final model (with its optimizer state)
    RUN_DIR/metrics.json         the final test metrics
    RUN_DIR/run.lock             while a process uses the run: its kernel lock (flock),
                                 holding its PID and host

Every file is written atomically (:mod:`senet._files`): a run killed at any moment leaves
the old file or the new one, never half of either, and at worst a temporary file that
:func:`remove_temporary_files` deletes on resume. A checkpoint is written before
``state.json`` names it, and deleted only after ``state.json`` no longer does, so the state
always names readable files. ``.keras`` files do not hold the model's random seed
generators (dropout); their states travel in ``state.json`` beside each checkpoint.

What a run trusts: nothing it did not write itself, and only by name. Every checkpoint a
run's own files name must be ``checkpoints/epoch-NNNN.keras`` inside the run
(:func:`checkpoint_path`); anything else is a :class:`RunError` before a file is touched. An
unreadable ``state.json`` is not a reason to start over: :func:`resume_point` recovers from
the newest checkpoint that loads, or stops. One process at a time uses a run
(:func:`lock_run`), and only files with the names senet writes are ever deleted
(:func:`remove_temporary_files`, :func:`clear_run`).

This module knows files and Keras models, not training settings: it imports nothing from
:mod:`senet.train`.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import re
import socket
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from senet._files import TEMP_PREFIX, atomic_write, atomic_write_text, read_json
from senet.errors import RunError, RunInUse
from senet.layers import load_model

__all__ = [
    "CHECKPOINT_DIR",
    "CONFIG_FILE",
    "FINAL_FILES",
    "HISTORY_FILE",
    "history_columns",
    "LOCK_FILE",
    "METRICS_FILE",
    "MODEL_FILE",
    "STATE_FILE",
    "Restored",
    "RunCheckpoint",
    "RunError",
    "RunInUse",
    "check_state",
    "check_unlocked",
    "checkpoint_name",
    "checkpoint_path",
    "clear_run",
    "find_run",
    "find_run_config",
    "get_seed_states",
    "has_final_files",
    "holds_run",
    "inspect_state",
    "is_unused",
    "lock_run",
    "make_run_dir",
    "read_config",
    "read_history_csv",
    "read_metrics",
    "read_state",
    "recover",
    "remove_temporary_files",
    "restore",
    "run_class_names",
    "resume_point",
    "set_seed_states",
    "save_and_discard",
    "write_config",
    "write_history_csv",
    "write_metrics",
    "write_model",
    "write_state",
]

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


# --------------------------------------------------------------------------- directory

#: A checkpoint file name senet writes (see :func:`checkpoint_name`).
_CHECKPOINT_RE = re.compile(r"epoch-(\d{4,})\.keras")
#: The files senet writes at the top of a run directory (figures come from senet.train).
_OWN_FILES = (CONFIG_FILE, STATE_FILE, HISTORY_FILE, MODEL_FILE, METRICS_FILE)
_OWN_FILES += tuple(name for name in FINAL_FILES if name not in _OWN_FILES)
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
    return _CHECKPOINT_RE.fullmatch(final) is not None


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
        doomed += sorted(p for p in checkpoints.iterdir() if _CHECKPOINT_RE.fullmatch(p.name))
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


# --------------------------------------------------------------------------- config


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


# --------------------------------------------------------------------------- results


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


# --------------------------------------------------------------------------- state


def checkpoint_name(epoch: int) -> str:
    """The file name of the checkpoint after ``epoch`` (1-based): ``epoch-0001.keras``."""
    return f"epoch-{epoch:04d}.keras"


def _checkpoint_epoch(name: Any) -> int | None:
    """The epoch in a checkpoint name senet writes (exactly ``checkpoint_name(epoch)``)."""
    match = _CHECKPOINT_RE.fullmatch(name) if isinstance(name, str) else None
    if match is None or checkpoint_name(int(match.group(1))) != name:
        return None
    return int(match.group(1))


def checkpoint_path(run_dir: Path, name: Any, *, source: str | None = None) -> Path:
    """``run_dir/checkpoints/name``, for a ``name`` read from a run's own files.

    ``name`` must be a name senet writes (``epoch-0003.keras``: no folder, no ``..``) and
    the path must resolve inside ``run_dir/checkpoints/`` (a symlink to elsewhere does not).

    Args:
        run_dir: The run directory.
        name: The name as read (any JSON value).
        source: Where the name was read, for the message (default ``state.json``).

    Raises:
        RunError: Anything else; the message names the file and the value.
    """
    run_dir = Path(run_dir)
    folder = run_dir / CHECKPOINT_DIR
    source = source or str(run_dir / STATE_FILE)
    ok = _checkpoint_epoch(name) is not None
    if ok:
        path = folder / name
        with contextlib.suppress(OSError, RuntimeError):  # RuntimeError: a symlink loop
            inside = folder.resolve() == run_dir.resolve() / CHECKPOINT_DIR
            ok = inside and path.resolve().parent == folder.resolve()
    if not ok:
        raise RunError(
            f"{source} names {name!r}, which is not a checkpoint senet writes "
            f"({CHECKPOINT_DIR}/epoch-NNNN.keras inside {run_dir}); nothing was changed"
        )
    return path


def inspect_state(run_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """``(state, None)`` for a well-formed ``state.json``, else ``(None, what is wrong)``.

    What is wrong is None for a missing file, else "unreadable (...)" or "malformed (...)".
    Well-formed: a JSON object whose ``checkpoints`` is a list of objects, ``history`` a
    list of objects with a numeric ``epoch`` and ``class_names`` a list of strings. The
    checkpoint names are not checked here (:func:`check_state` does).
    """
    path = Path(run_dir) / STATE_FILE
    try:
        state = read_json(path)
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as error:
        return None, f"unreadable ({' '.join(str(error).split())})"
    problem = None
    if not isinstance(state, dict) or not isinstance(state.get("checkpoints"), list):
        problem = "no list of checkpoints"
    elif not all(isinstance(entry, dict) for entry in state["checkpoints"]):
        problem = "a checkpoint entry is not an object"
    elif not isinstance(state.get("history", []), list) or not all(
        isinstance(row, dict) and isinstance(row.get("epoch"), (int, float))
        for row in state.get("history", [])
    ):
        problem = "history rows without epochs"
    elif not isinstance(state.get("class_names", []), list) or not all(
        isinstance(name, str) for name in state.get("class_names", [])
    ):
        problem = "class_names is not a list of names"
    if problem is not None:
        return None, f"malformed ({problem})"
    return state, None


def read_state(run_dir: Path) -> dict[str, Any] | None:
    """``run_dir/state.json``, or None when it is missing, unreadable or malformed (warns)."""
    path = Path(run_dir) / STATE_FILE
    state, problem = inspect_state(run_dir)
    if problem is not None:
        what = "unreadable" if problem.startswith("unreadable") else "malformed"
        warnings.warn(f"Ignoring {what} {path}: {problem}", stacklevel=3)
    return state


def check_state(run_dir: Path, state: dict[str, Any]) -> None:
    """Raise :class:`RunError` unless every checkpoint entry of ``state`` is one senet wrote.

    Each entry's ``file`` must pass :func:`checkpoint_path` and its ``epoch`` must be the
    one in that name, so nothing outside ``run_dir/checkpoints/`` is ever loaded or deleted
    because a (crafted or hand-edited) state named it.
    """
    source = str(Path(run_dir) / STATE_FILE)
    for entry in state["checkpoints"]:
        name = entry.get("file")
        checkpoint_path(run_dir, name, source=source)
        epoch = entry.get("epoch")
        if (
            isinstance(epoch, bool)
            or not isinstance(epoch, int)
            or epoch != _checkpoint_epoch(name)
        ):
            raise RunError(
                f"{source} gives epoch {epoch!r} for {name!r}, which holds epoch "
                f"{_checkpoint_epoch(name)}; nothing was changed"
            )


def write_state(
    run_dir: Path,
    rows: list[dict[str, float]],
    entries: list[dict[str, Any]],
    class_names: Sequence[str],
) -> None:
    """Write ``state.json``: finished epochs, history rows and the checkpoints kept.

    Each entry of ``entries`` is ``{"epoch", "file", "rng"}`` (``rng``: the seed states).
    """
    state = {
        "epochs_done": rows[-1]["epoch"] if rows else 0,
        "checkpoint": entries[-1]["file"] if entries else None,
        "checkpoints": entries,
        "class_names": list(class_names),
        "history": rows,
    }
    atomic_write_text(Path(run_dir) / STATE_FILE, json.dumps(state, indent=1))


# --------------------------------------------------------------------------- seed states


def _seed_state_variables(model: keras.Model) -> list:
    """The model's random seed generator states (dropout): ``.keras`` files do not save them."""
    weights = {id(variable) for variable in model.weights}
    return [variable for variable in model.variables if id(variable) not in weights]


def get_seed_states(model: keras.Model) -> list[list[int]]:
    """The values of the model's seed generator states, in model order (JSON-ready)."""
    # in model order; variable paths are no key (they carry global name counters)
    return [
        np.asarray(keras.ops.convert_to_numpy(variable)).tolist()
        for variable in _seed_state_variables(model)
    ]


def set_seed_states(model: keras.Model, states: list[list[int]]) -> None:
    """Restore what :func:`get_seed_states` returned (warns and skips on a count mismatch)."""
    variables = _seed_state_variables(model)
    if len(variables) != len(states):
        warnings.warn(
            f"The checkpoint holds {len(states)} random seed states, the model has "
            f"{len(variables)}; dropout masks after the resume will differ from those of an "
            "uninterrupted run.",
            stacklevel=3,
        )
        return
    for variable, value in zip(variables, states, strict=True):
        dtype = keras.backend.standardize_dtype(variable.dtype)
        variable.assign(np.asarray(value, dtype=dtype))


# --------------------------------------------------------------------------- resume


@dataclass
class Restored:
    """A run restored from its newest readable checkpoint.

    Attributes:
        model: The checkpoint's model (optimizer state and seed states included).
        epochs_done: The epoch the checkpoint was written after.
        rows: The history rows up to that epoch.
        entries: The checkpoint entries up to that epoch (for ``state.json``).
        class_names: The class names the run was trained on (None when unknown).
    """

    model: keras.Model
    epochs_done: int
    rows: list[dict[str, float]]
    entries: list[dict[str, Any]]
    class_names: list[str] | None = None


def _load_checkpoint(path: Path) -> keras.Model | str:
    """The model in ``path``, or why it does not load (one line)."""
    try:
        return load_model(path)
    except Exception as error:  # noqa: BLE001 - any unreadable file means: try an older one
        return " ".join(str(error).split()) or type(error).__name__


def restore(run_dir: Path, state: dict[str, Any] | None) -> Restored | None:
    """Load the newest readable checkpoint ``state`` names; None if there is none.

    Every entry is checked first (:func:`check_state`: a name that is not a checkpoint
    senet writes raises :class:`RunError`). An unreadable checkpoint (cut short, corrupt)
    is skipped with a warning for the next older one; history and checkpoint entries after
    the one loaded are dropped.
    """
    if state is None:
        return None
    run_dir = Path(run_dir)
    check_state(run_dir, state)
    for entry in sorted(state["checkpoints"], key=lambda e: e["epoch"], reverse=True):
        path = checkpoint_path(run_dir, entry["file"])
        model = _load_checkpoint(path)
        if isinstance(model, str):
            warnings.warn(f"Skipping unreadable checkpoint {path}: {model}", stacklevel=3)
            continue
        set_seed_states(model, entry.get("rng", []))
        epochs_done = entry["epoch"]
        return Restored(
            model=model,
            epochs_done=epochs_done,
            rows=[row for row in state.get("history", []) if row["epoch"] <= epochs_done],
            entries=[e for e in state["checkpoints"] if e["epoch"] <= epochs_done],
            class_names=list(state["class_names"]) if "class_names" in state else None,
        )
    return None


def _history_up_to(run_dir: Path, epoch: int) -> list[dict[str, float]] | None:
    """``history.csv``'s rows for epochs 1..``epoch`` (exactly those), or None."""
    try:
        rows = read_history_csv(Path(run_dir) / HISTORY_FILE)
    except (OSError, ValueError, TypeError, csv.Error):
        return None
    rows = [{**row, "epoch": int(row["epoch"])} for row in rows if row.get("epoch", 0) <= epoch]
    if [row["epoch"] for row in rows] != list(range(1, epoch + 1)):
        return None
    return rows


def recover(run_dir: Path, *, skip: Sequence[str] = ()) -> Restored | None:
    """The newest checkpoint in ``run_dir/checkpoints/`` that loads, without ``state.json``.

    Only files with the names senet writes are tried (newest epoch first, ``skip`` left
    out), and only those whose epochs ``history.csv`` covers row by row, so the recovered
    history is the one the checkpoint was trained with. The seed states of dropout were in
    ``state.json``: they start afresh. Entries for the older checkpoints on disk are kept,
    so they are deleted only once newer ones replace them.

    Returns:
        The restored run, or None when no checkpoint qualifies.
    """
    run_dir = Path(run_dir)
    folder = run_dir / CHECKPOINT_DIR
    if not folder.is_dir() or folder.is_symlink():
        return None
    found = {}
    for path in folder.iterdir():
        epoch = _checkpoint_epoch(path.name)
        if epoch is not None:
            with contextlib.suppress(RunError):
                checkpoint_path(run_dir, path.name, source=str(folder))
                found[epoch] = path.name
    for epoch in sorted(found, reverse=True):
        if found[epoch] in skip:
            continue
        rows = _history_up_to(run_dir, epoch)
        if rows is None:
            continue
        model = _load_checkpoint(folder / found[epoch])
        if isinstance(model, str):
            continue
        entries = [{"epoch": e, "file": found[e], "rng": []} for e in sorted(found) if e <= epoch]
        return Restored(model=model, epochs_done=epoch, rows=rows, entries=entries)
    return None


def _has_checkpoint_files(run_dir: Path) -> bool:
    folder = Path(run_dir) / CHECKPOINT_DIR
    return folder.is_dir() and any(_checkpoint_epoch(p.name) for p in folder.iterdir())


def resume_point(run_dir: Path) -> Restored | None:
    """Where a resumed run continues: its newest good checkpoint, or None for epoch 0.

    With a well-formed ``state.json``: the newest checkpoint it names that loads
    (:func:`restore`; a name that is not senet's raises :class:`RunError`). Without one
    (unreadable, malformed, missing) or when none of its checkpoints loads: the newest
    checkpoint on disk that loads and that ``history.csv`` covers (:func:`recover`),
    announced by one warning. None only when there is no state and no checkpoint at all
    (a run killed before its first epoch ended).

    Raises:
        RunError: A checkpoint name that is not senet's, or checkpoints of which none can
            be recovered; nothing in the run was changed.
    """
    run_dir = Path(run_dir)
    path = run_dir / STATE_FILE
    state, problem = inspect_state(run_dir)
    tried: list[str] = []
    if state is not None:
        restored = restore(run_dir, state)
        if restored is not None:
            return restored
        tried = [entry["file"] for entry in state["checkpoints"]]
        problem = "naming no checkpoint that loads"
    elif problem is None and not _has_checkpoint_files(run_dir):
        return None  # killed before its first epoch ended: start at epoch 0
    problem = problem or "missing"
    restored = recover(run_dir, skip=tried)
    if restored is None:
        raise RunError(
            f"cannot resume {run_dir}: {path} is {problem} and no checkpoint in "
            f"{run_dir / CHECKPOINT_DIR} loads with its rows in {HISTORY_FILE}; nothing was "
            "changed (start the run afresh with overwrite=True, `--overwrite`)"
        )
    warnings.warn(
        f"{path} is {problem}: recovered from "
        f"{run_dir / CHECKPOINT_DIR / restored.entries[-1]['file']} (epoch "
        f"{restored.epochs_done}) and {HISTORY_FILE}; dropout's random state starts afresh",
        stacklevel=2,
    )
    return restored


# --------------------------------------------------------------------------- lock


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


class RunCheckpoint(keras.callbacks.Callback):
    """Saves the model at each epoch end (atomically), then records it in ``state.json``.

    Appends each finished epoch's row to ``rows`` and keeps the newest ``keep`` checkpoints.
    Stops training on a non-finite loss and then writes nothing for that epoch
    (``diverged`` holds ``(epoch, batch or None)``, 0-based).

    Args:
        run_dir: The run directory.
        rows: History rows so far (extended in place).
        entries: Checkpoint entries so far (updated in place).
        keep: How many checkpoints to keep (at least 1).
        class_names: Written into ``state.json``.
        write: False on a worker that is not the chief: rows are kept and the run directory
            is not touched; the model is saved to a temporary folder and deleted
            (:func:`save_and_discard`), as the chief saves it.
    """

    def __init__(
        self,
        run_dir: Path,
        rows: list[dict[str, float]],
        entries: list[dict[str, Any]],
        *,
        keep: int,
        class_names: Sequence[str],
        write: bool = True,
    ):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.rows = rows
        self.entries = entries
        self.keep = keep
        self.class_names = list(class_names)
        self.write = write
        self.diverged: tuple[int, int | None] | None = None
        self._started = 0.0

    @property
    def last_checkpoint(self) -> Path | None:
        """The newest checkpoint recorded in ``state.json``, or None."""
        if not self.entries:
            return None
        return checkpoint_path(self.run_dir, self.entries[-1]["file"])

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if self.diverged is None and loss is not None and not np.isfinite(float(loss)):
            # Keras does not pass the epoch to batch hooks: it is the rows finished so far
            self.diverged = (len(self.rows), batch)
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if self.diverged is None:
            bad = [k for k in ("loss", "val_loss") if k in logs and not np.isfinite(logs[k])]
            if bad:
                self.diverged = (epoch, None)
                self.model.stop_training = True
        if self.diverged is not None:
            return
        self.rows.append(self._history_row(epoch, logs))
        if self.write:
            self._save_checkpoint(epoch + 1)
        else:
            get_seed_states(self.model)  # the same reads as the chief's
            save_and_discard(self.model)

    def _history_row(self, epoch: int, logs: dict[str, Any]) -> dict[str, float]:
        row = {"epoch": epoch + 1}
        row.update({key: float(value) for key, value in logs.items()})
        with contextlib.suppress(AttributeError, TypeError, ValueError):
            row["learning_rate"] = float(
                keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
            )
        row["seconds"] = round(time.perf_counter() - self._started, 3)
        return row

    def _save_checkpoint(self, epoch: int) -> None:
        name = checkpoint_name(epoch)
        atomic_write(self.run_dir / CHECKPOINT_DIR / name, self.model.save)
        self.entries.append({"epoch": epoch, "file": name, "rng": get_seed_states(self.model)})
        kept, dropped = self.entries[-self.keep :], self.entries[: -self.keep]
        self.entries[:] = kept
        write_state(self.run_dir, self.rows, self.entries, self.class_names)
        write_history_csv(self.run_dir / HISTORY_FILE, self.rows)
        # delete only after the state no longer names them, and only senet's own names
        for entry in dropped:
            path = checkpoint_path(self.run_dir, entry["file"])
            with contextlib.suppress(OSError):
                path.unlink()
