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
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from datetime import datetime, timezone

import keras
import numpy as np

from senet import graph
from senet.checks import fail
from senet.progress import Progress

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


def count_params(model: keras.Model) -> int:
    """Total number of weights (trainable and not, e.g. BN moving statistics)."""
    return int(sum(math.prod(v.shape) for v in model.weights))


# ----------------------------------------------------------------------------- FLOPs


def _prod(shape) -> int:
    return int(math.prod(int(d) for d in shape))


def _conv_flops(layer, in_shape, out_shape, macs_only):
    kernel = _prod(layer.kernel_size)
    channel_axis = -1 if layer.data_format == "channels_last" else 1
    in_channels = int(in_shape[channel_axis])
    groups = getattr(layer, "groups", 1)
    out_elems = _prod(out_shape)
    if isinstance(layer, keras.layers.SeparableConv2D | keras.layers.SeparableConv1D):
        depth = in_channels * layer.depth_multiplier
        spatial = out_elems // int(out_shape[channel_axis])
        macs = spatial * kernel * depth + spatial * depth * layer.filters
    elif isinstance(layer, keras.layers.DepthwiseConv2D | keras.layers.DepthwiseConv1D):
        macs = out_elems * kernel
    elif isinstance(
        layer,
        keras.layers.Conv1DTranspose | keras.layers.Conv2DTranspose | keras.layers.Conv3DTranspose,
    ):
        macs = _prod(in_shape) * kernel * layer.filters
    else:
        macs = out_elems * kernel * in_channels // groups
    bias = out_elems if layer.use_bias else 0
    return macs if macs_only else 2 * macs + bias


def _dense_flops(layer, in_shape, out_shape, macs_only):
    rows = _prod(in_shape[:-1])
    macs = rows * int(in_shape[-1]) * layer.units
    if macs_only:
        return macs
    bias = rows * layer.units if layer.use_bias else 0
    activation = _prod(out_shape) if _has_activation(layer) else 0
    return 2 * macs + bias + activation


def _has_activation(layer) -> bool:
    activation = getattr(layer, "activation", None)
    return activation is not None and activation is not keras.activations.linear


_ZERO_COST = (
    keras.layers.InputLayer,
    keras.layers.Flatten,
    keras.layers.Reshape,
    keras.layers.Permute,
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.SpatialDropout3D,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.ActivityRegularization,
    keras.layers.Concatenate,
    keras.layers.ZeroPadding1D,
    keras.layers.ZeroPadding2D,
    keras.layers.ZeroPadding3D,
    keras.layers.Cropping1D,
    keras.layers.Cropping2D,
    keras.layers.Cropping3D,
    keras.layers.Identity,
)
_ELEMENTWISE = (
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.PReLU,
    keras.layers.ELU,
    keras.layers.Softmax,
)
_MERGE = (
    keras.layers.Add,
    keras.layers.Subtract,
    keras.layers.Multiply,
    keras.layers.Maximum,
    keras.layers.Minimum,
    keras.layers.Average,
)
_POOL = (
    keras.layers.MaxPooling1D,
    keras.layers.MaxPooling2D,
    keras.layers.MaxPooling3D,
    keras.layers.AveragePooling1D,
    keras.layers.AveragePooling2D,
    keras.layers.AveragePooling3D,
)
_GLOBAL_POOL = (
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalAveragePooling3D,
    keras.layers.GlobalMaxPooling1D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.GlobalMaxPooling3D,
)
_CONV = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
)


