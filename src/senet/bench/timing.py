"""Inference latency, timed interleaved: one compiled inference function per model, called
round-robin in one process (A B, B A, A B, ...) so that drifting machine load hits every
model alike (:func:`time_interleaved`, :func:`latency_interleaved`; :func:`latency_ab`
reports two models' medians and their ratio), and the machine a number was measured on.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone

import keras
import numpy as np

from senet.progress import Progress


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


def check_count(name: str, value, low: int) -> None:
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
    check_count("rounds", rounds, 1)
    check_count("warmup", warmup, 0)
    check_count("number", number, 1)
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
