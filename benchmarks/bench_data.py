"""How fast the data side is: drawing synthetic faces, and the tf.data pipeline's throughput.

Two questions, each timed in one process:

* ``synthetic_expressions(N, image_size=48, seed=0)``: seconds and images/s, the median of
  a few repeats (the target: 10,000 images in under 10 s on a 2-core CPU);
* ``make_dataset(..., batch_size=64, shuffle=True)`` over one epoch of those images, with
  augmentation off and on: batches/s and images/s. The first epoch of each pipeline (tracing
  the map function, filling the shuffle buffer) is reported apart; later epochs are timed
  round-robin, the starting pipeline rotating, and summarised by medians. When
  ``senet.data.augment_batch`` (the stateless augmentation training uses) exists it is timed
  too, mapped once per batch like ``make_dataset``'s augmentation.

Only the input side is timed: batches are pulled from the iterator and dropped.

    python benchmarks/bench_data.py            # full run, about 30-60 s on 2 cores
    python benchmarks/bench_data.py --quick    # a smoke run, a few seconds
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def time_synthetic(n: int, image_size: int, repeats: int) -> dict:
    """Seconds per ``synthetic_expressions(n)`` call, ``repeats`` times (same seed each)."""
    from senet.data import synthetic_expressions

    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        synthetic_expressions(n, image_size=image_size, seed=0)
        times.append(time.perf_counter() - begin)
    median = statistics.median(times)
    return {
        "n": n,
        "image_size": image_size,
        "times_s": times,
        "median_s": median,
        "images_per_s": n / median,
    }


def _stateless_dataset(images, batch_size: int, seed: int):
    """make_dataset's pipeline with train.py's stateless ``augment_batch`` as the map."""
    import tensorflow as tf

    from senet.data import augment_batch

    x = np.asarray(images.x, np.float32)
    y = np.asarray(images.y).astype(np.int32)
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    dataset = dataset.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size).enumerate()

    def _augment(step, batch):
        batch_x, batch_y = batch
        return augment_batch(batch_x, seed=tf.stack([tf.constant(seed, tf.int64), step])), batch_y

    return dataset.map(_augment, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _epoch_seconds(dataset) -> tuple[float, int]:
    begin = time.perf_counter()
    batches = 0
    for _ in dataset:
        batches += 1
    return time.perf_counter() - begin, batches


def time_pipelines(images, batch_size: int, rounds: int) -> dict:
    """Epoch times of the pipelines, first epoch apart, then ``rounds`` round-robin epochs."""
    import senet.data as data
    from senet.data import make_dataset

    pipelines = {
        "augment off": make_dataset(images, batch_size, shuffle=True, augment=False),
        "augment on (Keras layers)": make_dataset(images, batch_size, shuffle=True, augment=True),
    }
    if "augment_batch" in dir(data):
        pipelines["augment on (stateless augment_batch)"] = _stateless_dataset(
            images, batch_size, seed=0
        )
    names = list(pipelines)
    first = {name: _epoch_seconds(pipelines[name]) for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(rounds):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(_epoch_seconds(pipelines[name])[0])
    results = {}
    for name in names:
        seconds, batches = first[name]
        median = statistics.median(times[name])
        results[name] = {
            "batches": batches,
            "first_epoch_s": seconds,
            "epoch_times_s": times[name],
            "median_epoch_s": median,
            "batches_per_s": batches / median,
            "images_per_s": len(images) / median,
        }
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("-n", type=int, help="images (default 10000; --quick 700)")
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--repeats", type=int, help="synthetic repeats (default 3; --quick 1)")
    parser.add_argument("--rounds", type=int, help="timed epochs a pipeline (default 5; quick 1)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--json", help="also write every sample to this file")
    args = parser.parse_args(argv)
    n = args.n or (700 if args.quick else 10_000)
    repeats = args.repeats or (1 if args.quick else 3)
    rounds = args.rounds or (1 if args.quick else 5)

    from senet.bench import machine_info
    from senet.data import EMOTIONS, ImageSet, synthetic_expressions

    started = time.time()
    info = machine_info()
    load_before = _load()
    synthetic = time_synthetic(n, args.image_size, repeats)
    load_synthetic = _load()
    x, y, _ = synthetic_expressions(n, image_size=args.image_size, seed=0)
    pipelines = time_pipelines(ImageSet(x, y, tuple(EMOTIONS)), args.batch_size, rounds)
    load_after = _load()

    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
    print(f"\n## Data: synthetic faces and the tf.data pipeline, {n:,} images\n")
    print(
        f"Machine: {info['cpu']}, {info['cores']} cores; {info['date']}; TensorFlow "
        f"{info.get('tensorflow', '-')}, Keras {info['keras']}; load average (1, 5, 15 min) "
        f"before: {load_before}, after synthetic: {load_synthetic}, after: {load_after}; "
        f"{time.time() - started:.0f} s.\n"
    )
    print(f"Command: `{command}`\n")
    print(f"| what | {repeats} repeats: median s (min-max) | images/s |")
    print("|---|---:|---:|")
    print(
        f"| `synthetic_expressions({n}, image_size={args.image_size})` | "
        f"{synthetic['median_s']:.2f} ({min(synthetic['times_s']):.2f}-"
        f"{max(synthetic['times_s']):.2f}) | {synthetic['images_per_s']:,.0f} |"
    )
    print(
        f"\n| pipeline (batch {args.batch_size}, shuffle) | batches | first epoch s | "
        f"median epoch s ({rounds} rounds) | batches/s | images/s |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in pipelines.items():
        print(
            f"| {name} | {r['batches']} | {r['first_epoch_s']:.2f} | {r['median_epoch_s']:.2f} | "
            f"{r['batches_per_s']:.1f} | {r['images_per_s']:,.0f} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "machine": info,
                    "command": command,
                    "load_average": {
                        "before": load_before,
                        "after_synthetic": load_synthetic,
                        "after": load_after,
                    },
                    "synthetic": synthetic,
                    "pipelines": pipelines,
                },
                f,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