def _layer_flops(layer, in_shapes, out_shape, macs_only, unknown):
    """FLOPs of one call of ``layer`` with concrete (batched) input and output shapes.

    A layer that counts itself (every senet layer: ``layer.flops(input_shape, output_shape,
    macs_only=...)``, the input shapes as a list for a layer of several inputs) is asked;
    Keras' own layers are counted here."""
    first = in_shapes[0]
    counts_itself = getattr(layer, "flops", None)
    if callable(counts_itself):
        shapes = first if len(in_shapes) == 1 else list(in_shapes)
        return int(counts_itself(shapes, out_shape, macs_only=macs_only))
    if isinstance(layer, _CONV):
        return _conv_flops(layer, first, out_shape, macs_only)
    if isinstance(layer, keras.layers.Dense):
        return _dense_flops(layer, first, out_shape, macs_only)
    if macs_only or isinstance(layer, _ZERO_COST):
        return 0
    if isinstance(layer, keras.layers.BatchNormalization):
        # Inference: one multiply and one add per element (scale and shift folded).
        return 2 * _prod(out_shape)
    if isinstance(layer, _ELEMENTWISE):
        return _prod(out_shape)
    if isinstance(layer, _MERGE):
        extra = 1 if isinstance(layer, keras.layers.Average) else 0
        return (len(in_shapes) - 1 + extra) * _prod(out_shape)
    if isinstance(layer, _POOL):
        return _prod(out_shape) * _prod(layer.pool_size)
    if isinstance(layer, _GLOBAL_POOL):
        return _prod(first)
    unknown.add(f"{layer.name} ({type(layer).__name__})")
    return 0


def _concrete(shape, batch: int, where: str) -> tuple[int, ...]:
    shape = (batch, *tuple(shape)[1:])
    if any(d is None for d in shape):
        raise ValueError(
            f"count_flops needs fully defined input shapes; {where} has shape {shape}. "
            "Build the model with a fixed `input_shape`."
        )
    return tuple(int(d) for d in shape)


def _nodes(model):
    """The call nodes of a functional (or built Sequential) model, inputs first."""
    try:
        return graph.nodes(model)
    except ValueError as error:
        raise ValueError(f"count_flops cannot walk this model: {error}") from error


def _model_flops(model, batch, macs_only, unknown, per_layer, prefix=""):
    total = 0
    for node in _nodes(model):
        layer = node.operation
        if node.is_input or layer is None:
            continue
        in_shapes = [_concrete(t.shape, batch, layer.name) for t in node.input_tensors]
        out_shape = _concrete(node.outputs[0].shape, batch, layer.name)
        if isinstance(layer, keras.Model):
            flops = _model_flops(layer, batch, macs_only, unknown, per_layer, prefix + layer.name)
        else:
            flops = _layer_flops(layer, in_shapes, out_shape, macs_only, unknown)
            key = prefix + "/" + layer.name if prefix else layer.name
            per_layer[key] = per_layer.get(key, 0) + flops
        total += flops
    return total


def count_flops(
    model: keras.Model, batch: int = 1, *, macs_only: bool = False, by_layer: bool = False
) -> int | dict[str, int]:
    """Analytic FLOPs of one inference forward pass (backend-independent).

    A multiply-add counts 2 FLOPs; biases, batch-norm (inference affine: 2 per
    element), activations, merges and SE's scale count 1 per element; pooling counts
    1 per element read (per window element for windowed pooling). SE layers count their
    squeeze (global pool), the excitation MLP and the scale. Layers of unknown types
    count 0 and raise a warning that names them.

    Args:
        model: A functional or built Sequential Keras model with fixed input shapes.
            Nested models are counted layer by layer.
        batch: Batch size of the pass.
        macs_only: Count multiply-accumulates of convolutions, Dense and SE's MLP only
            (the convention of the paper's "GFLOPs"), nothing else.
        by_layer: Return ``{layer name: FLOPs}`` instead of the total.

    Returns:
        The total as an int, or a dict by layer name.

    Example:
        >>> import keras
        >>> inputs = keras.Input((8, 8, 3))
        >>> outputs = keras.layers.Conv2D(4, 1, use_bias=False)(inputs)
        >>> count_flops(keras.Model(inputs, outputs))  # 2 * 64 positions * 3 * 4
        1536
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise fail("batch", "a positive integer", batch)
    unknown: set[str] = set()
    per_layer: dict[str, int] = {}
    total = _model_flops(model, batch, macs_only, unknown, per_layer)
    if unknown:
        warnings.warn(
            f"count_flops does not know these layer types and counted them as 0: "
            f"{', '.join(sorted(unknown))}",
            stacklevel=2,
        )
    return per_layer if by_layer else total


# --------------------------------------------------------------------------- latency


def _inference_fn(model: keras.Model, x) -> Callable[[], object]:
    """A compiled ``model(x, training=False)`` on ``x`` for the active backend.

    The returned callable runs one forward pass and waits for its result.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        fn = tf.function(lambda t: model(t, training=False))

        def run():
            return keras.tree.map_structure(lambda t: t.numpy(), fn(x))

        return run
    if backend == "jax":
        import jax

        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        x = jax.numpy.asarray(x)

        @jax.jit
        def fn(trainable, non_trainable, t):
            return model.stateless_call(trainable, non_trainable, t, training=False)[0]

        def run():
            return jax.block_until_ready(fn(trainable, non_trainable, x))

        return run
    if backend == "torch":
        import torch

        x = keras.ops.convert_to_tensor(x)

        def run():
            with torch.inference_mode():
                return model(x, training=False)

        return run
    raise ValueError(f"latency_ab does not support the {backend!r} backend.")


