"""The three measurements behind senet's RetinaNet settings (docs/detection.md):

1. anchor coverage: the share of the synthetic faces that match an anchor at IoU 0.5
   (keras-hub's positives; the rest train as background), by image size and anchor size;
2. the heads' outputs at initialisation (std and largest absolute value) with and without
   GroupNormalization in the heads, on a group- and a batch-normalized backbone;
3. train-mode vs inference-mode box error: a RetinaNet on a ResNet-18 overfits 16 scenes
   (60 epochs, batch 8, Adam 1e-3), then its box deltas at the positive anchors are
   compared with the targets in training mode (batch statistics) and inference mode.

    python benchmarks/detection_diagnostics.py           # about 5 minutes on 2 cores
    python benchmarks/detection_diagnostics.py --quick   # parts 1 and 2 only
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


def head_scale() -> None:
    x = synthetic_scenes(8, image_size=96, seed=1).x
    print("| backbone | head norm | box deltas std (max) | class logits std (max) |")
    print("|---|---|---:|---:|")
    for norm in ("group", "batch"):
        for head_norm in (False, True):
            keras.utils.set_random_seed(0)
            detector = retinanet(7, image_size=96, channels=1, normalization=norm)
            if not head_norm:  # the same detector with keras-hub's default heads
                config = detector.get_config()
                config["use_prediction_head_norm"] = False
                detector = type(detector).from_config(config)
            out = detector(x, training=False)
            cells = [
                f"{np.std(out[k]):.2f} ({np.max(np.abs(out[k])):.0f})"
                for k in ("bbox_regression", "cls_logits")
            ]
            print(f"| {norm} | {'group' if head_norm else 'none'} | {cells[0]} | {cells[1]} |")


def train_vs_inference() -> None:
    scenes = synthetic_scenes(16, image_size=96)
    print("| backbone | box error, training mode | box error, inference mode |\n|---|---:|---:|")
    for norm in ("batch", "group"):
        keras.utils.set_random_seed(0)
        detector = retinanet(7, image_size=96, channels=1, normalization=norm)
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
        print(f"| {norm} | {errors[0]:.3f} | {errors[1]:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="parts 1 and 2 only")
    args = parser.parse_args()
    coverage()
    print()
    head_scale()
    if not args.quick:
        print()
        train_vs_inference()


if __name__ == "__main__":
    main()
