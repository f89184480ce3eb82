"""What attention costs a U-Net: parameters and FLOPs per kind (2-D and 3-D), 3-D training
throughput and peak memory with and without scSE, sliding-window inference on a 128^3
volume, and MONAI's UNet (PyTorch) on the same volume and CPU as the reference a
medical-imaging user would otherwise pick.

Every timed configuration runs in a fresh Python process, one after another: peak memory
is that process's peak resident set (``VmHWM``), shown with the same process's
after its imports (TensorFlow's or PyTorch's own footprint); training times are medians
over the timed steps after two warm-up steps, sliding-window times the best of three.

    python benchmarks/bench_segmentation.py            # about 6 minutes on 2 cores
    python benchmarks/bench_segmentation.py --quick    # a smoke run (small sizes)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

KINDS = ("none", "se", "sse", "scse", "cbam")


def _rss_mb() -> float:
    """This process's peak resident set (VmHWM): a new program's own, unlike ``ru_maxrss``,
    which a child keeps from the parent it was forked from."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _senet_unet(kind: str, side: int, depth: int, base: int):
    """senet's 3-D U-Net on ``side``^3 volumes, 4 classes, ``kind`` attention (r=2)."""
    from senet.models import unet

    attention = None if kind == "none" else kind
    return unet(
        (side,) * 3 + (1,), 4, attention=attention, depth=depth, base_filters=base, reduction=2
    )


def _keras_train(kind: str, side: int, batch: int, steps: int, depth: int, base: int) -> dict:
    import numpy as np

    from senet.layers import DiceCELoss

    before = _rss_mb()
    model = _senet_unet(kind, side, depth, base)
    model.compile("adam", loss=DiceCELoss())
    rng = np.random.default_rng(0)
    x = rng.random((batch, side, side, side, 1), dtype=np.float32)
    y = rng.integers(0, 4, (batch, side, side, side))
    times = []
    for step in range(steps + 2):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        if step >= 2:
            times.append(time.perf_counter() - start)
    median = float(np.median(times))
    return {
        "step_s": median,
        "voxels_per_s": batch * side**3 / median,
        "peak_mb": _rss_mb(),
        "import_mb": before,
        "params": int(model.count_params()),
    }


def _keras_sliding(kind: str, volume: int, window: int, depth: int, base: int) -> dict:
    import numpy as np

    from senet.inference import predictor
    from senet.segmentation import sliding_window_inference

    before = _rss_mb()
    model = _senet_unet(kind, window, depth, base)
    predict = predictor(model)
    x = np.random.default_rng(0).random((volume, volume, volume, 1), dtype=np.float32)
    predict(x[None, :window, :window, :window])  # trace
    times = []
    for _ in range(3):
        start = time.perf_counter()
        sliding_window_inference(x, (window,) * 3, predict, overlap=0.25, batch_size=2)
        times.append(time.perf_counter() - start)
    return {"seconds": min(times), "peak_mb": _rss_mb(), "import_mb": before}


def _monai_unet(se: bool, base: int, depth: int):
    import torch
    from monai.networks.blocks import ChannelSELayer
    from monai.networks.blocks.convolutions import Convolution, ResidualUnit
    from monai.networks.nets import UNet

    channels = tuple(base * 2**i for i in range(depth + 1))
    model = UNet(3, 1, 4, channels=channels, strides=(2,) * depth, num_res_units=2)
    if se:  # ChannelSELayer (r=2) after every convolution block, through forward hooks
        for module in list(model.modules()):
            if isinstance(module, Convolution | ResidualUnit) and not isinstance(
                getattr(module, "conv", None), torch.nn.ConvTranspose3d
            ):
                out = [m for m in module.modules() if isinstance(m, torch.nn.Conv3d)]
                if not out:
                    continue
                layer = ChannelSELayer(3, out[-1].out_channels, r=2)
                module.add_module("se", layer)
                module.register_forward_hook(lambda mod, _, output: mod.se(output))
    return model


def _monai_train(se: bool, side: int, batch: int, steps: int, depth: int, base: int) -> dict:
    import numpy as np
    import torch
    from monai.losses import DiceCELoss

    torch.set_num_threads(os.cpu_count() or 1)
    before = _rss_mb()
    model = _monai_unet(se, base, depth)
    optimizer = torch.optim.Adam(model.parameters())
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    x = torch.rand(batch, 1, side, side, side)
    y = torch.randint(0, 4, (batch, 1, side, side, side))
    times = []
    for step in range(steps + 2):
        start = time.perf_counter()
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()
        if step >= 2:
            times.append(time.perf_counter() - start)
    median = float(np.median(times))
    return {
        "step_s": median,
        "voxels_per_s": batch * side**3 / median,
        "peak_mb": _rss_mb(),
        "import_mb": before,
        "params": int(sum(p.numel() for p in model.parameters())),
    }


def _monai_sliding(se: bool, volume: int, window: int, depth: int, base: int) -> dict:
    import torch
    from monai.inferers import sliding_window_inference

    before = _rss_mb()
    model = _monai_unet(se, base, depth).eval()
    x = torch.rand(1, 1, volume, volume, volume)
    times = []
    with torch.no_grad():
        for _ in range(3):
            start = time.perf_counter()
            sliding_window_inference(x, (window,) * 3, 2, model, overlap=0.25, mode="gaussian")
            times.append(time.perf_counter() - start)
    return {"seconds": min(times), "peak_mb": _rss_mb(), "import_mb": before}