def _quartiles(values):
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def _check_count(name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"`{name}` must be an integer >= {low}, got {value!r}")


def time_interleaved(
    runs: dict[str, Callable[[], object]],
    *,
    rounds: int = 30,
    warmup: int = 3,
    number: int = 1,
    progress: bool | Callable[[str], None] = False,
) -> dict[str, dict]:
    """Milliseconds per call of several callables, timed round-robin in one process.

    After ``warmup`` untimed calls of each, every round times each callable once; round
    ``i`` starts with callable ``i mod n``, so none always runs first or after the same
    neighbour, and load that drifts during the run hits all of them alike.

    Args:
        runs: ``{name: callable}`` (no arguments); the first is the reference for the ratios.
        rounds: Timed samples of each callable.
        warmup: Untimed calls of each first (tracing, compilation, caches).
        number: Calls per timed sample (the sample is their mean), for very short calls.
        progress: ``True`` prints a line to stderr about every 10 seconds; a callable
            receives those lines instead.

    Returns:
        ``{name: {"ms": median, "iqr_ms": (q1, q3), "times_ms": [...], "ratio": median /
        reference median, "paired_ratio": median over rounds of the per-round ratio to the
        reference}}``.

    Example:
        >>> result = time_interleaved({"a": lambda: None, "b": lambda: None}, rounds=3)
        >>> sorted(result["b"])
        ['iqr_ms', 'ms', 'paired_ratio', 'ratio', 'times_ms']
    """
    if not runs:
        raise ValueError("`runs` must hold at least one callable, got runs={}")
    _check_count("rounds", rounds, 1)
    _check_count("warmup", warmup, 0)
    _check_count("number", number, 1)
    report = Progress(progress) if progress else None

    names = list(runs)
    for _ in range(warmup):
        for name in names:
            runs[name]()

    times: dict[str, list[float]] = {name: [] for name in names}
    start = last_report = time.perf_counter()
    for i in range(rounds):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            run = runs[name]
            begin = time.perf_counter()
            for _ in range(number):
                run()
            times[name].append((time.perf_counter() - begin) * 1e3 / number)
        now = time.perf_counter()
        if report is not None and (now - last_report >= 10 or i + 1 == rounds):
            last_report = now
            eta = (now - start) / (i + 1) * (rounds - i - 1)
            medians = ", ".join(f"{n} {statistics.median(times[n]):.1f}" for n in names)
            report(
                f"round {i + 1}/{rounds}: {medians} ms (medians so far); "
                f"{now - start:.0f} s elapsed, ~{eta:.0f} s left"
            )

    reference = times[names[0]]
    return {
        name: {
            "ms": statistics.median(values),
            "iqr_ms": _quartiles(values),
            "times_ms": values,
            "ratio": statistics.median(values) / statistics.median(reference),
            "paired_ratio": statistics.median(
                v / r for v, r in zip(values, reference, strict=True)
            ),
        }
        for name, values in times.items()
    }


