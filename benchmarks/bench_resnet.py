"""What SE costs in ResNet-50 on a CPU: parameters, FLOPs and interleaved inference latency.

Compares, in one process and round-robin (every round times every model once, the
starting model rotating), at 224x224 and batch sizes 1 and 16:

* ``resnet50``: stock ResNet-50 (``senet.models.resnet(50)``);
* ``resnet50_folded``: the same with BN folded into each residual tail
  (``fuse_se(model, fold_plain=True)``), the like-for-like baseline for the fused models;
* ``se_naive``: SE-ResNet-50, r=16, with the plain ``SqueezeExcite`` layers;
* ``se_fused_<impl>``: ``fuse_se(se_naive, implementation=<impl>)`` for each lever.

All weights are random (nothing is downloaded); latency does not depend on their values.
Prints a Markdown table with the machine, the date, the versions and the command.

    python benchmarks/bench_resnet.py            # full run, about 6-9 minutes on 2 cores
    python benchmarks/bench_resnet.py --quick    # a smoke run, about 1-2 minutes
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

MODELS = (
    "resnet50",
    "resnet50_folded",
    "se_naive",
    "se_fused_tf",
    "se_fused_xla",
    "se_fused_ops",
)
REFERENCE = {"se_naive": "resnet50", "se_fused_tf": "resnet50", "se_fused_xla": "resnet50"}
DESCRIPTIONS = {
    "resnet50": "ResNet-50 (stock)",
    "resnet50_folded": "ResNet-50, BN folded into residual tails",
    "se_naive": "SE-ResNet-50, Keras SqueezeExcite layers",
    "se_fused_tf": "SE-ResNet-50, fused tails, raw TF ops",
    "se_fused_xla": "SE-ResNet-50, fused tails, XLA per tail",
    "se_fused_ops": "SE-ResNet-50, fused tails, keras.ops",
}


def build_models(names, image_size: int) -> dict:
    from senet.models import resnet
    from senet.models.fused import fuse_se

    shape = (image_size, image_size, 3)
    stock = resnet(50, input_shape=shape)
    se = resnet(50, input_shape=shape, attention="se", reduction=16)
    builders = {
        "resnet50": lambda: stock,
        "resnet50_folded": lambda: fuse_se(stock, fold_plain=True, implementation="tf"),
        "se_naive": lambda: se,
        "se_fused_tf": lambda: fuse_se(se, implementation="tf"),
        "se_fused_xla": lambda: fuse_se(se, implementation="xla"),
        "se_fused_ops": lambda: fuse_se(se, implementation="ops"),
    }
    return {name: builders[name]() for name in names}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds: a smoke run")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--rounds", type=int, nargs="+", help="rounds per batch size")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--json", help="also write every sample to this file")
    args = parser.parse_args(argv)
    rounds = args.rounds or ([8, 2] if args.quick else [40, 10])
    if len(rounds) == 1:
        rounds = rounds * len(args.batches)
    if len(rounds) != len(args.batches):
        parser.error("--rounds needs one value, or one per batch size")
    names = ["resnet50"] + [name for name in args.models if name != "resnet50"]

    from senet.bench import count_flops, count_params, latency_interleaved, machine_info

    started = time.time()
    models = build_models(names, args.image_size)
    info = machine_info()
    results = {}
    for batch, count in zip(args.batches, rounds, strict=True):
        x = np.random.default_rng(0).normal(size=(batch, args.image_size, args.image_size, 3))
        print(f"batch {batch}: {count} rounds of {len(models)} models", file=sys.stderr)
        results[batch] = latency_interleaved(
            models, x.astype("float32"), rounds=count, warmup=2, progress=True
        )

    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
    print(f"\n## ResNet-50 with and without SE, {args.image_size}x{args.image_size}, CPU\n")
    print(
        f"Machine: {info['cpu']}, {info['cores']} cores; {info['date']}; TensorFlow "
        f"{info.get('tensorflow', '-')}, Keras {info['keras']} ({info['backend']}); "
        f"load average before: {info.get('load_average', '?')}, after: "
        f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}; {time.time() - started:.0f} s.\n"
    )
    print(f"Command: `{command}`\n")
    header = "| model | params | GFLOPs | GMACs |"
    rule = "|---|---:|---:|---:|"
    for batch, count in zip(args.batches, rounds, strict=True):
        header += f" batch {batch}: ms (IQR), {count} rounds | vs stock |"
        rule += "---:|---:|"
    print(header)
    print(rule)
    for name, model in models.items():
        row = (
            f"| {DESCRIPTIONS[name]} | {count_params(model):,} | "
            f"{count_flops(model) / 1e9:.3f} | {count_flops(model, macs_only=True) / 1e9:.3f} |"
        )
        for batch in args.batches:
            r = results[batch][name]
            q1, q3 = r["iqr_ms"]
            row += f" {r['ms']:.1f} ({q1:.1f}-{q3:.1f}) | {100 * (r['paired_ratio'] - 1):+.1f}% |"
        print(row)
    if "resnet50_folded" in models:
        print("\nSE cost against the like-for-like baseline (BN folded the same way):\n")
        for name in models:
            if name.startswith("se_fused"):
                parts = []
                for batch in args.batches:
                    ref, fused = results[batch]["resnet50_folded"], results[batch][name]
                    paired = np.median(np.asarray(fused["times_ms"]) / np.asarray(ref["times_ms"]))
                    parts.append(f"batch {batch}: {100 * (paired - 1):+.1f}%")
                print(f"- {DESCRIPTIONS[name]}: " + ", ".join(parts))
    print(
        "\n'vs stock' is the median over rounds of (model time / stock time in the same "
        "round); ms are medians with the interquartile range."
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "command": command, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
