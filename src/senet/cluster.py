"""Training as one of several workers (``TF_CONFIG``): TensorFlow's
``MultiWorkerMirroredStrategy``, or on JAX a ``keras.distribution.DataParallel`` over every
process's devices. The chief checks and writes the run as one process does
(:mod:`senet.run_start`) and sends the others the config and where the run stands; all fit
through :func:`senet.fitting.fit_and_finish`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from senet import distributed, runs
from senet.checks import fail
from senet.config import TrainConfig
from senet.data.pipeline import replica_multiple
from senet.errors import ClusterError, one_line
from senet.fitting import RunResult, dtype_policy, fit_and_finish, model_for_run, seed_everything
from senet.run_start import (
    asked_value,
    check_batch_size,
    check_new_run_dir,
    check_run_matches,
    fixed_fields_that_differ,
    load_run_data,
    locked,
    open_run_dir,
    read_run_start,
    saved_config,
)
from senet.tasks import get_task


def joins_cluster(config, run_dir: Path, resume: bool) -> bool:
    """Whether this process is one of several TensorFlow or JAX workers (``TF_CONFIG``) of a
    run with ``distribute="multiworker"``: then :func:`train_in_cluster` trains it."""
    if keras.backend.backend() not in ("tensorflow", "jax") or distributed.cluster_size() < 2:
        return False
    asked = asked_value(config, "distribute")
    if asked is not None:
        return asked == "multiworker"
    if not resume:
        return False
    if not distributed.is_chief():
        raise ValueError(
            f"{distributed.task_name()} of a multi-worker run takes the run's settings from "
            "the chief and cannot read them itself: give distribute='multiworker' "
            "(`--distribute multiworker`) to every worker"
        )
    with contextlib.suppress(OSError, ValueError, TypeError):
        return saved_config(run_dir).distribute == "multiworker"
    return False  # the single-process path reports what is wrong with the run


def _chief_start(config, run_dir: Path, *, resume: bool, overwrite: bool, stack):
    """The chief's part before training: the checks and files of :func:`train`, and what the
    other workers need to start as it does (``start``, for :func:`distributed.broadcast_json`).

    Returns ``(config, sets, restored, start)``; ``restored`` is the run's checkpoint loaded
    outside the strategy (None for a new run). Takes the run's lock into ``stack``.
    """
    config, changes, sets = read_run_start(config, run_dir, resume, overwrite)
    stack.enter_context(locked(run_dir, True))
    if not resume:
        check_new_run_dir(run_dir, overwrite)
    restored = None
    if resume:
        seed_everything(config.seed, config.deterministic)
        with dtype_policy(config.mixed_precision):
            restored = runs.resume_point(run_dir)
        if restored is not None:
            check_run_matches(
                restored, config, run_dir, get_task(config.task).output_names(sets["train"])
            )
    open_run_dir(run_dir, config, resume=resume, overwrite=overwrite, changes=changes)
    start = {
        "config": config.to_dict(),
        "epochs_done": restored.epochs_done if restored else 0,
        "rows": restored.rows if restored else [],
    }
    return config, sets, restored, start


def _worker_start(config, start: dict[str, Any]) -> tuple[TrainConfig, dict[str, Any]]:
    """A worker's check of the chief's ``start`` against what it was asked, and its data."""
    name = distributed.task_name()
    if "error" in start:
        raise ClusterError(f"{name}: the chief stopped the run: {start['error']}")
    chosen = TrainConfig.from_dict(start["config"])
    asked = config.to_dict() if isinstance(config, TrainConfig) else dict(config or {})
    differ = fixed_fields_that_differ(chosen, asked)
    if differ:
        said = ", ".join(
            f"{key}={new!r} (the chief has {old!r})" for key, (old, new) in differ.items()
        )
        raise ClusterError(f"{name} was started with {said}: every worker must train alike")
    sets = load_run_data(chosen)
    return chosen, sets


def _state_values(source: keras.Model, target: keras.Model) -> list[np.ndarray]:
    """Weights, seed states and optimizer state of ``source`` as arrays for ``target``'s
    variables (the same model), in the order of ``[*variables, *optimizer.variables]``."""
    sources = [*source.variables, *source.optimizer.variables]
    targets = [*target.variables, *target.optimizer.variables]
    if [tuple(v.shape) for v in sources] != [tuple(v.shape) for v in targets]:
        raise ValueError(
            f"the run's checkpoint ({len(sources)} variables) does not fit the model its "
            f"config builds ({len(targets)} variables)"
        )
    return [np.asarray(keras.ops.convert_to_numpy(value)) for value in sources]


@contextlib.contextmanager
def _cluster_errors():
    """TensorFlow's errors of a lost worker (``UnavailableError: ... tasks are unhealthy``)
    as a one-line :class:`ClusterError`."""
    import tensorflow as tf

    try:
        yield
    except tf.errors.OpError as error:
        raise ClusterError(
            f"{distributed.task_name()}: training stopped ({type(error).__name__}): "
            f"{one_line(error, limit=200)}"
        ) from error


class _AverageNonTrainable(keras.callbacks.Callback):
    """At every epoch end, the mean over the workers of the model's non-trainable weights
    (:func:`senet.distributed.average_variables`), before anything saves the model."""

    def __init__(self, strategy):
        super().__init__()
        self.strategy = strategy

    def on_epoch_end(self, epoch, logs=None):
        distributed.average_variables(self.strategy, self.model.non_trainable_weights)


def _chief_sends(config, run_dir, strategy, replicas, *, resume, overwrite, stack):
    """The chief's start (:func:`_chief_start`), sent to the other workers; a start that fails
    sends its error instead, so every worker stops with the chief's reason."""
    jax_cluster = keras.backend.backend() == "jax"
    try:
        config, sets, restored, start = _chief_start(
            config, run_dir, resume=resume, overwrite=overwrite, stack=stack
        )
        check_batch_size(config.batch_size, replicas)
        if jax_cluster and len(sets["train"]) < config.batch_size:
            raise fail(
                "batch_size",
                f"at most the {len(sets['train'])} training images (a JAX cluster "
                "trains on whole batches only)",
                config.batch_size,
            )
    except BaseException as error:
        distributed.broadcast_json(
            strategy, {"error": f"{type(error).__name__}: {one_line(error)}"}
        )
        raise
    distributed.broadcast_json(strategy, start)
    return config, sets, restored, start


