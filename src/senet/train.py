"""Training runs that survive being killed, for any task (:mod:`senet.tasks`; the default is
classification).

:func:`train` fits a model from a :class:`TrainConfig` into a run directory::

    RUN_DIR/config.json          the TrainConfig (what `--resume` reads back)
    RUN_DIR/state.json           last finished epoch, history rows, the checkpoints kept
    RUN_DIR/checkpoints/         epoch-0001.keras, epoch-0002.keras, ... (the last 2 kept)
    RUN_DIR/history.csv          one row per finished epoch
    RUN_DIR/model.keras          the final model (with its optimizer state)
    RUN_DIR/metrics.json         the task's test metrics (classification:
                                 :func:`classification_metrics`, ``test_accuracy``), params,
                                 epochs run and ``class_names`` (predict reads them here)
    RUN_DIR/curves.png           loss and the task's score per epoch
    RUN_DIR/confusion.png ...    the task's figures (Task.report_files)
    RUN_DIR/logs/                TensorBoard logs (``tensorboard=True``)

Every model a run saves (checkpoints and ``model.keras``) ends in a
:class:`senet.layers.TrainingInfo` layer that records what it was trained on
(:func:`training_record`), so a model file copied out of its run still says it.

Fault tolerance: at every epoch end the full model (weights and optimizer state) is written
to a temporary file in ``checkpoints/``, fsynced and renamed over its final name, and only then
``state.json`` (written the same way) names it, together with the state of the model's random
seed generators (dropout), which ``.keras`` files do not hold. The data order and the
augmentation of epoch ``e`` are functions of ``(seed, e)`` alone. So a run killed at any moment
(``kill -9`` included) and resumed with ``train(..., resume=True)`` reloads its last finished
epoch and ends with the same weights as an uninterrupted run (exactly, on the TensorFlow CPU
backend with ``deterministic=True``, the default).

Safety: a run directory is used by one process at a time (``RUN_DIR/run.lock``; a second
one stops with "run DIR is in use by PID n"); a new run refuses a directory that holds
anything but a senet run, and a run only with ``overwrite=True``, which deletes only the
files senet writes (:func:`senet.runs.clear_run`). A resume reads nothing but checkpoints
named as senet names them, recovers from the newest one that loads when ``state.json`` is
broken, changes only ``epochs`` (and ``tensorboard``, ``keep_checkpoints``) of the saved
config and refuses data that no longer matches the run.

Where the parts live: what a run checks and prepares before it trains in
:mod:`senet.run_start`, the model fitted and finished in :mod:`senet.fitting`, the
multi-worker path in :mod:`senet.cluster`, a run's batches in :mod:`senet.data.pipeline`,
the run directory's files and their recovery in :mod:`senet.runs`, what a kind of problem
needs (data, head, loss, metrics, figures) in its task (:mod:`senet.tasks`), the metrics and
:func:`evaluate` in :mod:`senet.metrics`. This module is the entry, :func:`train`, and
re-exports the names it always had (``from senet.train import evaluate, RunResult,
training_record`` keeps working).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import keras

from senet.cluster import joins_cluster, train_in_cluster
from senet.config import TrainConfig
from senet.data.pipeline import replica_multiple
from senet.errors import ClusterError, ResumeConflict, TrainingDiverged
from senet.evaluation import evaluate
from senet.fitting import (
    RunResult,
    distribution_scope,
    fit_and_finish,
    initial_model,
    model_for_run,
    seed_everything,
    training_record,
)
from senet.metrics import classification_metrics, evaluate_model
from senet.names import MODEL_NAMES, build_model
from senet.run_start import (
    check_batch_size,
    check_new_run_dir,
    load_run_data,
    locked,
    open_run_dir,
    read_run_start,
)
from senet.tasks import get_task

__all__ = [
    "MODEL_NAMES",
    "ClusterError",
    "ResumeConflict",
    "RunResult",
    "TrainConfig",
    "TrainingDiverged",
    "build_model",
    "classification_metrics",
    "evaluate",
    "evaluate_model",
    "load_run_data",
    "train",
    "training_record",
]


def train(
    config: TrainConfig | dict[str, Any] | None,
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    overwrite: bool = False,
    callbacks: Iterable[keras.callbacks.Callback] | None = None,
    verbose: int | str = "auto",
) -> RunResult:
    """Train a model into a run directory, resumable after any interruption.

    Args:
        config: A :class:`TrainConfig` or a dict of its fields. With ``resume=True`` it may
            be None (the run's ``config.json`` is used); otherwise the fields it gives (a
            dict: those present; a TrainConfig: all) must equal the saved ones, except
            ``RESUME_CHANGEABLE``: more ``epochs`` continue the run to the new total (with
            a one-line warning; refused under a cosine schedule, which is laid out for the
            old total), and ``config.json`` records them.
        out_dir: The run directory (created). A new run refuses a directory that holds
            anything (a run, or files senet did not write), so nothing is overwritten.
        resume: Continue the run in ``out_dir`` from its last finished epoch (or start it
            if it never finished one). A finished run just rewrites its final artefacts.
            A broken ``state.json`` is recovered from (:func:`senet.runs.resume_point`).
        overwrite: Start a new run in ``out_dir`` even if it holds a senet run: the old
            run's files (those senet writes, :func:`senet.runs.clear_run`) are deleted
            first, any other file is left alone. A directory with files but no senet run
            is still refused. Not with ``resume``.
        callbacks: Extra Keras callbacks (run after the checkpoint callback).
        verbose: Keras ``fit`` verbosity (1: a progress bar per epoch).

    Returns:
        A :class:`RunResult`.

    Raises:
        TrainingDiverged: The loss became NaN/inf; the last good checkpoint is kept.
        senet.runs.RunInUse: Another process uses the run ("run DIR is in use by PID n").
        senet.runs.RunError: The run's files name something that is not senet's, or
            nothing can be recovered; nothing was changed.
        ResumeConflict: A resume asked for settings the run cannot take.
        ValueError: Bad config values (the message names the field), a directory a new
            run may not use, data that no longer matches a resumed run, or a data error
            (``senet.data.DataError``).

    Example:
        >>> result = train({"data": "synthetic", "synthetic_size": 210, "image_size": 24,
        ...                 "epochs": 2}, "runs/tiny", verbose=0)  # doctest: +SKIP
        >>> sorted(result.metrics)[:3]  # doctest: +SKIP
        ['accuracy', 'attention', 'class_names']
    """
    run_dir = Path(out_dir)
    if joins_cluster(config, run_dir, resume):
        return train_in_cluster(
            config,
            run_dir,
            resume=resume,
            overwrite=overwrite,
            callbacks=callbacks,
            verbose=verbose,
        )
    # every check that only reads comes first: a refused run changes nothing
    config, changes, sets = read_run_start(config, run_dir, resume, overwrite)
    class_names = get_task(config.task).output_names(sets["train"])
    if config.init_from is not None and not resume:
        # refused here, before the run directory exists (loaded again in the scope below)
        initial_model(config, class_names)

    seed_everything(config.seed, config.deterministic)
    scope, is_chief, replicas = distribution_scope(config.distribute)
    check_batch_size(config.batch_size, replicas)
    # the batches epoch_batches makes per epoch (a distributed run drops < replicas images)
    steps_per_epoch = math.ceil(replica_multiple(len(sets["train"]), replicas) / config.batch_size)
    # only the chief writes the run directory, so only the chief locks it; the directory is
    # made only now, so bad data leaves no half-made run behind
    with locked(run_dir, is_chief), scope:
        if is_chief and not resume:
            check_new_run_dir(run_dir, overwrite)  # again: another process may have been here
        # JAX's DataParallel shards the batches fit() sees, so fit runs inside the scope too
        restored = model_for_run(
            config,
            run_dir,
            resume=resume,
            class_names=class_names,
            steps_per_epoch=steps_per_epoch,
        )
        if is_chief:
            open_run_dir(run_dir, config, resume=resume, overwrite=overwrite, changes=changes)
        return fit_and_finish(
            restored,
            config,
            sets,
            run_dir,
            class_names=class_names,
            chief=is_chief,
            logs=True,
            callbacks=callbacks,
            steps_per_epoch=steps_per_epoch,
            replicas=replicas,
            verbose=verbose,
        )


# --------------------------------------------------------------------------- multi-worker
