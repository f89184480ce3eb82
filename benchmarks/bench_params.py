"""What SE adds in parameters and FLOPs, computed by senet (no timing, no training).

Prints a Markdown table: SE-ResNet-50 (r=16) with SE in every stage and without SE in the
last stage, against ResNet-50; the emotion CNN (r=8) against the plain one. Next to each,
the claims it checks: the paper's ~10% (SE-ResNet-50) and ~4% without the last stage, and
the seed's "~2% more parameters".

    python benchmarks/bench_params.py        # about 20 s on 2 cores
"""

from __future__ import annotations

import os
import shlex
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    from senet.bench import count_flops, count_params, machine_info
    from senet.models import emotion_cnn, resnet

    rows = []

    def compare(label, plain, attended, claim):
        p0, p1 = count_params(plain), count_params(attended)
        f0 = count_flops(plain, batch=1, macs_only=True)
        f1 = count_flops(attended, batch=1, macs_only=True)
        rows.append(
            f"| {label} | {p0:,} | {p1:,} | {p1 - p0:+,} | {100 * (p1 - p0) / p0:+.2f}% | "
            f"{f0 / 1e9:.4f} | {f1 / 1e9:.4f} | {100 * (f1 - f0) / f0:+.3f}% | {claim} |"
        )

    shape = (224, 224, 3)
    base = resnet(50, input_shape=shape, num_classes=1000)
    compare(
        "SE-ResNet-50, r=16, SE in every stage",
        base,
        resnet(50, input_shape=shape, num_classes=1000, attention="se", reduction=16),
        "paper: ~10% (2.5M)",
    )
    compare(
        "SE-ResNet-50, r=16, no SE in the last stage",
        base,
        resnet(
            50,
            input_shape=shape,
            num_classes=1000,
            attention="se",
            reduction=16,
            stages=(2, 3, 4),
        ),
        "paper: ~4%",
    )
    compare(
        "emotion CNN 48x48x1, r=8",
        emotion_cnn(attention=None),
        emotion_cnn(attention="se", reduction=8),
        "seed: ~2%",
    )
    info = machine_info()
    print(
        f"Machine: {info.get('cpu', '?')}, {info.get('cores', '?')} cores; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; command: "
        f"`python {shlex.join(sys.argv)}`\n"
    )
    print(
        "| model | params plain | params with SE | added | added % | GMACs plain | "
        "GMACs with SE | MACs % | claim |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
