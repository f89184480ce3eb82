#!/usr/bin/env bash
# The published ablations of docs/ablations.md: the emotion CNN on the hard synthetic faces
# (demo budget: 5,000 images, 8 epochs) and the CIFAR-style ResNet-20 on hard faces at 32x32
# (placement and stages apply to ResNets; 3,000 images, 6 epochs to fit the time budget).
# Each command reuses the cells the ones before it trained (same directory, same settings),
# so the baselines train once.
# Rerunning the script resumes: finished cell-seeds are skipped.
#
#   bash benchmarks/ablations.sh [OUT]      (default OUT: ablations)
#
# About 2 hours on 2 CPU cores (--jobs 2).
set -euo pipefail
OUT=${1:-ablations}
SENET=${SENET:-senet}
COMMON=(--difficulty hard --synthetic-size 5000 --epochs 8 --jobs 2)
RESNET=(--model resnet20 --image-size 32 --difficulty hard --synthetic-size 3000 --epochs 6 --jobs 2)
EMO=("$OUT/emotion_cnn")
RES=("$OUT/resnet20")

run() {  # name, then senet ablate arguments; keeps each table as <dir>/<name>.md
    local name=$1 dir=$2
    shift 2
    "$SENET" ablate --out "$dir" "$@"
    cp "$dir/ablation.md" "$dir/$name.md"
    cp "$dir/results.csv" "$dir/$name.csv"
}

run none-vs-se "${EMO[@]}" --attention se --seeds 5 "${COMMON[@]}"
run reduction "${EMO[@]}" --reduction 8 2 4 16 32 --seeds 3 "${COMMON[@]}"
run kinds "${EMO[@]}" --attention se eca sse scse cbam --seeds 3 "${COMMON[@]}"
run squeeze "${EMO[@]}" --squeeze avg max avgmax --seeds 3 "${COMMON[@]}"
run gate "${EMO[@]}" --gate sigmoid hard_sigmoid tanh relu --seeds 3 "${COMMON[@]}"
run placement "${RES[@]}" --placement standard pre post identity --seeds 3 "${RESNET[@]}"
run stages "${RES[@]}" --stages all 2 3 4 --seeds 3 "${RESNET[@]}"
