"""What attention costs: parameters, FLOPs and interleaved A/B inference latency.

FLOPs are counted analytically from layer configurations and shapes, so the count is
the same on every backend and needs no profiler. Convention: a multiply-add is 2 FLOPs
(so a convolution or Dense layer costs ``2 * MACs``, plus one FLOP per output for a
bias); every other elementwise operation (batch-norm affine, activation, merge, SE
scale) costs 1 FLOP per element it computes, and pooling costs one FLOP per element it
reads. The paper's "GFLOPs" (3.86 for ResNet-50) are multiply-adds of the convolutions
and Dense layers; ``count_flops(model, macs_only=True)`` gives that number.

Latency is measured by :func:`latency_ab`: two models, one compiled inference function
each, timed interleaved in one process (A B, B A, A B, ...) so that drifting machine
load hits both alike; it reports medians and their ratio. :func:`latency_interleaved`
does the same round-robin for any number of models.

The parts: :mod:`senet.bench.flops` counts, :mod:`senet.bench.timing` times, and this module
is ``senet bench``'s job (:func:`run_bench`, :func:`format_bench`): a model with and without
attention built, counted and timed, inference and a training step.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable

import keras
import numpy as np

from senet import graph
from senet.bench.flops import count_flops, count_params
from senet.bench.timing import (
    check_count,
    latency_ab,
    latency_interleaved,
    machine_info,
    time_interleaved,
)

__all__ = [
    "BENCH_MODELS",
    "BENCH_SCHEMA",
    "count_flops",
    "count_params",
    "format_bench",
    "latency_ab",
    "latency_interleaved",
    "machine_info",
    "run_bench",
    "time_interleaved",
]


# --------------------------------------------------------------------------- latency


# --------------------------------------------------------------------------- senet bench

#: ``schema`` of :func:`run_bench`'s result (``senet bench --json``); raised when it changes.
BENCH_SCHEMA = "senet.bench/2"
#: What ``senet bench`` builds for a model name: ``(input shape, classes)``.
BENCH_MODELS = {
    "emotion_cnn": ((48, 48, 1), 7),
    "resnet": ((224, 224, 3), 1000),
    # the U-Net's defaults (depth 4, 16 filters), the synthetic face parts' five classes
    "unet": ((128, 128, 1), 5),
    # keras-hub's RetinaNet on a ResNet-18 (task detection), 7 classes: the face scenes'
    "retinanet": ((320, 320, 3), 7),
}


def _bench_pair(model: str, attention: str, reduction, allow_h5: bool, image_size=None):
    """``(plain, attended, name, attention)`` for a model name or a ``.keras`` file;
    ``image_size`` replaces a named network's default side."""
    from senet import models
    from senet.checks import check_choice
    from senet.layers import kinds, load_model
    from senet.names import MODEL_NAMES, is_cifar_depth, resnet_depth

    attention = check_choice("attention", attention, kinds())
    options = {} if reduction is None else {"reduction": reduction}

    def sized(shape):
        return shape if image_size is None else (image_size, image_size, *shape[2:])

    if model == "retinanet":
        shape, classes = BENCH_MODELS["retinanet"]
        side, channels = sized(shape)[0], shape[-1]
        plain = models.retinanet(classes, image_size=side, channels=channels)
        attended = models.retinanet(
            classes, image_size=side, channels=channels, attention=attention, **options
        )
        return plain, attended, "retinanet", attention
    if model == "emotion_cnn":
        shape, classes = BENCH_MODELS["emotion_cnn"]
        shape = sized(shape)
        plain = models.emotion_cnn(shape, classes, attention=None)
        attended = models.emotion_cnn(shape, classes, attention=attention, **options)
        return plain, attended, "emotion_cnn", attention
    if model == "unet":
        shape, classes = BENCH_MODELS["unet"]
        shape = sized(shape)
        plain = models.unet(shape, classes, attention=None)
        attended = models.unet(shape, classes, attention=attention, **options)
        return plain, attended, "unet", attention
    depth = resnet_depth(model)
    if depth is not None:
        shape, classes = BENCH_MODELS["resnet"]
        if is_cifar_depth(depth):
            shape, classes = (32, 32, 3), 10
        shape = sized(shape)
        plain = models.resnet(depth, shape, classes, attention=None)
        attended = models.resnet(depth, shape, classes, attention=attention, **options)
        return plain, attended, model, attention
    if not os.path.exists(model):
        raise ValueError(
            f"`model` must be a .keras file or one of {', '.join(MODEL_NAMES)}, got {model!r}"
        )
    loaded = load_model(model, allow_h5=allow_h5, compile=False)
    plain, attended, found = _with_and_without(loaded, attention, options)
    return plain, attended, os.path.basename(model), found or attention


