#!/usr/bin/env bash
# The published segmentation ablations of docs/segmentation.md: no attention vs SE (cSE),
# sSE and scSE after every decoder block of a U-Net, 5 seeds each, on
#  - the synthetic face parts (hard preset, 2,000 faces at 48x48; U-Net depth 3, 16 filters)
#  - the synthetic 3-D phantoms (easy preset, 120 volumes of 32^3; depth 3, 8 filters; two
#    budgets on the hard preset failed the spread rule, see docs/segmentation.md).
# Reduction 2 as in Roy et al. (sSE has none). The budgets were fixed before any attention
# cell ran: a cosine learning rate that decays to 0, so every run ends converged for its
# budget, sized to fit about 30 minutes each on 2 CPU cores.
# Rerunning resumes: finished cell-seeds are skipped. PARTS picks the grids to run.
#
#   [PARTS="face-parts phantoms"] bash benchmarks/segmentation_ablations.sh [OUT]
#   (default OUT: ablations-seg)
set -euo pipefail
OUT=${1:-ablations-seg}
SENET=${SENET:-senet}
KINDS=(--task segmentation --model unet --attention none se sse scse --reduction 2 --seeds 5)
PARTS=${PARTS:-face-parts phantoms}
if [[ " $PARTS " == *" face-parts "* ]]; then
    "$SENET" ablate --out "$OUT/face-parts" "${KINDS[@]}" --data synthetic --difficulty hard \
        --synthetic-size 2000 --image-size 48 --epochs 15 --batch-size 32 --lr-schedule cosine \
        --model-options '{"depth": 3, "base_filters": 16}'
fi
if [[ " $PARTS " == *" phantoms "* ]]; then
    "$SENET" ablate --out "$OUT/phantoms" "${KINDS[@]}" --data phantoms --difficulty easy \
        --synthetic-size 120 --image-size 32 --epochs 20 --batch-size 2 --lr 0.002 \
        --lr-schedule cosine --model-options '{"depth": 3, "base_filters": 8}'
fi