def latency_interleaved(
    models: dict[str, keras.Model],
    x,
    *,
    rounds: int = 30,
    warmup: int = 3,
    number: int = 1,
    progress: bool | Callable[[str], None] = False,
) -> dict[str, dict]:
    """Inference latency of several models, timed round-robin in one process.

    Each model gets one compiled inference function (``tf.function`` on TensorFlow,
    ``jax.jit`` on JAX, eager ``inference_mode`` on PyTorch), timed by
    :func:`time_interleaved`: after ``warmup`` untimed calls of each, every round times
    each model once, the starting model rotating.

    Args:
        models: ``{name: model}``; the first is the reference for the ratios.
        x: One input batch (NumPy array or backend tensor), the same for all.
        rounds: Timed calls of each model.
        warmup: Untimed calls of each model first (tracing, compilation, caches).
        number: Calls per timed sample (the sample is their mean), for tiny models.
        progress: ``True`` prints a line to stderr about every 10 seconds; a callable
            receives those lines instead.

    Returns:
        As :func:`time_interleaved`, one entry per model.
    """
    if not models:
        raise ValueError("`models` must hold at least one model, got models={}")
    runs = {name: _inference_fn(model, x) for name, model in models.items()}
    return time_interleaved(runs, rounds=rounds, warmup=warmup, number=number, progress=progress)


def latency_ab(
    model_a: keras.Model,
    model_b: keras.Model,
    x,
    *,
    rounds: int = 30,
    warmup: int = 3,
    number: int = 1,
    progress: bool | Callable[[str], None] = False,
) -> dict:
    """Median inference latency of two models, measured interleaved in one process.

    Each model gets one compiled inference function (``tf.function`` on TensorFlow,
    ``jax.jit`` on JAX, eager ``inference_mode`` on PyTorch). After ``warmup`` calls
    of each, every round times A then B, and the next round B then A, so that neither
    model always runs first; load that drifts during the run hits both alike.

    Args:
        model_a: The reference model (e.g. ResNet-50).
        model_b: The model compared with it (e.g. SE-ResNet-50).
        x: One input batch (NumPy array or backend tensor), the same for both.
        rounds: Timed calls of each model.
        warmup: Untimed calls of each model first (tracing, allocation, caches).
        number: Calls per timed sample (the sample is their mean), for tiny models.
        progress: ``True`` prints a line to stderr about every 10 seconds; a callable
            receives those lines instead.

    Returns:
        A dict: ``a_ms``, ``b_ms`` (medians, milliseconds), ``ratio`` (``b_ms / a_ms``),
        ``overhead_pct`` (``100 * (ratio - 1)``), ``paired_ratio`` (median of the
        per-round ratios, robust to slow drift), ``a_iqr_ms``/``b_iqr_ms`` (first and
        third quartiles), ``a_times_ms``/``b_times_ms`` (every sample), ``rounds``,
        ``warmup``, ``number``, ``batch`` and ``backend``.

    Example:
        >>> import keras, numpy as np
        >>> a = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        >>> b = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8)])
        >>> result = latency_ab(a, b, np.zeros((1, 4), "float32"), rounds=3, warmup=1)
        >>> sorted(result)[:4]
        ['a_iqr_ms', 'a_ms', 'a_times_ms', 'b_iqr_ms']
    """
    results = latency_interleaved(
        {"a": model_a, "b": model_b},
        x,
        rounds=rounds,
        warmup=warmup,
        number=number,
        progress=progress,
    )
    a, b = results["a"], results["b"]
    return {
        "a_ms": a["ms"],
        "b_ms": b["ms"],
        "ratio": b["ratio"],
        "overhead_pct": 100.0 * (b["ratio"] - 1.0),
        "paired_ratio": b["paired_ratio"],
        "a_iqr_ms": a["iqr_ms"],
        "b_iqr_ms": b["iqr_ms"],
        "a_times_ms": a["times_ms"],
        "b_times_ms": b["times_ms"],
        "rounds": rounds,
        "warmup": warmup,
        "number": number,
        "batch": int(np.shape(x)[0]),
        "backend": keras.backend.backend(),
    }


