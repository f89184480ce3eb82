"""Latency of the emotion CNN at batch 1 in Keras and in each exported format, with file sizes.

The model (``emotion_cnn()``: 48x48x1, SE, untrained unless ``--model`` names a ``.keras``
file) is exported with :func:`senet.export.export_model` to SavedModel, TFLite (float32,
dynamic, float16, int8 calibrated on synthetic faces) and ONNX, each opened with
:func:`senet.export.load_exported` (LiteRT, onnxruntime, TensorFlow), and all of them are
timed round-robin in one process by :func:`senet.bench.time_interleaved` on one synthetic
face. Keras runs as a ``tf.function`` of ``model(x, training=False)``. Every runtime keeps
its default thread settings. The parity columns compare each file with Keras on 100
held-out synthetic faces (an untrained model has near-tied outputs, so its quantised top-1
agreement is lower than a trained model's).

The emotion CNN has no residual units, so ``fuse_se`` has nothing to fuse in it: there is
no separate "fused Keras" row.

    python benchmarks/bench_export.py            # 200 rounds, about a minute on 2 cores
    python benchmarks/bench_export.py --quick    # a smoke run, 20 rounds
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

# (name, format, quantize, file name)
VARIANTS = (
    ("SavedModel (TensorFlow)", "savedmodel", None, "saved_model"),
    ("TFLite float32", "tflite", None, "float32.tflite"),
    ("TFLite dynamic", "tflite", "dynamic", "dynamic.tflite"),
    ("TFLite float16", "tflite", "float16", "float16.tflite"),
    ("TFLite int8", "tflite", "int8", "int8.tflite"),
    ("ONNX Runtime", "onnx", None, "model.onnx"),
)


def _keras_run(model, x):
    import tensorflow as tf

    tensor = tf.convert_to_tensor(x)
    function = tf.function(lambda t: model(t, training=False))
    return lambda: function(tensor).numpy()


def run(model_path: str | None, rounds: int, workdir: Path) -> dict:
    """Export every variant into ``workdir``, time them all, return the rows."""
    from senet.bench import time_interleaved
    from senet.export import export_model, load_exported, parity, sample_inputs
    from senet.layers import load_model
    from senet.models import emotion_cnn

    if model_path is None:
        import keras

        keras.utils.set_random_seed(0)
        model = emotion_cnn()
        model_path = str(workdir / "model.keras")
        model.save(model_path)
    else:
        model = load_model(model_path)
    face = sample_inputs(model.input_shape, 1, seed=123)
    held_out = sample_inputs(model.input_shape, 100, seed=1)
    reference = np.asarray(model(held_out, training=False))

    rows = {"Keras (tf.function)": {"bytes": os.path.getsize(model_path)}}
    runs = {"Keras (tf.function)": _keras_run(model, face)}
    for name, format, quantize, file_name in VARIANTS:
        # the check is left to the table: an untrained model may miss int8's 95% top-1
        result = export_model(
            model, workdir / file_name, format=format, quantize=quantize, check=False
        )
        exported = load_exported(result.path)
        max_abs_diff, agreement = parity(reference, exported(held_out))
        rows[name] = {
            "bytes": result.size_bytes,
            "max_abs_diff": max_abs_diff,
            "top1_agreement": agreement,
        }
        runs[name] = lambda exported=exported: exported(face)
    timings = time_interleaved(runs, rounds=rounds, warmup=5, progress=True)
    for name, timing in timings.items():
        rows[name].update(ms=timing["ms"], iqr_ms=timing["iqr_ms"], ratio=timing["ratio"])
    return {
        "model": model_path,
        "input_shape": list(model.input_shape),
        "rounds": rounds,
        "rows": rows,
    }


def table(result: dict) -> str:
    """The Markdown table of :func:`run`'s rows."""
    lines = [
        "| runtime | median ms (IQR) | vs Keras | file size | max abs diff | top-1 agreement |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in result["rows"].items():
        q1, q3 = row["iqr_ms"]
        diff = f"{row['max_abs_diff']:.2g}" if "max_abs_diff" in row else "-"
        agreement = f"{row['top1_agreement']:.0%}" if "top1_agreement" in row else "-"
        lines.append(
            f"| {name} | {row['ms']:.3f} ({q1:.3f}-{q3:.3f}) | {row['ratio']:.2f}x | "
            f"{row['bytes'] / 1024:.1f} KiB | {diff} | {agreement} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a .keras file (default: an untrained emotion_cnn())")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="20 rounds")
    parser.add_argument("--json", metavar="PATH", help="also write the result here")
    args = parser.parse_args(argv)
    from senet.bench import machine_info

    with tempfile.TemporaryDirectory() as workdir:
        result = run(args.model, 20 if args.quick else args.rounds, Path(workdir))
    result["machine"] = machine_info()
    print(f"### Emotion CNN at batch 1 ({result['input_shape']}), {result['rounds']} rounds\n")
    print(table(result))
    print(
        f"\nCommand: `python {shlex.join(['benchmarks/bench_export.py', *(argv or sys.argv[1:])])}`"
    )
    print(f"Machine: {json.dumps(result['machine'])}; load average {os.getloadavg()[0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