def _with_and_without(model: keras.Model, attention: str, options: dict):
    """A model file as ``(plain, attended, found)``: its attention layers dropped (``found``
    names their classes), or ``attention`` inserted (``found`` is None)."""
    from senet.layers.registry import attention_classes
    from senet.models import insert_attention
    from senet.models.rewrite import rewrite

    kinds = attention_classes()  # every registered kind's, a package's included
    found = [layer for layer in graph.nodes(model) if isinstance(layer.operation, kinds)]
    if not found:
        return model, insert_attention(model, attention, **options), None

    def drop(layer, clone, *args, **kwargs):
        return args[0] if isinstance(layer, kinds) else clone(*args, **kwargs)

    found_kinds = ",".join(sorted({type(node.operation).__name__ for node in found}))
    return rewrite(model, drop, name=f"{model.name}_plain"), model, found_kinds


def _timing(result: dict) -> dict:
    times = result["times_ms"]
    return {
        "median_ms": result["ms"],
        "min_ms": min(times),
        "max_ms": max(times),
        "iqr_ms": list(result["iqr_ms"]),
    }


def _train_step(model: keras.Model, batch: int, task, seed: int = 0) -> Callable[[], object]:
    """One compiled training step (SGD, the task's loss: cross-entropy for classification)
    of a copy of ``model`` on random images and the task's random targets."""
    from senet.models.retinanet import is_detector

    # a keras-hub detector trains through its own class (its loss encodes the boxes);
    # clone_model would give a plain functional model
    copy = (
        type(model).from_config(model.get_config())
        if is_detector(model)
        else keras.models.clone_model(model)
    )
    # a task whose models bring their losses (a keras-hub detector) gives none
    options = task.compile_options(None, copy)
    copy.compile(optimizer="sgd", **({"loss": options["loss"]} if "loss" in options else {}))
    rng = np.random.default_rng(seed)
    x = rng.random((batch, *tuple(model.inputs[0].shape[1:])), dtype=np.float32)
    y = task.random_targets(tuple(model.outputs[0].shape), batch, rng)

    def step():
        # Keras' own method: keras-hub's override (its PipelineModel, detectors included)
        # turns a dict of targets into one tensor and fails; without a preprocessor it
        # has nothing else to do
        return keras.Model.train_on_batch(copy, x, y)

    return step


def _pairs(results: dict, batch: int) -> dict:
    plain, attended = results["plain"], results["attention"]
    return {
        "batch": batch,
        "plain": _timing(plain),
        "attention": _timing(attended),
        "ratio": attended["ratio"],
        "paired_ratio": attended["paired_ratio"],
        "overhead_pct": 100.0 * (attended["ratio"] - 1.0),
    }