def _same_run_everywhere(config, run_dir, strategy, restored, start, class_names, steps):
    """Every worker's model, built alike under the strategy, then given the chief's state
    (its checkpoint's, or its new model's) and the run's history: where the run stands."""
    seed_everything(config.seed, config.deterministic)
    with strategy.scope():
        model = model_for_run(
            config,
            run_dir,
            resume=False,
            class_names=class_names,
            steps_per_epoch=steps,
        ).model
        model.optimizer.build(model.trainable_variables)
    # every worker assigns in the same collective (JAX's assignment to a variable spread
    # over processes is one): the chief sends the checkpoint's state, or its new model's
    values = _state_values(restored.model, model) if restored is not None else None
    distributed.broadcast_variables(
        strategy, [*model.variables, *model.optimizer.variables], values=values
    )
    rows = [{**row, "epoch": int(row["epoch"])} for row in start["rows"]]
    entries = restored.entries if restored is not None else []
    return runs.Restored(
        model=model, epochs_done=int(start["epochs_done"]), rows=rows, entries=entries
    )


def train_in_cluster(
    config,
    run_dir: Path,
    *,
    resume: bool,
    overwrite: bool,
    callbacks: Iterable[keras.callbacks.Callback] | None,
    verbose: int | str,
) -> RunResult:
    """:func:`train` as one of several workers: TensorFlow's ``MultiWorkerMirroredStrategy``,
    or on JAX a ``keras.distribution.DataParallel`` over every process's devices.

    The chief does what a single process does to the run directory; the others never touch
    it. The chief sends them the run's config and where it stands (epochs done, history),
    and after every worker has built the same model, its weights and optimizer state, so
    all continue from the chief's last finished epoch. Each worker reads its share of every
    global batch (``AutoShardPolicy.DATA``: the in-memory images are split by element, so
    replica ``i`` of ``n`` trains on the ``i``-th slice of each batch); gradients and
    metrics are all-reduced every step.

    On JAX, Keras splits each global batch into one slice per process, so every batch
    must be whole: each epoch trains on ``batch_size * floor(N / batch_size)`` images (a
    different remainder left out every epoch, as the order is shuffled), and validation on
    whole batches too. The steps are computed over the global batch, so batch
    normalization sees all of it and the model is the one-process model's, up to
    floating-point order. The final evaluation runs in each process on its own copy of
    the (replicated) weights.
    """
    jax_cluster = keras.backend.backend() == "jax"
    # joining the cluster comes first
    strategy = (
        distributed.join_jax_cluster() if jax_cluster else distributed.multi_worker_strategy()
    )
    chief = distributed.is_chief()
    replicas = distributed.replicas_of(strategy)
    with contextlib.ExitStack() as stack:
        restored = None
        if chief:
            config, sets, restored, start = _chief_sends(
                config,
                run_dir,
                strategy,
                replicas,
                resume=resume,
                overwrite=overwrite,
                stack=stack,
            )
        else:
            start = distributed.broadcast_json(strategy, None)
            config, sets = _worker_start(config, start)
        class_names = get_task(config.task).output_names(sets["train"])
        if jax_cluster:
            steps_per_epoch = len(sets["train"]) // config.batch_size
        else:
            steps_per_epoch = math.ceil(
                replica_multiple(len(sets["train"]), replicas) / config.batch_size
            )
        run = _same_run_everywhere(
            config, run_dir, strategy, restored, start, class_names, steps_per_epoch
        )
        with _cluster_errors():
            return fit_and_finish(
                run,
                config,
                sets,
                run_dir,
                class_names=class_names,
                chief=chief,
                logs=chief,
                callbacks=callbacks,
                steps_per_epoch=steps_per_epoch,
                replicas=replicas,
                verbose=verbose if chief else 0,
                # JAX steps over the global batch: no per-replica statistics to average
                first=[] if jax_cluster else [_AverageNonTrainable(strategy)],
                fit_scope=strategy.scope() if jax_cluster else None,
                whole_batches=jax_cluster,
            )
