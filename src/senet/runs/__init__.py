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

The parts: :mod:`senet.runs.directory` (the files, which are senet's, config, results, the
run a model file belongs to), :mod:`senet.runs.state` (state.json, checkpoints, resume and
recovery, the per-epoch checkpoint callback), :mod:`senet.runs.lock` (the kernel lock);
every name is here too (``senet.runs.lock_run``).
"""

from __future__ import annotations

from senet.errors import RunError, RunInUse
from senet.runs.directory import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    FINAL_FILES,
    HISTORY_FILE,
    LOCK_FILE,
    METRICS_FILE,
    MODEL_FILE,
    STATE_FILE,
    clear_run,
    find_run,
    find_run_config,
    has_final_files,
    history_columns,
    holds_run,
    is_unused,
    make_run_dir,
    read_config,
    read_history_csv,
    read_metrics,
    remove_temporary_files,
    run_class_names,
    save_and_discard,
    write_config,
    write_history_csv,
    write_metrics,
    write_model,
)
from senet.runs.lock import (
    check_unlocked,
    lock_run,
)
from senet.runs.state import (
    Restored,
    RunCheckpoint,
    check_state,
    checkpoint_name,
    checkpoint_path,
    get_seed_states,
    inspect_state,
    read_state,
    recover,
    restore,
    resume_point,
    set_seed_states,
    write_state,
)

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
