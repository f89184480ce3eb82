"""The three measurements behind senet's RetinaNet settings (docs/detection.md):

1. anchor coverage: the share of the synthetic faces that match an anchor at IoU 0.5
   (keras-hub's positives; the rest train as background), by image size and anchor size;
2. the heads' outputs at initialisation (std and largest absolute value) with and without
   GroupNormalization in the heads, on a group- and a batch-normalized backbone;
3. train-mode vs inference-mode box error: a RetinaNet on a ResNet-18 overfits 16 scenes
   (60 epochs, batch 8, Adam 1e-3), then its box deltas at the positive anchors are
   compared with the targets in training mode (batch statistics) and inference mode;
   for a BatchNorm backbone with keras-hub's heads and with GroupNorm heads, and for a
   GroupNorm backbone with GroupNorm heads (senet's default).

    python benchmarks/detection_diagnostics.py           # about 6 minutes on 2 cores
    python benchmarks/detection_diagnostics.py --quick   # parts 1 and 2 only
    python benchmarks/detection_diagnostics.py --case batch,none   # one case of part 3
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from senet.data.scenes import synthetic_scenes  # noqa: E402
from senet.models import retinanet  # noqa: E402
from senet.tasks.detection import anchor_coverage  # noqa: E402


def coverage() -> None:
    print("| image side | anchor_size 4 | anchor_size 2 |\n|---:|---:|---:|")
    for side in (64, 96, 128):
        scenes = synthetic_scenes(200, image_size=side, seed=1)
        shares = [anchor_coverage(scenes, side, size) for size in (4, 2)]
        print(f"| {side} | {shares[0]:.0%} | {shares[1]:.0%} |")


def _detector(norm: str, head_norm: bool):
    """senet's RetinaNet with a ``norm`` backbone; without ``head_norm``, keras-hub's
    default heads (no GroupNormalization)."""
    detector = retinanet(7, image_size=96, channels=1, normalization=norm)
    if not head_norm:
        config = detector.get_config()
        config["use_prediction_head_norm"] = False
        detector = type(detector).from_config(config)
    return detector


def head_scale() -> None:
    x = synthetic_scenes(8, image_size=96, seed=1).x
    print("| backbone | head norm | box deltas std (max) | class logits std (max) |")
    print("|---|---|---:|---:|")
    for norm in ("group", "batch"):
        for head_norm in (False, True):
            keras.utils.set_random_seed(0)
            out = _detector(norm, head_norm)(x, training=False)
            cells = [
                f"{np.std(out[k]):.2f} ({np.max(np.abs(out[k])):.0f})"
                for k in ("bbox_regression", "cls_logits")
            ]
            print(f"| {norm} | {'group' if head_norm else 'none'} | {cells[0]} | {cells[1]} |")


#: (backbone normalization, GroupNormalization in the heads) of part 3
CASES = (("batch", False), ("batch", True), ("group", True))


def train_vs_inference(cases=CASES) -> None:
    scenes = synthetic_scenes(16, image_size=96)
    print("| backbone | head norm | box error, training mode | box error, inference mode |")
    print("|---|---|---:|---:|")
    for norm, head_norm in cases:
        keras.utils.set_random_seed(0)
        detector = _detector(norm, head_norm)
        detector.compile(optimizer=keras.optimizers.Adam(1e-3))
        detector.fit(scenes.x, scenes.y, batch_size=8, epochs=60, verbose=0)
        x = keras.ops.convert_to_tensor(scenes.x[:8])
        targets, classes = detector.label_encoder(
            images=x,
            gt_boxes=keras.ops.convert_to_tensor(scenes.boxes[:8]),
            gt_classes=keras.ops.convert_to_tensor(scenes.labels[:8].astype("float32")),
        )
        targets, positive = np.asarray(targets), np.asarray(classes) >= 0
        errors = []
        for training in (True, False):
            deltas = np.asarray(detector(scenes.x[:8], training=training)["bbox_regression"])
            errors.append(np.abs(deltas[positive] - targets[positive]).mean())
        heads = "group" if head_norm else "none"
        print(f"| {norm} | {heads} | {errors[0]:.3f} | {errors[1]:.3f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="parts 1 and 2 only")
    parser.add_argument(
        "--case",
        action="append",
        metavar="NORM,HEADS",
        help="part 3 only, for these cases (e.g. batch,none); default all three",
    )
    args = parser.parse_args()
    if args.case:
        cases = [tuple(case.split(",")) for case in args.case]
        train_vs_inference([(norm, heads == "group") for norm, heads in cases])
        return
    coverage()
    print()
    head_scale()
    if not args.quick:
        print()
        train_vs_inference()


if __name__ == "__main__":
    main()
