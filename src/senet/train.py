"""Training runs that survive being killed: TrainConfig, the models by name, the fit loop and
its distribution over devices.

:func:`train` fits a model from a :class:`TrainConfig` into a run directory::

    RUN_DIR/config.json          the TrainConfig (what `--resume` reads back)
    RUN_DIR/state.json           last finished epoch, history rows, the checkpoints kept
    RUN_DIR/checkpoints/         epoch-0001.keras, epoch-0002.keras, ... (the last 2 kept)
    RUN_DIR/history.csv          one row per finished epoch
    RUN_DIR/model.keras          the final model (with its optimizer state)
    RUN_DIR/metrics.json         test metrics (see :func:`classification_metrics`), params,
                                 epochs run and ``class_names`` (predict reads them here)
    RUN_DIR/curves.png, confusion.png
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

The run directory's files and their recovery live in :mod:`senet.runs`, the metrics and
:func:`evaluate` in :mod:`senet.metrics` (re-exported here: ``from senet.train import
evaluate, classification_metrics`` keeps working).
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from senet import distributed, runs
from senet._files import DISK_FULL, disk_full
from senet.checks import fail
from senet.config import RESUME_CHANGEABLE, TrainConfig
from senet.errors import ClusterError, ResumeConflict, TrainingDiverged, one_line
from senet.layers import with_training_info
from senet.metrics import classification_metrics, evaluate, evaluate_model
from senet.names import MODEL_NAMES, build_model
from senet.report import plot_curves
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
]


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


# --------------------------------------------------------------------------- data


def load_run_data(config: TrainConfig) -> dict[str, Any]:
    """The ``{"train", "val", "test"}`` splits a run with ``config`` trains and tests on
    (its task's reader, :meth:`senet.tasks.Task.load_data`).

    The one place a run's settings turn into data, so code that inspects a run afterwards
    (the demo's explanations, for example) sees exactly the images the run saw.
    """
    return get_task(config.task).load_data(config)


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


def _compile(model: keras.Model, config: TrainConfig, steps_per_epoch: int = 1) -> None:
    """The optimizer of ``config``, the loss and metrics of its task."""
    model.compile(
        optimizer=_optimizer(config.optimizer, _learning_rate(config, steps_per_epoch)),
        **get_task(config.task).compile_options(config),
    )


# --------------------------------------------------------------------------- logs


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


# --------------------------------------------------------------------------- data


def _train_dataset(
    images,
    *,
    batch_size: int,
    seed: int,
    first_epoch: int,
    epochs: int,
    augment,
    sample_weights: np.ndarray | None,
    replicas: int = 1,
    whole_batches: bool = False,
):
    """Batches of epochs ``first_epoch .. epochs-1``, each epoch's order and augmentation a
    function of ``(seed, epoch)`` only, so a resumed run sees exactly the batches it would
    have seen had it not stopped. Fit it with ``steps_per_epoch=ceil(N / batch_size)``
    (``floor`` with ``whole_batches``: every epoch leaves out the last ``N % batch_size``
    images of its order, for a JAX cluster, which splits every batch over the processes).
    ``images`` is a split (``x``, ``y``); ``augment`` None or the task's
    ``augment(x, y, seed)`` (:meth:`senet.tasks.Task.augment`).
    """
    import tensorflow as tf

    count = len(images)
    # the images an epoch uses: whole batches (a JAX cluster) or a multiple of the replicas
    used = count - count % batch_size if whole_batches else _replica_multiple(count, replicas)
    x = tf.constant(images.x)
    y = tf.constant(images.y)
    weights = None if sample_weights is None else tf.constant(sample_weights, tf.float32)

    def epoch_batches(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(count), seed=tf.stack([tf.constant(seed, tf.int64), epoch])
        )
        # different images left out every epoch: the order is shuffled
        order = order[:used]
        batches = tf.data.Dataset.from_tensor_slices(order).batch(batch_size).enumerate()
        return batches.map(lambda step, index: (epoch, step, index))

    def gather(epoch, step, index):
        batch_x, batch_y = tf.gather(x, index), tf.gather(y, index)
        if augment is not None:
            batch_x, batch_y = augment(batch_x, batch_y, tf.stack([seed * 1_000_003 + epoch, step]))
        if weights is None:
            return batch_x, batch_y
        return batch_x, batch_y, tf.gather(weights, index)

    dataset = tf.data.Dataset.range(first_epoch, epochs).flat_map(epoch_batches)
    dataset = dataset.map(gather)
    if whole_batches:
        # the same batches, with the static batch size Keras' JAX sharding reads
        dataset = dataset.unbatch().batch(batch_size, drop_remainder=True)
    return _with_options(dataset)


def _with_options(dataset):
    """``dataset`` sharded by batch across workers (in-memory data: by batch, not by file),
    with :func:`senet.data.pipeline.fixed_prefetch` (no autotuning)."""
    import tensorflow as tf

    from senet.data.pipeline import fixed_prefetch

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return fixed_prefetch(dataset, options)


def _replica_multiple(count: int, replicas: int) -> int:
    """How many of ``count`` images a distributed step can use: a multiple of ``replicas``.

    An empty shard breaks a distributed step (a last batch smaller than the replica count
    gives some replica nothing), so distributed training and validation leave out up to
    ``replicas - 1`` images per pass; metrics on the test split use every image.
    """
    if replicas <= 1 or count < replicas:
        return count
    return count - count % replicas


def _even_batch_size(batch_size: int, count: int, replicas: int) -> int:
    """A batch size whose first batch splits evenly over ``replicas``.

    Keras' TF trainer reduces the first batch across replicas to build the model, which fails
    when a short split (fewer images than a batch) gives replicas batches of unequal size.
    """
    if replicas <= 1 or count < replicas:
        return batch_size
    return max(replicas, min(batch_size, count) // replicas * replicas)


def _eval_dataset(images, batch_size: int, replicas: int = 1, *, whole_batches: bool = False):
    """Validation batches; with ``whole_batches`` (a JAX cluster) every batch has the same
    size, a multiple of ``replicas``, and up to a batch of images is left out."""
    import tensorflow as tf

    batch_size = _even_batch_size(batch_size, len(images), replicas)
    used = _replica_multiple(len(images), replicas)
    if whole_batches:
        batch_size = min(batch_size, used)
        used -= used % batch_size
    dataset = tf.data.Dataset.from_tensor_slices((images.x, images.y))
    dataset = dataset.take(used).batch(batch_size, drop_remainder=whole_batches)
    return _with_options(dataset)


# --------------------------------------------------------------------------- environment


@contextlib.contextmanager
def _dtype_policy(mixed_precision: bool):
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


def _distribution_scope(kind: str):
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
            # one worker (TF_CONFIG names no other task); a cluster runs _train_in_cluster
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


def _seed_everything(seed: int, deterministic: bool) -> None:
    keras.utils.set_random_seed(seed)
    if deterministic and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


# --------------------------------------------------------------------------- train


def _saved_config(run_dir: Path) -> TrainConfig:
    """The config of the run in ``run_dir``, for a resume."""
    config_path = run_dir / runs.CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(
            f"cannot resume: {config_path} not found (is {run_dir} a run directory?)"
        )
    try:
        return TrainConfig.from_dict(runs.read_config(run_dir))
    except (ValueError, TypeError) as error:
        raise ValueError(f"cannot resume: {config_path} is not a valid config: {error}") from None


def _as_config(config: TrainConfig | dict[str, Any]) -> TrainConfig:
    return config if isinstance(config, TrainConfig) else TrainConfig.from_dict(dict(config))


def _same_value(name: str, saved: Any, given: Any) -> bool:
    if name == "data" and saved != given:
        # the same file by another spelling of its path
        with contextlib.suppress(OSError, TypeError, ValueError):
            return os.path.samefile(saved, given)
        return False
    return saved == given


def _fixed_fields_that_differ(
    run: TrainConfig, asked: dict[str, Any]
) -> dict[str, tuple[Any, Any]]:
    """``{field: (the run's value, the value asked)}`` of the fields a run keeps (all but
    ``RESUME_CHANGEABLE``) that ``asked`` sets otherwise: the one check of a resume and of a
    worker joining a cluster."""
    return {
        name: (getattr(run, name), value)
        for name, value in asked.items()
        if name not in RESUME_CHANGEABLE and not _same_value(name, getattr(run, name), value)
    }


def _check_batch_size(batch_size: int, replicas: int) -> None:
    """A global batch splits evenly over the replicas (the one check, local or cluster)."""
    if batch_size % replicas:
        raise fail("batch_size", f"a multiple of the {replicas} replicas", batch_size)


def _resume_config(config, run_dir: Path) -> tuple[TrainConfig, dict[str, tuple[Any, Any]]]:
    """The saved config with what ``config`` changes, and those changes.

    ``config`` None: the saved one. A dict: the fields asked (the others stay as saved). A
    TrainConfig: every field asked. Only ``RESUME_CHANGEABLE`` fields may differ.
    """
    saved = _saved_config(run_dir)
    if config is None:
        return saved, {}
    asked = config.to_dict() if isinstance(config, TrainConfig) else dict(config)
    TrainConfig.from_dict({**saved.to_dict(), **asked})  # unknown fields and bad values
    conflicts = _fixed_fields_that_differ(saved, asked)
    if conflicts:
        raise ResumeConflict(
            run_dir,
            conflicts,
            f"a resumed run keeps its settings (only {', '.join(RESUME_CHANGEABLE)} may "
            "change); start a new run to train with others",
        )
    changes = {
        name: (getattr(saved, name), asked[name])
        for name in RESUME_CHANGEABLE
        if name in asked and asked[name] != getattr(saved, name)
    }
    if "epochs" in changes and saved.lr_schedule == "cosine":
        raise ResumeConflict(
            run_dir,
            {"epochs": changes["epochs"]},
            f"its cosine learning-rate schedule is laid out for {saved.epochs} epochs",
        )
    return TrainConfig.from_dict({**saved.to_dict(), **asked}), changes


def _check_new_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Refuse a directory a new run must not write into (see :func:`train`)."""
    if runs.is_unused(run_dir):
        return
    if not overwrite:
        if runs.holds_run(run_dir):
            raise ValueError(
                f"{run_dir} already holds a run; resume it (resume=True, `--resume`), start "
                "it afresh (overwrite=True, `--overwrite`) or choose another output directory"
            )
        raise ValueError(
            f"{run_dir} is not empty and is not a senet run; choose a new or empty directory"
        )
    try:
        _saved_config(run_dir)
    except (OSError, ValueError):
        raise ValueError(
            f"{run_dir} is not a senet run (no valid {runs.CONFIG_FILE}), and overwrite only "
            "starts a senet run afresh; choose a new or empty directory"
        ) from None


def _resolve_config(
    config, run_dir: Path, resume: bool, overwrite: bool = False
) -> tuple[TrainConfig, dict[str, tuple[Any, Any]]]:
    """The run's config and the saved fields a resume changes (reads only).

    On resume: the saved config, with ``config``'s changes (:func:`_resume_config`). Else
    ``config``, for a directory a new run may use (:func:`_check_new_run_dir`).
    """
    if resume and overwrite:
        raise ValueError(
            "give resume=True (`--resume`) or overwrite=True (`--overwrite`), not both"
        )
    if resume:
        return _resume_config(config, run_dir)
    if config is None:
        raise ValueError("Expected a TrainConfig or dict for `config` (None only with resume=True)")
    config = _as_config(config)
    _check_new_run_dir(run_dir, overwrite)
    return config, {}


def _check_run_matches(
    restored: runs.Restored, config: TrainConfig, run_dir: Path, class_names: Sequence[str]
) -> None:
    """Raise ValueError if the data (or config) no longer fits the run's checkpoint."""
    where = f"the data of {run_dir} ({config.data!r}) no longer matches the run"
    if restored.class_names is not None and list(restored.class_names) != list(class_names):
        raise ValueError(
            f"{where}: its class names are {list(class_names)}, the run was trained on "
            f"{list(restored.class_names)}"
        )
    problem = get_task(config.task).model_problem(restored.model, config, class_names)
    if problem:
        raise ValueError(f"{where}: {problem}")
    if restored.epochs_done > config.epochs:
        raise ResumeConflict(
            run_dir,
            {"epochs": (restored.epochs_done, config.epochs)},
            f"the run has already finished {restored.epochs_done} epochs",
        )


def _model_for_run(
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
    with _dtype_policy(config.mixed_precision):
        restored = runs.resume_point(run_dir) if resume else None
        if restored is not None:
            _check_run_matches(restored, config, run_dir, class_names)
            return restored
        if config.init_from is not None:
            model = _initial_model(config, class_names)
        else:
            model = task.build_model(config, class_names)
        model = with_training_info(model, task.record(config, class_names))
        _compile(model, config, steps_per_epoch)
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


def _initial_model(config: TrainConfig, output_names: Sequence[str]) -> keras.Model:
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
    if _joins_cluster(config, run_dir, resume):
        return _train_in_cluster(
            config,
            run_dir,
            resume=resume,
            overwrite=overwrite,
            callbacks=callbacks,
            verbose=verbose,
        )
    # every check that only reads comes first: a refused run changes nothing
    config, changes, sets = _read_run_start(config, run_dir, resume, overwrite)
    class_names = get_task(config.task).output_names(sets["train"])
    if config.init_from is not None and not resume:
        # refused here, before the run directory exists (loaded again in the scope below)
        _initial_model(config, class_names)

    _seed_everything(config.seed, config.deterministic)
    scope, is_chief, replicas = _distribution_scope(config.distribute)
    _check_batch_size(config.batch_size, replicas)
    # the batches _train_dataset makes per epoch (a distributed run drops < replicas images)
    steps_per_epoch = math.ceil(_replica_multiple(len(sets["train"]), replicas) / config.batch_size)
    # only the chief writes the run directory, so only the chief locks it; the directory is
    # made only now, so bad data leaves no half-made run behind
    with _locked(run_dir, is_chief), scope:
        if is_chief and not resume:
            _check_new_run_dir(run_dir, overwrite)  # again: another process may have been here
        # JAX's DataParallel shards the batches fit() sees, so fit runs inside the scope too
        restored = _model_for_run(
            config,
            run_dir,
            resume=resume,
            class_names=class_names,
            steps_per_epoch=steps_per_epoch,
        )
        if is_chief:
            _open_run_dir(run_dir, config, resume=resume, overwrite=overwrite, changes=changes)
        return _fit_and_finish(
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


def _fit_and_finish(
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
    entered for the fit only; ``whole_batches``: see :func:`_train_dataset`.
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


@contextlib.contextmanager
def _locked(run_dir: Path, is_chief: bool):
    """Hold the run directory's lock (made if needed) on the chief; nothing elsewhere."""
    if not is_chief:
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    with runs.lock_run(run_dir):
        yield


def _open_run_dir(
    run_dir: Path,
    config: TrainConfig,
    *,
    resume: bool,
    overwrite: bool,
    changes: dict[str, tuple[Any, Any]],
) -> None:
    """Prepare the locked run directory: clear an old run (``overwrite``), write the config
    (new runs, or a resume's changes, announced in one line) and remove killed writes."""
    if overwrite and runs.holds_run(run_dir):
        runs.clear_run(run_dir)
    runs.make_run_dir(run_dir)
    if changes:
        said = ", ".join(f"{name} {old!r} -> {new!r}" for name, (old, new) in changes.items())
        extra = ""
        if "epochs" in changes:
            extra = f": training continues to epoch {config.epochs}"
        warnings.warn(
            f"resuming {run_dir} with {said}{extra} ({runs.CONFIG_FILE} updated)", stacklevel=4
        )
    if not resume or changes or not (run_dir / runs.CONFIG_FILE).exists():
        runs.write_config(run_dir, config.to_dict())
    runs.remove_temporary_files(run_dir)


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
        validation = _eval_dataset(
            val_set, config.batch_size, replicas, whole_batches=whole_batches
        )
        if whole_batches:  # Keras' sharded copy has no known length: say it
            validation_steps = int(validation.cardinality())
    if config.distribute == "none":  # a strategy's own fit builds them under its scope
        _build_training_state(restored.model, train_set)
    restored.model.fit(
        _train_dataset(
            train_set,
            batch_size=config.batch_size,
            seed=config.seed,
            first_epoch=restored.epochs_done,
            epochs=config.epochs,
            augment=task.augment if config.augment else None,
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
    x, y = images.x[:2], images.y[:2]
    y_pred = model(x, training=False)
    model.compute_loss(x, y, y_pred, training=False)
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
    plot_curves(rows, run_dir / "curves.png", title=f"Training curves: {title}", score=task.score)
    task.report(
        metrics, run_dir, title=title, split=split, output_names=task.output_names(sets["train"])
    )
    return metrics


# --------------------------------------------------------------------------- multi-worker


def _asked(config, name: str) -> Any:
    """The value ``config`` (a TrainConfig, a dict or None) gives ``name``, or None."""
    if isinstance(config, TrainConfig):
        return getattr(config, name)
    return dict(config).get(name) if config is not None else None


def _joins_cluster(config, run_dir: Path, resume: bool) -> bool:
    """Whether this process is one of several TensorFlow or JAX workers (``TF_CONFIG``) of a
    run with ``distribute="multiworker"``: then :func:`_train_in_cluster` trains it."""
    if keras.backend.backend() not in ("tensorflow", "jax") or distributed.cluster_size() < 2:
        return False
    asked = _asked(config, "distribute")
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
        return _saved_config(run_dir).distribute == "multiworker"
    return False  # the single-process path reports what is wrong with the run


def _read_run_start(
    config, run_dir: Path, resume: bool, overwrite: bool
) -> tuple[TrainConfig, dict[str, tuple[Any, Any]], dict[str, Any]]:
    """The checks a run starts with that only read (:func:`train` and the cluster's chief):
    the resolved config and its changes (:func:`_resolve_config`), the run directory not
    in use, and the run's data, which must have training images.

    Returns ``(config, changes, sets)``.
    """
    config, changes = _resolve_config(config, run_dir, resume, overwrite)
    if run_dir.is_dir():
        runs.check_unlocked(run_dir)
    sets = load_run_data(config)
    if len(sets["train"]) == 0:
        raise ValueError(f"No training images in {config.data!r} after the split.")
    return config, changes, sets


def _chief_start(config, run_dir: Path, *, resume: bool, overwrite: bool, stack):
    """The chief's part before training: the checks and files of :func:`train`, and what the
    other workers need to start as it does (``start``, for :func:`distributed.broadcast_json`).

    Returns ``(config, sets, restored, start)``; ``restored`` is the run's checkpoint loaded
    outside the strategy (None for a new run). Takes the run's lock into ``stack``.
    """
    config, changes, sets = _read_run_start(config, run_dir, resume, overwrite)
    stack.enter_context(_locked(run_dir, True))
    if not resume:
        _check_new_run_dir(run_dir, overwrite)
    restored = None
    if resume:
        _seed_everything(config.seed, config.deterministic)
        with _dtype_policy(config.mixed_precision):
            restored = runs.resume_point(run_dir)
        if restored is not None:
            _check_run_matches(
                restored, config, run_dir, get_task(config.task).output_names(sets["train"])
            )
    _open_run_dir(run_dir, config, resume=resume, overwrite=overwrite, changes=changes)
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
    differ = _fixed_fields_that_differ(chosen, asked)
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


def _train_in_cluster(
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
            try:
                config, sets, restored, start = _chief_start(
                    config, run_dir, resume=resume, overwrite=overwrite, stack=stack
                )
                _check_batch_size(config.batch_size, replicas)
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
        else:
            start = distributed.broadcast_json(strategy, None)
            config, sets = _worker_start(config, start)
        class_names = get_task(config.task).output_names(sets["train"])
        if jax_cluster:
            steps_per_epoch = len(sets["train"]) // config.batch_size
        else:
            steps_per_epoch = math.ceil(
                _replica_multiple(len(sets["train"]), replicas) / config.batch_size
            )
        _seed_everything(config.seed, config.deterministic)
        with strategy.scope():
            model = _model_for_run(
                config,
                run_dir,
                resume=False,
                class_names=class_names,
                steps_per_epoch=steps_per_epoch,
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
        run = runs.Restored(
            model=model, epochs_done=int(start["epochs_done"]), rows=rows, entries=entries
        )
        with _cluster_errors():
            return _fit_and_finish(
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
