"""A run's state and checkpoints: ``state.json`` (finished epochs, history rows, the
checkpoints kept, seed states), the checkpoint files and their names, resuming from the
newest good checkpoint and recovering when ``state.json`` is broken, and the callback that
writes them at every epoch end (:class:`RunCheckpoint`).
"""

from __future__ import annotations

import contextlib
import csv
import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from senet._files import atomic_write, atomic_write_text, read_json
from senet.errors import RunError
from senet.layers import load_model
from senet.runs.directory import (
    CHECKPOINT_DIR,
    CHECKPOINT_RE,
    HISTORY_FILE,
    STATE_FILE,
    read_history_csv,
    save_and_discard,
    write_history_csv,
)

# --------------------------------------------------------------------------- results


def checkpoint_name(epoch: int) -> str:
    """The file name of the checkpoint after ``epoch`` (1-based): ``epoch-0001.keras``."""
    return f"epoch-{epoch:04d}.keras"


def _checkpoint_epoch(name: Any) -> int | None:
    """The epoch in a checkpoint name senet writes (exactly ``checkpoint_name(epoch)``)."""
    match = CHECKPOINT_RE.fullmatch(name) if isinstance(name, str) else None
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