def _child(name: str, kwargs: dict) -> dict:
    """Run one configuration in a fresh interpreter; its JSON result."""
    code = (
        "import json, sys; sys.path.insert(0, 'benchmarks'); import bench_segmentation as b; "
        f"print('RESULT' + json.dumps(b.{name}(**{kwargs!r})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT"):
            return json.loads(line[6:])
    raise RuntimeError(f"{name}{kwargs} failed: {done.stderr.strip().splitlines()[-1:]}")


def _params_table(quick: bool) -> list[str]:
    from senet.bench import count_flops, count_params
    from senet.models import unet

    shapes = [
        ("2-D U-Net 48x48x1, depth 3, 16 filters, 5 classes", (48, 48, 1), 5, 3, 16),
        ("3-D U-Net 32^3, depth 3, 8 filters, 4 classes", (32, 32, 32, 1), 4, 3, 8),
    ]
    if not quick:
        shapes.append(
            ("2-D U-Net 128x128x1, depth 4, 16 filters (unet's defaults)", (128, 128, 1), 5, 4, 16)
        )
    rows = [
        "| network | kind | params | added | FLOPs (MACs, G) | added |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for label, shape, classes, depth, base in shapes:
        plain = unet(shape, classes, attention=None, depth=depth, base_filters=base)
        p0, f0 = count_params(plain), count_flops(plain, batch=1, macs_only=True)
        for kind in KINDS:
            model = (
                plain
                if kind == "none"
                else unet(
                    shape, classes, attention=kind, depth=depth, base_filters=base, reduction=2
                )
            )
            p, f = count_params(model), count_flops(model, batch=1, macs_only=True)
            rows.append(
                f"| {label} | {kind} | {p:,} | {100 * (p - p0) / p0:+.2f}% | {f / 1e9:.4f} | "
                f"{100 * (f - f0) / f0:+.2f}% |"
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    quick = args.quick
    started = time.time()
    side, batch, steps = (16, 1, 2) if quick else (64, 2, 6)
    volume, window = (32, 16) if quick else (128, 64)
    depth, base = (2, 4) if quick else (3, 8)

    print("## Segmentation: U-Net with attention (bench_segmentation.py)\n")
    print(f"Machine: {platform_line()}; date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"Command: `{shlex.join(['python', *sys.argv])}`; load {os.getloadavg()[0]:.1f}\n")
    print("### Parameters and FLOPs (reduction 2, as Roy et al.)\n")
    print("\n".join(_params_table(quick)) + "\n")

    print(f"### 3-D training step ({batch} x {side}^3 patches, depth {depth}, {base} filters)\n")
    print("| model | params | step (s) | voxels/s | peak RSS (MB) | after imports (MB) |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind in ("none", "scse", "se", "sse"):
        r = _child(
            "_keras_train",
            dict(kind=kind, side=side, batch=batch, steps=steps, depth=depth, base=base),
        )
        print(
            f"| senet unet, {kind} | {r['params']:,} | {r['step_s']:.3f} | {r['voxels_per_s']:,.0f} | {r['peak_mb']:.0f} | {r['import_mb']:.0f} |"
        )
    for se in (False, True):
        r = _child(
            "_monai_train", dict(se=se, side=side, batch=batch, steps=steps, depth=depth, base=base)
        )
        name = "MONAI UNet + ChannelSELayer" if se else "MONAI UNet"
        print(
            f"| {name} | {r['params']:,} | {r['step_s']:.3f} | {r['voxels_per_s']:,.0f} | {r['peak_mb']:.0f} | {r['import_mb']:.0f} |"
        )

    print(
        f"\n### Sliding-window inference on a {volume}^3 volume ({window}^3 windows, overlap 0.25, Gaussian, 2 windows a batch)\n"
    )
    print("| model | seconds | peak RSS (MB) | after imports (MB) |")
    print("|---|---:|---:|---:|")
    for kind in ("none", "scse"):
        r = _child(
            "_keras_sliding", dict(kind=kind, volume=volume, window=window, depth=depth, base=base)
        )
        print(
            f"| senet unet, {kind} | {r['seconds']:.2f} | {r['peak_mb']:.0f} | {r['import_mb']:.0f} |"
        )
    for se in (False, True):
        r = _child(
            "_monai_sliding", dict(se=se, volume=volume, window=window, depth=depth, base=base)
        )
        name = "MONAI UNet + ChannelSELayer" if se else "MONAI UNet"
        print(f"| {name} | {r['seconds']:.2f} | {r['peak_mb']:.0f} | {r['import_mb']:.0f} |")
    print(f"\n({time.time() - started:.0f} s in all)")


def platform_line() -> str:
    from senet.bench import machine_info

    info = machine_info()
    return ", ".join(
        f"{k} {v}" for k, v in info.items() if k in ("cpu", "cores", "tensorflow", "keras")
    )


if __name__ == "__main__":
    main()
