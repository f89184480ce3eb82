"""A run directory: what :func:`senet.train.train` writes, reads back and recovers from.

Layout::

    RUN_DIR/config.json          the run's settings (a TrainConfig as a dict)
    RUN_DIR/state.json           last finished epoch, history rows, the checkpoints kept
    RUN_DIR/checkpoints/         epoch-0001.keras, epoch-0002.keras, ... (the last few kept)
    RUN_DIR/history.csv          one row per finished epoch
    RUN_DIR/model.keras          the final model (with its optimizer state)
    RUN_DIR/metrics.json         the final test metrics

Every file is written atomically (:mod:`senet._files`): a run killed at any moment leaves
the old file or the new one, never half of either, and at worst a temporary file that
:func:`remove_temporary_files` deletes on resume. A checkpoint is written before
``state.json`` names it, and deleted only after ``state.json`` no longer does, so the state
always names readable files. ``.keras`` files do not hold the model's random seed
generators (dropout); their states travel in ``state.json`` beside each checkpoint.

This module knows files and Keras models, not training settings: it imports nothing from
:mod:`senet.train`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from senet._files import TEMP_PREFIX, atomic_write, atomic_write_text
from senet.layers import load_model

__all__ = [
    "CHECKPOINT_DIR",
    "CONFIG_FILE",
    "FINAL_FILES",
    "HISTORY_FILE",
    "HISTORY_KEYS",
    "METRICS_FILE",
    "MODEL_FILE",
    "STATE_FILE",
    "Restored",
    "RunCheckpoint",
    "checkpoint_name",
    "find_run_config",
    "get_seed_states",
    "has_final_files",
    "holds_run",
    "make_run_dir",
    "read_config",
    "read_history_csv",
    "read_metrics",
    "read_state",
    "remove_temporary_files",
    "restore",
    "set_seed_states",
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
#: The files a finished run has (the figures come from senet.train's last step).
FINAL_FILES = (MODEL_FILE, METRICS_FILE, HISTORY_FILE, "curves.png", "confusion.png")
#: history.csv's leading columns, in this order; any other logged key follows, sorted.
HISTORY_KEYS = (
    "epoch",
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "learning_rate",
    "seconds",
)


# --------------------------------------------------------------------------- directory


def make_run_dir(run_dir: Path) -> None:
    """Create ``run_dir`` and its checkpoint folder (no error if they exist)."""
    (Path(run_dir) / CHECKPOINT_DIR).mkdir(parents=True, exist_ok=True)


def holds_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` already holds a run (its config or its state)."""
    run_dir = Path(run_dir)
    return (run_dir / CONFIG_FILE).exists() or (run_dir / STATE_FILE).exists()


def remove_temporary_files(run_dir: Path) -> None:
    """Delete leftovers of writes killed half-way; nothing ever reads them."""
    run_dir = Path(run_dir)
    for directory in (run_dir, run_dir / CHECKPOINT_DIR):
        if directory.is_dir():
            for path in directory.glob(f"{TEMP_PREFIX}*"):
                with contextlib.suppress(OSError):
                    path.unlink()


def has_final_files(run_dir: Path) -> bool:
    """Whether every file of a finished run (``FINAL_FILES``) is in ``run_dir``."""
    return all((Path(run_dir) / name).is_file() for name in FINAL_FILES)


# --------------------------------------------------------------------------- config


def read_config(run_dir: Path) -> dict[str, Any]:
    """The dict in ``run_dir/config.json``.

    Raises:
        FileNotFoundError: No ``config.json``.
        ValueError: Not JSON, or not a JSON object.
    """
    path = Path(run_dir) / CONFIG_FILE
    values = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(values, dict):
        raise ValueError(f"{path} holds {type(values).__name__}, not an object")
    return values


def write_config(run_dir: Path, values: dict[str, Any]) -> None:
    """Write ``values`` as ``run_dir/config.json`` (atomically)."""
    atomic_write_text(Path(run_dir) / CONFIG_FILE, json.dumps(values, indent=2))


def find_run_config(model_path: Path) -> dict[str, Any] | None:
    """The ``config.json`` of the run a model file belongs to, or None.

    Looks beside the model (``RUN_DIR/model.keras``) and one level up (a checkpoint in
    ``RUN_DIR/checkpoints/``); an unreadable file counts as none.
    """
    model_path = Path(model_path)
    for directory in (model_path.parent, model_path.parent.parent):
        if (directory / CONFIG_FILE).is_file():
            with contextlib.suppress(OSError, ValueError):
                return read_config(directory)
    return None


# --------------------------------------------------------------------------- results


def write_model(run_dir: Path, model: keras.Model) -> None:
    """Save ``model`` as ``run_dir/model.keras`` (atomically)."""
    atomic_write(Path(run_dir) / MODEL_FILE, model.save)


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> None:
    """Write ``metrics`` as ``run_dir/metrics.json`` (atomically)."""
    atomic_write_text(Path(run_dir) / METRICS_FILE, json.dumps(metrics, indent=2))


def read_metrics(run_dir: Path) -> dict[str, Any]:
    """The dict in ``run_dir/metrics.json``."""
    return json.loads((Path(run_dir) / METRICS_FILE).read_text(encoding="utf-8"))


def write_history_csv(path: Path, rows: list[dict[str, float]]) -> None:
    """One row per epoch: ``HISTORY_KEYS`` that occur first, then other keys, sorted."""
    keys = [key for key in HISTORY_KEYS if any(key in row for row in rows)]
    keys += sorted({key for row in rows for key in row} - set(keys))
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


def read_state(run_dir: Path) -> dict[str, Any] | None:
    """``run_dir/state.json``, or None when it is missing, unreadable or malformed (warns)."""
    path = Path(run_dir) / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        warnings.warn(f"Ignoring unreadable {path}: {error}", stacklevel=3)
        return None
    if not isinstance(state, dict) or not isinstance(state.get("checkpoints"), list):
        warnings.warn(f"Ignoring malformed {path}", stacklevel=3)
        return None
    return state


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
    """

    model: keras.Model
    epochs_done: int
    rows: list[dict[str, float]]
    entries: list[dict[str, Any]]


def restore(run_dir: Path, state: dict[str, Any] | None) -> Restored | None:
    """Load the newest readable checkpoint ``state`` names; None if there is none.

    An unreadable checkpoint (cut short, corrupt) is skipped with a warning for the next
    older one; history and checkpoint entries after the one loaded are dropped.
    """
    if state is None:
        return None
    run_dir = Path(run_dir)
    for entry in sorted(state["checkpoints"], key=lambda e: e.get("epoch", -1), reverse=True):
        path = run_dir / CHECKPOINT_DIR / str(entry.get("file", ""))
        try:
            model = load_model(path)
        except Exception as error:  # noqa: BLE001 - any unreadable file means: try an older one
            warnings.warn(f"Skipping unreadable checkpoint {path}: {error}", stacklevel=3)
            continue
        set_seed_states(model, entry.get("rng", []))
        epochs_done = int(entry["epoch"])
        return Restored(
            model=model,
            epochs_done=epochs_done,
            rows=[row for row in state.get("history", []) if row.get("epoch", 0) <= epochs_done],
            entries=[e for e in state["checkpoints"] if e["epoch"] <= epochs_done],
        )
    return None


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
        write: False on a worker that is not the chief: rows are kept, nothing is written.
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
        return self.run_dir / CHECKPOINT_DIR / self.entries[-1]["file"]

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
        # delete only after the state no longer names them
        for entry in dropped:
            with contextlib.suppress(OSError):
                (self.run_dir / CHECKPOINT_DIR / entry["file"]).unlink()