def run_bench(
    model: str = "emotion_cnn",
    *,
    task: str = "classification",
    attention: str = "se",
    reduction: float | None = None,
    batch_sizes: tuple[int, ...] = (1, 16),
    train_batch_size: int | None = 16,
    rounds: int = 30,
    warmup: int = 3,
    allow_h5: bool = False,
    fused: bool = True,
    progress: bool | Callable[[str], None] = False,
    image_size: int | None = None,
) -> dict:
    """What attention costs one model: parameters, FLOPs, inference and training-step time.

    The plain and the attention model are timed interleaved in one process (A B, B A, ...,
    after ``warmup`` untimed calls each; :func:`time_interleaved`), inference per batch
    size, then one training step (SGD) at ``train_batch_size``.

    Args:
        model: ``"emotion_cnn"`` (48x48x1, 7 classes), ``"resnet<depth>"`` (ImageNet
            depths at 224x224x3 with 1000 classes, CIFAR depths at 32x32x3 with 10),
            ``"unet"`` (task ``segmentation``: 128x128x1, 5 classes), ``"retinanet"``
            (task ``detection``: keras-hub's RetinaNet on a ResNet-18, 320x320x3, 7
            classes; the network's outputs are timed, not their decoding), or a
            ``.keras`` file: with attention layers, they are dropped for the plain model;
            without, ``attention`` is inserted (``insert_attention``, identity init).
        task: The model's task (:func:`senet.tasks.get_task`): the training step's loss and
            random targets are its own. A name must be one of the task's networks; a
            task's other models are benched from their file (a run's ``model.keras``).
        attention: The attention kind compared with no attention (``"se"``, ...); for a
            file with attention layers the result names their classes instead.
        reduction: Its reduction ratio (default: the builder's: 8 emotion_cnn, 16 ResNet).
        batch_sizes: Inference batch sizes.
        train_batch_size: Batch of the timed training step; None skips it.
        rounds: Timed calls of each model per measurement.
        warmup: Untimed calls of each first.
        allow_h5: Accept a legacy ``.h5`` file (see :func:`senet.layers.load_model`).
        fused: Time inference on the path users get
            (:func:`senet.models.fused.fuse_for_inference`), like for like: the plain
            model's residual tails are folded the same way (``fold_plain``). False times
            both models as built. Training always runs the models as built.
        progress: As :func:`time_interleaved`.
        image_size: The side of a named network's square input (default as above);
            None for a file.

    Returns:
        A JSON-ready dict (``senet bench --json``)::

            {"schema": "senet.bench/2", "model": str, "task": str, "attention": str,
             "reduction": float | None, "input_shape": [int, ...],
             "settings": {"rounds": int, "warmup": int, "batch_sizes": [int, ...],
                          "train_batch_size": int | None},
             "machine": {...machine_info()},
             "params": {"plain": int, "attention": int, "overhead_pct": float},
             "flops": {"plain": int, "attention": int, "overhead_pct": float},
             "inference": [TIMING, ...],          # one per batch size
             "inference_path": {"plain": str, "attention": str},  # "fused" or "as built"
             "train_step": TIMING | None}
            TIMING = {"batch": int, "plain": T, "attention": T, "ratio": float,
                      "paired_ratio": float, "overhead_pct": float}
            T = {"median_ms": float, "min_ms": float, "max_ms": float,
                 "iqr_ms": [float, float]}

        ``ratio`` is the attention model's median over the plain one's, ``paired_ratio``
        the median of the per-round ratios, ``overhead_pct`` ``100 * (ratio - 1)``; FLOPs
        are :func:`count_flops` at batch 1 (2 per multiply-add).

    Example:
        >>> result = run_bench("emotion_cnn", batch_sizes=(1,), rounds=5)  # doctest: +SKIP
        >>> result["params"]["overhead_pct"]  # doctest: +SKIP
        1.93...
    """
    from senet.checks import check_number

    if not isinstance(model, str | os.PathLike):
        raise ValueError(f"`model` must be a model name or a .keras file, got {model!r}")
    model = os.fspath(model)
    if reduction is not None:
        reduction = check_number("reduction", reduction, minimum=1)
    batch_sizes = tuple(batch_sizes)
    if not batch_sizes:
        raise ValueError(f"`batch_sizes` must be a non-empty list, got {list(batch_sizes)!r}")
    for batch in (*batch_sizes, *(() if train_batch_size is None else (train_batch_size,))):
        check_number("batch size", batch, integer=True, minimum=1)
    check_count("rounds", rounds, 1)
    check_count("warmup", warmup, 0)
    from senet.tasks import get_task

    task = get_task(task)
    if not os.path.isfile(model) and model not in (task.models or ()):
        networks = f" ({', '.join(task.models)})" if task.models else ""
        raise ValueError(
            f"`model` must be a .keras file or a network of the task {task.name!r}{networks}, "
            f"got {model!r}"
        )
    if image_size is not None:
        image_size = check_number("image_size", image_size, integer=True, minimum=16)
        if os.path.isfile(model):
            raise ValueError("`image_size` is for a named network; a file has its own")
    plain, attended, name, attention = _bench_pair(
        model, attention, reduction, allow_h5, image_size
    )
    pair = {"plain": plain, "attention": attended}
    params = {key: count_params(m) for key, m in pair.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # layers count_flops does not know count 0
        flops = {key: int(count_flops(m)) for key, m in pair.items()}
    shape = tuple(int(d) for d in plain.inputs[0].shape[1:])
    inferred, paths = pair, {key: "as built" for key in pair}
    if fused:
        from senet.models.fused import fuse_for_inference

        folded = {key: fuse_for_inference(m, fold_plain=True) for key, m in pair.items()}
        inferred = {key: m for key, (m, _) in folded.items()}
        paths = {key: "fused" if done else "as built" for key, (_, done) in folded.items()}
    inference = []
    for batch in batch_sizes:
        x = np.random.default_rng(0).random((batch, *shape), dtype=np.float32)
        timed = latency_interleaved(inferred, x, rounds=rounds, warmup=warmup, progress=progress)
        inference.append(_pairs(timed, batch))
    train_step = None
    if train_batch_size is not None:
        steps = {key: _train_step(m, train_batch_size, task) for key, m in pair.items()}
        timed = time_interleaved(steps, rounds=rounds, warmup=warmup, progress=progress)
        train_step = _pairs(timed, train_batch_size)
    return {
        "schema": BENCH_SCHEMA,
        "model": name,
        "task": task.name,
        "attention": attention,
        "reduction": reduction,
        "input_shape": list(shape),
        "settings": {
            "rounds": rounds,
            "warmup": warmup,
            "batch_sizes": list(batch_sizes),
            "train_batch_size": train_batch_size,
        },
        "machine": machine_info(),
        "params": {**params, "overhead_pct": 100.0 * (params["attention"] / params["plain"] - 1)},
        "flops": {**flops, "overhead_pct": 100.0 * (flops["attention"] / flops["plain"] - 1)},
        "inference": inference,
        "inference_path": paths,
        "train_step": train_step,
    }


def format_bench(result: dict) -> str:
    """:func:`run_bench`'s result as a plain-text table."""
    params, flops = result["params"], result["flops"]
    lines = [
        f"{result['model']} {'x'.join(map(str, result['input_shape']))}: plain vs "
        f"{result['attention']}"
        + (f" (r={result['reduction']:g})" if result["reduction"] is not None else ""),
        f"{'':<18}{'plain':>14}{result['attention']:>14}{'overhead':>10}",
        f"{'parameters':<18}{params['plain']:>14,}{params['attention']:>14,}"
        f"{params['overhead_pct']:>+9.2f}%",
        f"{'FLOPs (batch 1)':<18}{flops['plain']:>14,}{flops['attention']:>14,}"
        f"{flops['overhead_pct']:>+9.2f}%",
        "",
        f"{'time (ms)':<18}{'plain median':>14}{'attn median':>14}{'overhead':>10}"
        f"  {'plain min-max':>17}  {'attn min-max':>17}",
    ]
    timings = [(f"inference b={t['batch']}", t) for t in result["inference"]]
    if result["train_step"] is not None:
        timings.append((f"train step b={result['train_step']['batch']}", result["train_step"]))
    for label, timing in timings:
        plain, attended = timing["plain"], timing["attention"]
        lines.append(
            f"{label:<18}{plain['median_ms']:>14.2f}{attended['median_ms']:>14.2f}"
            f"{timing['overhead_pct']:>+9.1f}%"
            f"  {plain['min_ms']:>8.2f}-{plain['max_ms']:<8.2f}"
            f"  {attended['min_ms']:>8.2f}-{attended['max_ms']:<8.2f}"
        )
    settings, machine = result["settings"], result["machine"]
    path = result.get("inference_path") or {}
    if path:
        lines.append(
            f"inference path: plain {path.get('plain')}, {result['attention']} "
            f"{path.get('attention')} (training: as built)"
        )
    lines += [
        "",
        f"{settings['rounds']} rounds interleaved (A B, B A, ...) after {settings['warmup']} "
        f"warm-up calls each; {machine.get('cpu')}, {machine.get('cores')} cores, "
        f"{machine.get('backend')}",
    ]
    return "\n".join(lines)