def machine_info() -> dict[str, str | int]:
    """CPU model, core count, date, platform and library versions, for benchmark reports."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info: dict[str, str | int] = {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
    }
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
    with contextlib.suppress(OSError):
        info["load_average"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    return info


# --------------------------------------------------------------------------- senet bench

#: ``schema`` of :func:`run_bench`'s result (``senet bench --json``); raised when it changes.
BENCH_SCHEMA = "senet.bench/1"
#: What ``senet bench`` builds for a model name: ``(input shape, classes)``.
BENCH_MODELS = {"emotion_cnn": ((48, 48, 1), 7), "resnet": ((224, 224, 3), 1000)}


def _bench_pair(model: str, attention: str, reduction, allow_h5: bool):
    """``(plain, attended, name, attention)`` for a model name or a ``.keras`` file."""
    from senet import models
    from senet.checks import check_choice
    from senet.layers import kinds, load_model
    from senet.names import MODEL_NAMES, is_cifar_depth, resnet_depth

    attention = check_choice("attention", attention, kinds())
    options = {} if reduction is None else {"reduction": reduction}
    if model == "emotion_cnn":
        shape, classes = BENCH_MODELS["emotion_cnn"]
        plain = models.emotion_cnn(shape, classes, attention=None)
        attended = models.emotion_cnn(shape, classes, attention=attention, **options)
        return plain, attended, "emotion_cnn", attention
    depth = resnet_depth(model)
    if depth is not None:
        shape, classes = BENCH_MODELS["resnet"]
        if is_cifar_depth(depth):
            shape, classes = (32, 32, 3), 10
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
    from senet import layers
    from senet.models import insert_attention
    from senet.models.rewrite import rewrite

    kinds = (
        layers.SqueezeExcite,
        layers.EfficientChannelAttention,
        layers.SpatialSqueezeExcite,
        layers.ChannelSpatialSqueezeExcite,
        layers.CBAM,
    )
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


def _train_step(model: keras.Model, batch: int, seed: int = 0) -> Callable[[], object]:
    """One compiled training step (SGD, cross-entropy) of a copy of ``model`` on random data."""
    copy = keras.models.clone_model(model)
    copy.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(seed)
    x = rng.random((batch, *tuple(model.inputs[0].shape[1:])), dtype=np.float32)
    y = rng.integers(0, int(model.outputs[0].shape[-1]), size=(batch,))

    def step():
        return copy.train_on_batch(x, y)

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
    attention: str = "se",
    reduction: float | None = None,
    batch_sizes: tuple[int, ...] = (1, 16),
    train_batch_size: int | None = 16,
    rounds: int = 30,
    warmup: int = 3,
    allow_h5: bool = False,
    fused: bool = True,
    progress: bool | Callable[[str], None] = False,
) -> dict:
    """What attention costs one model: parameters, FLOPs, inference and training-step time.

    The plain and the attention model are timed interleaved in one process (A B, B A, ...,
    after ``warmup`` untimed calls each; :func:`time_interleaved`), inference per batch
    size, then one training step (SGD) at ``train_batch_size``.

    Args:
        model: ``"emotion_cnn"`` (48x48x1, 7 classes), ``"resnet<depth>"`` (ImageNet
            depths at 224x224x3 with 1000 classes, CIFAR depths at 32x32x3 with 10), or a
            ``.keras`` file: with attention layers, they are dropped for the plain model;
            without, ``attention`` is inserted (``insert_attention``, identity init).
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

    Returns:
        A JSON-ready dict (``senet bench --json``)::

            {"schema": "senet.bench/1", "model": str, "attention": str,
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
    _check_count("rounds", rounds, 1)
    _check_count("warmup", warmup, 0)
    plain, attended, name, attention = _bench_pair(model, attention, reduction, allow_h5)
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
        steps = {key: _train_step(m, train_batch_size) for key, m in pair.items()}
        timed = time_interleaved(steps, rounds=rounds, warmup=warmup, progress=progress)
        train_step = _pairs(timed, train_batch_size)
    return {
        "schema": BENCH_SCHEMA,
        "model": name,
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
