"""Multi-worker training throughput: images/second on 1 process and on N local workers, and
what one step's gradient all-reduce costs (BENCHMARKS.md, "Multi-worker training").

Throughput comes from real `senet train` runs (the per-epoch ``seconds`` of history.csv, the
first epoch left out: it traces and compiles). The all-reduce is timed on its own: every
worker builds the same emotion CNN under MultiWorkerMirroredStrategy and all-reduces
gradient-sized tensors (one per trainable variable, as a train step does) in a
``tf.function``, many times; the mean is one step's communication.

    python benchmarks/bench_multiworker.py [--quick] [--workers 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _train(args: list[str], workers: int, out: Path, timeout: float) -> dict:
    command = [sys.executable, "-m", "senet", "train", *args, "--out", str(out), "--quiet"]
    if workers > 1:
        command[4:4] = ["--workers", str(workers), "--timeout", str(timeout)]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, timeout=timeout + 60)
    wall = time.perf_counter() - started
    with open(out / "history.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    seconds = [float(row["seconds"]) for row in rows]
    return {"wall_seconds": round(wall, 1), "epoch_seconds": seconds}


def _allreduce_worker(repeats: int) -> None:
    """One worker's part of the all-reduce timing (run by the launcher)."""
    from senet.distributed import is_chief, multi_worker_strategy

    strategy = multi_worker_strategy()
    import tensorflow as tf

    from senet.train import build_model

    with strategy.scope():
        model = build_model("emotion_cnn", input_shape=(48, 48, 1), num_classes=7)
    shapes = [tuple(variable.shape) for variable in model.trainable_variables]

    @tf.function
    def step():
        def replica():
            context = tf.distribute.get_replica_context()
            return context.all_reduce("SUM", [tf.ones(shape) for shape in shapes])

        return strategy.run(replica)

    step()  # trace
    started = time.perf_counter()
    for _ in range(repeats):
        result = step()
    float(tf.reduce_sum(strategy.experimental_local_results(result[0])[0]))
    per_step = (time.perf_counter() - started) / repeats
    if is_chief():
        floats = sum(int(tf.reduce_prod(shape)) for shape in shapes)
        print(json.dumps({"allreduce_ms": round(per_step * 1000, 2), "floats": floats}))


def _allreduce(workers: int, repeats: int, timeout: float) -> dict:
    from senet.launch import launch

    out = io.StringIO()
    program = [sys.executable, __file__, "--allreduce-worker", str(repeats)]
    launch([], workers, timeout=timeout, stdout=out, stderr=io.StringIO(), program=program)
    return json.loads(out.getvalue().strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json")
    parser.add_argument("--allreduce-worker", type=int, metavar="REPEATS", help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args(argv)
    if args.allreduce_worker:
        _allreduce_worker(args.allreduce_worker)
        return 0
    size, epochs, repeats = (700, 3, 20) if args.quick else (2100, 4, 100)
    train_args = ["--data", "synthetic", "--synthetic-size", str(size), "--epochs", str(epochs)]
    train_args += ["--batch-size", "64", "--no-augment"]
    train_images = int(size * 0.8)
    result = {"train_images": train_images, "epochs": epochs, "batch_size": 64, "runs": {}}
    with tempfile.TemporaryDirectory() as folder:
        for workers in (1, args.workers):
            run = _train(train_args, workers, Path(folder) / f"w{workers}", timeout=1800)
            steady = run["epoch_seconds"][1:]
            run["images_per_second"] = round(train_images * len(steady) / sum(steady), 1)
            result["runs"][workers] = run
    result["allreduce"] = {
        1: _allreduce(1, repeats, 600),
        args.workers: _allreduce(args.workers, repeats, 600),
    }
    steps = -(-train_images // 64)
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print(f"Command: `python benchmarks/bench_multiworker.py{' --quick' if args.quick else ''}`")
    print("\n| processes | images/s (steady epochs) | s/epoch | all-reduce ms/step |")
    print("|---|---|---|---|")
    for workers, run in result["runs"].items():
        reduce_ms = result["allreduce"][workers]["allreduce_ms"]
        per_epoch = sum(run["epoch_seconds"][1:]) / len(run["epoch_seconds"][1:])
        print(f"| {workers} | {run['images_per_second']} | {per_epoch:.2f} | {reduce_ms} |")
    print(f"\n{steps} steps/epoch; {result['allreduce'][1]['floats']} gradient floats per step")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
