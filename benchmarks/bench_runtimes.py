"""What SE costs at inference in each runtime senet exports to, like for like.

For each model pair (the emotion CNN at 48x48x1 and ResNet-50 at 224x224x3, plain and with
SE, untrained, same seed) the plain and the SE model are run in:

* Keras (TensorFlow, a ``tf.function``), on the path ``senet bench`` uses: the SE model with
  its residual tails fused (``fuse_for_inference``) and the plain model folded the same way;
* the same Keras models as one XLA-compiled ``tf.function`` (``jit_compile=True``);
* TFLite float32 (LiteRT, XNNPACK, its default threads) and ONNX Runtime (CPU, its default
  threads), each file written by ``senet.export.export_model`` with its parity check. The
  converters fold batch norm into the convolutions in both models alike, so each pair is
  compared like for like inside its runtime.

Each runtime's plain and SE model are timed interleaved (A B, B A, ...) by
``senet.bench.time_interleaved``, one runtime after the other: timing all runtimes in
one loop let ONNX Runtime's spinning worker threads slow whatever ran next (a Keras
ResNet-50 took 97 ms instead of 67). SE's overhead in a runtime is the median over
rounds of (SE time / plain time in the same round), printed with the medians and IQRs. Prints a
Markdown section for BENCHMARKS.md; ``--json`` keeps every sample.

    python benchmarks/bench_runtimes.py                      # both models, about 10 minutes
    python benchmarks/bench_runtimes.py --models emotion_cnn --rounds 50   # about a minute
    python benchmarks/bench_runtimes.py --quick          # a smoke run, about 20 seconds
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

# model name -> (input shape, batch sizes)
MODELS = {
    "emotion_cnn": ((48, 48, 1), (1, 64)),
    "resnet50": ((224, 224, 3), (1, 16)),
}
RUNTIMES = ("Keras", "Keras XLA", "TFLite float32", "ONNX Runtime")


def _build(name: str, attention: str | None):
    import keras

    from senet.models import emotion_cnn, resnet

    keras.utils.set_random_seed(0)
    if name == "emotion_cnn":
        return emotion_cnn(attention=attention)
    return resnet(50, input_shape=MODELS[name][0], num_classes=1000, attention=attention)


def _keras_run(model, x, jit_compile=False):
    import tensorflow as tf

    tensor = tf.convert_to_tensor(x)
    function = tf.function(lambda t: model(t, training=False), jit_compile=jit_compile)
    return lambda: function(tensor).numpy()


def run(name: str, rounds: int, workdir: Path, log, batches=None) -> dict:
    """Build, fuse and export the pair, then time every runtime at each batch size."""
    from senet.bench import time_interleaved
    from senet.export import export_model, load_exported
    from senet.models import fuse_for_inference

    shape, default_batches = MODELS[name]
    batches = default_batches if batches is None else batches
    results = {"model": name, "input_shape": shape, "batches": {}, "sizes": {}}
    runs_for = {}
    for variant, attention in (("plain", None), ("se", "se")):
        model = _build(name, attention)
        fused, was_fused = fuse_for_inference(model, fold_plain=True)
        log(f"{name} {variant}: built ({'fused' if was_fused else 'as built'} for Keras)")
        exported = {}
        for runtime, fmt, suffix in (
            ("TFLite float32", "tflite", "tflite"),
            ("ONNX Runtime", "onnx", "onnx"),
        ):
            path = workdir / f"{name}_{variant}.{suffix}"
            begin = time.perf_counter()
            result = export_model(model, path, format=fmt, samples=8)
            log(
                f"{name} {variant}: {runtime} written in {time.perf_counter() - begin:.0f} s, "
                f"max abs diff {result.max_abs_diff:.1e}"
            )
            exported[runtime] = load_exported(path)
            results["sizes"][f"{runtime} {variant}"] = result.size_bytes
        runs_for[variant] = (fused, exported)

    for batch in batches:
        x = np.random.default_rng(0).random((batch, *shape), dtype=np.float32)
        count = rounds if batch == 1 else max(5, rounds // 4)
        timed, overheads = {}, {}
        for runtime in RUNTIMES:
            runs = {}
            for variant in ("plain", "se"):
                fused, exported = runs_for[variant]
                if runtime == "Keras":
                    runs[variant] = _keras_run(fused, x)
                elif runtime == "Keras XLA":
                    runs[variant] = _keras_run(fused, x, jit_compile=True)
                else:
                    runs[variant] = lambda model=exported[runtime], x=x: model(x)
            log(f"{name} batch {batch}, {runtime}: plain and SE, {count} rounds")
            pair = time_interleaved(runs, rounds=count, warmup=3, progress=log)
            for variant, entry in pair.items():
                timed[f"{runtime} {variant}"] = entry
            # the median over rounds of SE / plain in the same round
            overheads[runtime] = 100 * (pair["se"]["paired_ratio"] - 1)
        results["batches"][batch] = {"rounds": count, "timed": timed, "overhead_pct": overheads}
    return results


def format_markdown(results: list[dict], command: str, seconds: float) -> str:
    from senet.bench import machine_info

    info = machine_info()
    lines = [
        f"Machine: {info.get('cpu', 'CPU')}, {info.get('cores', '?')} cores; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average "
        f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}; {seconds:.0f} s.",
        "",
        f"Command: `{command}`",
        "",
    ]
    for result in results:
        shape = "x".join(map(str, result["input_shape"]))
        lines += [
            f"{result['model']} {shape}, untrained, plain vs SE; ms are medians (IQR); "
            "SE overhead is the median over rounds of SE / plain in the same round.",
            "",
            "| runtime | batch | rounds | plain ms | SE ms | SE overhead |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for batch, entry in result["batches"].items():
            for runtime in RUNTIMES:
                plain, se = entry["timed"][f"{runtime} plain"], entry["timed"][f"{runtime} se"]
                lines.append(
                    f"| {runtime} | {batch} | {entry['rounds']} | {plain['ms']:.2f} "
                    f"({plain['iqr_ms'][0]:.2f}-{plain['iqr_ms'][1]:.2f}) | {se['ms']:.2f} "
                    f"({se['iqr_ms'][0]:.2f}-{se['iqr_ms'][1]:.2f}) | "
                    f"{entry['overhead_pct'][runtime]:+.1f}% |"
                )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument(
        "--rounds", type=int, default=100, help="rounds at batch 1 (a quarter, at least 5, above)"
    )
    parser.add_argument("--json", help="write every sample here")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: the emotion CNN, batch 1, 5 rounds"
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    batches = None
    if args.quick:
        args.models, args.rounds, batches = ["emotion_cnn"], 5, (1,)

    def log(line):
        print(line, file=sys.stderr, flush=True)

    begin = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="senet-runtimes-") as workdir:
        results = [run(name, args.rounds, Path(workdir), log, batches) for name in args.models]
    command = "python benchmarks/bench_runtimes.py " + shlex.join(argv or sys.argv[1:])
    print(format_markdown(results, command.strip(), time.perf_counter() - begin))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
