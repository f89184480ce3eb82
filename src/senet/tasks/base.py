"""The task seam: what training, evaluation, the report and prediction need to know of one
kind of problem, and nothing else.

A :class:`Task` owns its data reader, its model head, its loss and metrics, its report
sections and what a prediction says. The run directory, resume, the lock, the
multi-worker path and the fit loop (:mod:`senet.train`) take a task and know nothing of
classes or labels: they move arrays ``x`` and ``y`` (a split is anything with ``x``, ``y``
and a length) and call the task's methods. Classification
(:class:`senet.tasks.classification.ClassificationTask`) is the built-in task.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["Task", "number_text"]


class Task:
    """One kind of supervised problem: subclass it and :func:`senet.tasks.register_task`.

    Attributes:
        name: What ``TrainConfig.task`` (``--task``) calls it.
        score: The metric a run is judged by, higher is better (classification:
            ``"accuracy"``). ``fit`` logs it as ``score`` and ``val_<score>``;
            ``metrics.json`` holds it as ``<split>_<score>`` and ``best_val_<score>``.
        report_files: The figures (files) :meth:`report` writes into a run directory.
    """

    name: str = ""
    score: str = ""
    #: The files :meth:`report` writes into a run directory, so that ``--overwrite``
    #: deletes them with the rest of the run.
    report_files: tuple[str, ...] = ()
    #: What the loss is called on the training curves' y axis.
    loss_name: str = "loss"
    #: The names of :data:`senet.names.MODEL_NAMES` :meth:`build_model` builds (``--model``),
    #: or None when it builds its own network whatever the name.
    models: tuple[str, ...] | None = None

    # ------------------------------------------------------------------ data
    def load_data(self, config) -> dict[str, Any]:
        """The ``{"train", "val", "test"}`` splits a run with ``config`` uses; each split
        has ``x`` and ``y`` arrays (first axis: the samples) and ``len()``."""
        raise NotImplementedError

    def output_names(self, split) -> list[str]:
        """A name for each model output (classification: the class names). A run records
        them (``state.json``, ``metrics.json``, the model's record) and a resume checks
        that the data still gives them."""
        raise NotImplementedError

    def sample_weights(self, split, config):
        """A float32 weight per sample of ``split`` for the loss, or None (the default)."""
        return None

    def augment(self, x, y, seed):
        """A training batch ``(x, y)`` changed at random, as TensorFlow ops drawn from
        ``seed`` (two integers) only, so a resumed run sees the same batches. Default:
        unchanged."""
        return x, y

    def train_transform(self, config):
        """What a training batch goes through: ``f(x, y, seed) -> (x, y)`` in TensorFlow
        ops drawn from ``seed`` only, or None. Default: :meth:`augment` when
        ``config.augment``."""
        return self.augment if config.augment else None

    def random_targets(self, output_shape, batch: int, rng):
        """``batch`` random targets for a model whose output is ``output_shape`` (``senet
        bench`` times a training step on them). Default: uniform floats of that shape."""
        return rng.random((batch, *tuple(output_shape)[1:]), dtype="float32")

    # ------------------------------------------------------------------ model
    def build_model(self, config, output_names: Sequence[str]):
        """A new, uncompiled Keras model for ``config`` with one output per name."""
        raise NotImplementedError

    def model_problem(self, model, config, output_names: Sequence[str]) -> str | None:
        """Why ``model`` (a checkpoint, ``init_from``) cannot be this run's model, or None."""
        return None

    def compile_options(self, config, model) -> dict[str, Any]:
        """``loss`` and ``metrics`` for ``model.compile`` (the metrics name ``score``).

        ``config`` is the run's TrainConfig, or None outside a run (``senet bench`` times a
        training step with the loss); ``model`` is the model to compile."""
        raise NotImplementedError

    def record(self, config, output_names: Sequence[str]) -> dict[str, Any]:
        """What a model trained with ``config`` records of its training
        (:class:`senet.layers.TrainingInfo`)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, model, split, *, batch_size: int) -> dict[str, Any]:
        """Metrics of ``model`` on ``split``, JSON values, ``score`` among them."""
        raise NotImplementedError

    def report(
        self,
        metrics: dict[str, Any],
        out_dir: Path,
        *,
        title: str,
        split: str,
        output_names: Sequence[str],
    ) -> list[str]:
        """Write the task's figures for a finished run into ``out_dir``; the file names."""
        return []

    def summary(self, metrics: dict[str, Any]) -> str:
        """What ``senet train`` prints of a finished run's ``metrics``: by default the
        score on its split, then every other number, one line."""
        split = metrics.get("split", "test")
        others = [
            f"{key} {value:.4g}"
            for key, value in metrics.items()
            if key != self.score and isinstance(value, float)
        ]
        return f"{split} {self.score} {metrics[self.score]:.4f}" + (
            f"  ({', '.join(others)})" if others else ""
        )

    # ------------------------------------------------------------------ prediction
    def predictions(self, outputs, output_names: Sequence[str]) -> list[dict[str, Any]]:
        """What ``senet predict`` says of each row of the model's ``outputs``."""
        raise NotImplementedError


def number_text(value) -> str:
    """A metric in a task's summary table: three decimals, or ``n/a`` for None."""
    return "n/a" if value is None else f"{value:.3f}"
