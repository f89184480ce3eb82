"""How long importing timm's SE networks takes, and whether their parameter counts are timm's.

For each supported architecture: a random float32 state dict with exactly the tensors timm's
checkpoint holds (``senet.models.timm.expected_tensors``; running variances positive) is
written to a ``.safetensors`` file, then ``senet.models.timm.convert_timm`` reads it, builds
the network at the variant's evaluation size and sets every weight. Prints a Markdown table:
seconds (file read + build + load; one run each, so indicative) and trainable parameters
next to timm's published ``param_count`` (millions, from timm's model results tables).

    python benchmarks/bench_convert.py                 # every architecture, about 2-3 minutes
    python benchmarks/bench_convert.py seresnet50      # one
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

# timm's published parameter counts (millions), as its results tables print them.
PUBLISHED_MILLIONS = {
    "seresnet18": 11.78,
    "seresnet34": 21.96,
    "seresnet50": 28.09,
    "seresnet101": 49.33,
    "seresnet152": 66.82,
    "seresnet152d": 66.84,
    "seresnext26d_32x4d": 16.81,
    "seresnext26t_32x4d": 16.81,
    "seresnext50_32x4d": 27.56,
    "seresnext101_32x4d": 48.96,
    "seresnext101_32x8d": 93.57,
    "seresnext101d_32x8d": 93.59,
    "seresnext101_64x4d": 88.23,
    "ecaresnet26t": 16.01,
    "ecaresnet50d": 25.58,
    "ecaresnet50t": 25.57,
    "ecaresnet101d": 44.57,
}


def random_state(arch: str, seed: int = 0) -> dict[str, np.ndarray]:
    from senet.models.timm import expected_tensors

    rng = np.random.default_rng(seed)
    state = {}
    for name, shape in expected_tensors(arch).items():
        values = rng.normal(0.0, 0.05, shape).astype("float32")
        if name.endswith("running_var"):
            values = np.abs(values) + 0.5
        state[name] = values
    return state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archs", nargs="*", default=list(PUBLISHED_MILLIONS))
    args = parser.parse_args()
    from safetensors.numpy import save_file

    from senet.bench import machine_info
    from senet.models.timm import convert_timm

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for arch in args.archs:
            path = os.path.join(folder, f"{arch}.safetensors")
            save_file(random_state(arch), path)
            result = convert_timm(path, arch)
            published = PUBLISHED_MILLIONS.get(arch)
            same = "yes" if published and round(result.params / 1e6, 2) == published else "no"
            rows.append(
                f"| {arch} | {result.seconds:.1f} | {result.params:,} | "
                f"{published if published else '?'}M | {same} |"
            )
            print(rows[-1], file=sys.stderr, flush=True)
    info = machine_info()
    print(
        f"Machine: {info.get('cpu', '?')}, {info.get('cores', '?')} cores; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; command: "
        f"`python {shlex.join(sys.argv)}`\n"
    )
    print("| arch | seconds | params (senet) | timm's param_count | same to 0.01M |")
    print("|---|---:|---:|---:|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
