"""A run's model fitted and finished: the model (new, ``init_from`` or the resumed checkpoint)
with its record, the optimizer and schedule, the task's loss and metrics, the fit loop behind
the run's checkpoint callback, mixed precision, seeds and distribution, then the final
metrics and files (:func:`fit_and_finish`). :func:`senet.train.train` and the cluster path
(:mod:`senet.cluster`) both end here.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras

from senet import distributed, runs
from senet._files import DISK_FULL, disk_full
from senet.checks import fail
from senet.config import TrainConfig
from senet.data.pipeline import epoch_batches, eval_batches
from senet.errors import TrainingDiverged
from senet.layers import with_training_info
from senet.report import plot_curves
from senet.run_start import check_run_matches
from senet.tasks import get_task


@dataclass
class RunResult:
    """What :func:`train` returns.

    Attributes:
        out_dir: The run directory.
        model: The trained model.
        history: One dict per finished epoch (the rows of ``history.csv``).
        metrics: The contents of ``metrics.json``.
        epochs_run: Finished epochs in total (those before a resume included).
        resumed_from: Finished epochs found when the run was resumed (0 for a new run).
        replicas: Devices the model was trained on in sync (1 unless distributed).
        config: The run's config.
    """

    out_dir: Path
    model: Any
    history: list[dict[str, float]]
    metrics: dict[str, Any]
    epochs_run: int
    resumed_from: int = 0
    replicas: int = 1
    config: TrainConfig = field(default_factory=TrainConfig)


def _optimizer(name: str, learning_rate) -> keras.optimizers.Optimizer:
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=True)
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate, weight_decay=1e-4)
    return keras.optimizers.Adam(learning_rate)


def _learning_rate(config: TrainConfig, steps_per_epoch: int):
    if config.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            config.learning_rate, decay_steps=max(1, config.epochs * steps_per_epoch)
        )
    return config.learning_rate


def compile_model(model: keras.Model, config: TrainConfig, steps_per_epoch: int = 1) -> None:
    """The optimizer of ``config``, the loss and metrics of its task."""
    model.compile(
        optimizer=_optimizer(config.optimizer, _learning_rate(config, steps_per_epoch)),
        **get_task(config.task).compile_options(config, model),
    )


class _EpochScalarLogs(keras.callbacks.Callback):
    """Epoch metrics as TensorBoard event files in ``log_dir/train`` and ``log_dir/validation``
    (tags ``epoch_loss``, ``epoch_accuracy``, ..., as Keras' TensorBoard callback names them).

    Keras' callback needs the ``tensorboard`` package, which tensorflow-cpu 2.21 no longer
    installs (``TBNotInstalledError`` at the first epoch end); TensorFlow's own summary writer
    does not, so the package is only needed to view the logs.
    """

    def __init__(self, log_dir: Path):
        super().__init__()
        self.log_dir = Path(log_dir)
        self._writers: dict[str, Any] = {}

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        # the metadata tensorboard.summary.scalar attaches: TensorBoard shows them as scalars
        metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
        )
        for name, value in (logs or {}).items():
            split, key = ("validation", name[4:]) if name.startswith("val_") else ("train", name)
            if split not in self._writers:
                self._writers[split] = tf.summary.create_file_writer(str(self.log_dir / split))
            with self._writers[split].as_default():
                tf.summary.write(
                    f"epoch_{key}", tf.constant(float(value)), step=epoch, metadata=metadata
                )
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


@contextlib.contextmanager
def dtype_policy(mixed_precision: bool):
    previous = keras.config.dtype_policy()
    if mixed_precision:
        keras.config.set_dtype_policy("mixed_float16" if _has_gpu() else "mixed_bfloat16")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _has_gpu() -> bool:
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return any(device.platform == "gpu" for device in jax.devices())
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    return False


def distribution_scope(kind: str):
    """``(scope, is_chief, replicas)`` for ``kind``: build and compile inside ``scope``."""
    if kind == "none":
        return contextlib.nullcontext(), True, 1
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if kind == "mirrored":
            # MirroredStrategy() alone takes the GPUs or else CPU:0 only; without GPUs use
            # every logical CPU device (tf.config.set_logical_device_configuration)
            devices = None
            if not tf.config.list_logical_devices("GPU"):
                devices = [device.name for device in tf.config.list_logical_devices("CPU")]
            strategy = tf.distribute.MirroredStrategy(devices)
        else:
            # one worker (TF_CONFIG names no other task); a cluster runs train_in_cluster
            strategy = distributed.multi_worker_strategy()
        return strategy.scope(), distributed.is_chief(), int(strategy.num_replicas_in_sync)
    if backend == "jax":
        if kind == "multiworker":
            processes = os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES", "1")
            processes = max(
                distributed.cluster_size(), int(processes) if processes.isdigit() else 1
            )
            distributed.check_backend(backend, processes)
            keras.distribution.initialize()
        import jax

        distribution = keras.distribution.DataParallel()
        return distribution.scope(), jax.process_index() == 0, len(jax.devices())
    raise fail(
        "distribute",
        f"'none' on the {backend} backend (mirrored and multiworker need tensorflow or jax)",
        kind,
    )


def seed_everything(seed: int, deterministic: bool) -> None:
    keras.utils.set_random_seed(seed)
    if deterministic and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def model_for_run(
    config: TrainConfig,
    run_dir: Path,
    *,
    resume: bool,
    class_names: Sequence[str],
    steps_per_epoch: int,
) -> runs.Restored:
    """The resumed run (newest good checkpoint) or a new compiled model at epoch 0: the
    task's model (or ``init_from``) ending in the record of its training."""
    task = get_task(config.task)
    with dtype_policy(config.mixed_precision):
        restored = runs.resume_point(run_dir) if resume else None
        if restored is not None:
            check_run_matches(restored, config, run_dir, class_names)
            return restored
        if config.init_from is not None:
            model = initial_model(config, class_names)
        else:
            model = task.build_model(config, class_names)
        model = with_training_info(model, task.record(config, class_names))
        compile_model(model, config, steps_per_epoch)
    return runs.Restored(model=model, epochs_done=0, rows=[], entries=[])


def training_record(config: TrainConfig, class_names: Sequence[str]) -> dict[str, Any]:
    """What a model trained with ``config`` records of its training: its task's
    :meth:`senet.tasks.Task.record` (classification: the data's kind and file name, the
    input size, channels and range, the class names and ``init_from``).

    The record is held by a :class:`senet.layers.TrainingInfo` layer at the model's output
    (a weightless identity layer; its config is the record), chosen because it is public
    Keras API and survives ``model.save``/``load_model``, checkpoints, resume and
    :func:`senet.models.insert_attention`; :func:`senet.layers.training_info` reads it. A
    run's ``config.json`` and ``metrics.json`` hold the same facts for exported models.
    """
    return get_task(config.task).record(config, class_names)


def initial_model(config: TrainConfig, output_names: Sequence[str]) -> keras.Model:
    """``config.init_from`` loaded (architecture and weights), checked by the run's task."""
    from senet.layers import load_model
    from senet.layers.info import without_training_info

    model = without_training_info(
        load_model(config.init_from, allow_h5=config.allow_h5, compile=False)
    )
    problem = get_task(config.task).model_problem(model, config, output_names)
    if problem:
        raise ValueError(f"cannot start from {config.init_from}: {problem}")
    return model


@contextlib.contextmanager
def _resume_hint_on_full_disk(run_dir: Path):
    """A full disk while a run writes says that what it finished is kept, and how to go on
    (in one process and in a cluster alike)."""
    try:
        yield
    except OSError as error:
        if error.errno not in DISK_FULL:
            raise
        raise disk_full(
            error.errno,
            f"{error}; the run stopped, and what it finished is kept: free some space, "
            f"then `senet train --resume {run_dir}` continues",
        ) from error


def fit_and_finish(
    run: runs.Restored,
    config: TrainConfig,
    sets: dict[str, Any],
    run_dir: Path,
    *,
    class_names: Sequence[str],
    chief: bool,
    logs: bool,
    callbacks: Iterable[keras.callbacks.Callback] | None,
    steps_per_epoch: int,
    replicas: int,
    verbose: int | str,
    first: Sequence[keras.callbacks.Callback] = (),
    fit_scope: contextlib.AbstractContextManager | None = None,
    whole_batches: bool = False,
) -> RunResult:
    """Fit ``run`` up to ``config.epochs`` behind a :class:`senet.runs.RunCheckpoint`
    (written by the ``chief`` only), then evaluate it and write the final artefacts: the
    end of :func:`train`, in one process or as a cluster worker.

    The fit's callbacks are ``first``, the checkpoint, the logging callbacks (when
    ``logs``), then the user's ``callbacks``. ``fit_scope`` (a distribution's scope) is
    entered for the fit only; ``whole_batches``: see :func:`epoch_batches`.
    """
    checkpoint = runs.RunCheckpoint(
        run_dir,
        run.rows,
        run.entries,
        keep=config.keep_checkpoints,
        class_names=class_names,
        write=chief,
    )
    log_callbacks = _logging_callbacks(config, run_dir) if logs else []
    with _resume_hint_on_full_disk(run_dir):
        if run.epochs_done < config.epochs:
            with fit_scope or contextlib.nullcontext():
                _fit(
                    run,
                    config,
                    sets,
                    [*first, checkpoint, *log_callbacks, *(callbacks or ())],
                    steps_per_epoch=steps_per_epoch,
                    replicas=replicas,
                    verbose=verbose,
                    whole_batches=whole_batches,
                )
        _raise_if_diverged(checkpoint, config)
        metrics = _finish(run.model, config, run_dir, run.rows, sets, chief)
    return RunResult(
        out_dir=run_dir,
        model=run.model,
        history=list(run.rows),
        metrics=metrics,
        epochs_run=len(run.rows),
        resumed_from=run.epochs_done,
        replicas=replicas,
        config=config,
    )


def _logging_callbacks(config: TrainConfig, run_dir: Path) -> list[keras.callbacks.Callback]:
    return [_EpochScalarLogs(run_dir / "logs")] if config.tensorboard else []


def _fit(
    restored: runs.Restored,
    config: TrainConfig,
    sets: dict[str, Any],
    callbacks: list[keras.callbacks.Callback],
    *,
    steps_per_epoch: int,
    replicas: int,
    verbose: int | str,
    whole_batches: bool = False,
) -> None:
    """Fit the epochs after ``restored.epochs_done`` up to ``config.epochs``."""
    task = get_task(config.task)
    train_set, val_set = sets["train"], sets["val"]
    validation, validation_steps = None, None
    if len(val_set):
        validation = eval_batches(val_set, config.batch_size, replicas, whole_batches=whole_batches)
        if whole_batches:  # Keras' sharded copy has no known length: say it
            validation_steps = int(validation.cardinality())
    if config.distribute == "none":  # a strategy's own fit builds them under its scope
        _build_training_state(restored.model, train_set)
    restored.model.fit(
        epoch_batches(
            train_set,
            batch_size=config.batch_size,
            seed=config.seed,
            first_epoch=restored.epochs_done,
            epochs=config.epochs,
            augment=task.train_transform(config),
            sample_weights=task.sample_weights(train_set, config),
            replicas=replicas,
            whole_batches=whole_batches,
        ),
        epochs=config.epochs,
        initial_epoch=restored.epochs_done,
        steps_per_epoch=steps_per_epoch,
        validation_data=validation,
        validation_steps=validation_steps,
        callbacks=callbacks,
        shuffle=False,  # the dataset is already ordered by (seed, epoch)
        verbose=verbose,
    )


def _build_training_state(model: keras.Model, images) -> None:
    """Create the optimizer's, the loss's and the metrics' variables before ``fit``.

    Without a distribution strategy Keras' TensorFlow trainer leaves them to the first
    trace of the train step, and a ``tf.function`` that creates variables is traced twice
    (a tiny run took 9.3 s with the second trace and 6.2 s without, 2-core Zen 3). Built on two
    images, in inference mode (no state but the metrics' changes; ``fit`` resets those).
    """
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    if not len(images):
        return
    x = images.x[:2]
    y = keras.tree.map_structure(lambda array: array[:2], images.y)  # detection: a dict
    y_pred = model(x, training=False)
    model.compute_loss(x, y, y_pred, sample_weight=None, training=False)
    model.compute_metrics(x, y, y_pred, sample_weight=None)
    model.reset_metrics()


def _raise_if_diverged(checkpoint: runs.RunCheckpoint, config: TrainConfig) -> None:
    if checkpoint.diverged is None:
        return
    epoch, batch = checkpoint.diverged
    last = checkpoint.last_checkpoint
    where = f"epoch {epoch + 1}" + (f", batch {batch + 1}" if batch is not None else "")
    kept = f"last good checkpoint: {last}" if last else "no good checkpoint was written"
    raise TrainingDiverged(
        f"training stopped: the loss became NaN/inf at {where} "
        f"(learning_rate={config.learning_rate}); {kept}",
        epoch=epoch + 1,
        checkpoint=last,
    )


def _finish(model, config, run_dir, rows, sets, is_chief):
    """Final metrics (the task's, on the test split, else validation); on the chief also
    model.keras, history.csv, metrics.json, the curves and the task's figures."""
    task = get_task(config.task)
    test_set, val_set = sets["test"], sets["val"]
    split, images = ("test", test_set) if len(test_set) else ("val", val_set)
    if len(images) == 0:
        raise ValueError("No test or validation images to compute the final metrics on.")
    metrics = task.evaluate(model, images, batch_size=config.batch_size)
    metrics = {
        f"{split}_{task.score}": metrics[task.score],
        **metrics,
        "split": split,
        "model": config.model,
        "attention": config.attention,
        "params": int(model.count_params()),
        "epochs_run": len(rows),
        f"best_val_{task.score}": max(
            (row[f"val_{task.score}"] for row in rows if f"val_{task.score}" in row), default=None
        ),
        "train_seconds": round(sum(row.get("seconds", 0.0) for row in rows), 3),
    }
    if not is_chief:
        runs.save_and_discard(model)  # the chief's save may read variables synced across workers
        return metrics
    runs.write_model(run_dir, model)
    runs.write_history_csv(run_dir / runs.HISTORY_FILE, rows)
    runs.write_metrics(run_dir, metrics)
    title = f"{config.model} ({config.attention})"
    plot_curves(
        rows,
        run_dir / "curves.png",
        title=f"Training curves: {title}",
        score=task.score,
        loss=task.loss_name,
    )
    task.report(
        metrics, run_dir, title=title, split=split, output_names=task.output_names(sets["train"])
    )
    return metrics
