#!/usr/bin/env bash
# The published detection evidence of docs/detection.md and BENCHMARKS.md:
#  - ablation: keras-hub's RetinaNet on a ResNet-18, no attention vs SE (r 16) in every
#    residual unit, 3 seeds each, on the synthetic face scenes (easy preset, 800 scenes at
#    96x96: 640 to train, 80 to validate, 80 to test); anchor_size 2 (every face matches an
#    anchor at IoU 0.5, see docs/detection.md), 20 epochs, batch 16, Adam 1e-3 with cosine
#    decay. The budget was fixed before any SE cell ran, sized to about an hour here.
#  - timm: a timm-layout SE-ResNet-50 file (He-initialised, BatchNorm at identity
#    statistics: the path, not pretrained weights) converted with senet convert and trained
#    as a frozen-BatchNorm backbone, against a built ResNet-50 (GroupNorm), 6 epochs.
#  - bench: senet bench of the detector with and without SE at 320x320 and 640x640.
# Rerunning the ablation resumes (finished cell-seeds are skipped). PARTS picks the parts.
#
#   [PARTS="ablation timm bench"] bash benchmarks/detection.sh [OUT]   (default OUT: detection)
set -euo pipefail
OUT=${1:-detection}
SENET=${SENET:-senet}
PYTHON=${PYTHON:-python}
PARTS=${PARTS:-ablation timm bench}
SCENES=(--data synthetic --image-size 96 --batch-size 16 --lr-schedule cosine)
ANCHORS='{"anchor_size": 2}'
mkdir -p "$OUT"
if [[ " $PARTS " == *" ablation "* ]]; then
    "$SENET" ablate --out "$OUT/ablation" --task detection --model retinanet --attention se \
        --reduction 16 \
        --seeds 3 --synthetic-size 800 --epochs 20 "${SCENES[@]}" --model-options "$ANCHORS"
fi
if [[ " $PARTS " == *" timm "* ]]; then
    "$PYTHON" - "$OUT/timm" <<'PY'
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from senet.models.timm import expected_tensors

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
state = {}
for name, shape in expected_tensors("seresnet50").items():
    if name.endswith("running_var") or (name.endswith(".weight") and len(shape) == 1):
        state[name] = np.ones(shape, np.float32)  # BatchNorm scale and running variance
    elif len(shape) == 1:
        state[name] = np.zeros(shape, np.float32)  # biases, shifts, running means
    else:
        fan_in = int(np.prod(shape[1:]))
        state[name] = (rng.standard_normal(shape) * np.sqrt(2 / fan_in)).astype(np.float32)
save_file(state, str(out / "seresnet50.safetensors"))
PY
    "$SENET" convert "$OUT/timm/seresnet50.safetensors" --arch seresnet50 --no-top \
        --input-size 96 --out "$OUT/timm/seresnet50.keras" --overwrite
    TIMM=(--task detection --model retinanet --channels 3 --synthetic-size 300 --epochs 6
          --seed 0 --quiet --model-options "$ANCHORS" "${SCENES[@]}")
    for run in timm-seresnet50 resnet50; do
        if [[ -f "$OUT/timm/$run/metrics.json" ]]; then continue; fi
        if [[ $run == resnet50 ]]; then backbone=(--backbone resnet50 --attention none)
        else backbone=(--backbone "$OUT/timm/seresnet50.keras" --attention none); fi
        rm -rf "$OUT/timm/$run"
        "$SENET" train "${TIMM[@]}" "${backbone[@]}" --out "$OUT/timm/$run"
    done
fi
if [[ " $PARTS " == *" bench "* ]]; then
    for size in 320 640; do
        "$SENET" bench retinanet --task detection --image-size "$size" --batch-sizes 1 \
            --train-batch 2 --rounds 10 --warmup 2 --quiet --json "$OUT/bench-$size.json" \
            --overwrite
    done
fi
