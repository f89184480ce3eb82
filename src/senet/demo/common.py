"""What the demo's run and its report share: the parts the focus score counts, the heatmap
candidates, the budgets, the two models' names, and the records of a trained model, its
heatmaps and its gates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from senet.explain import (
    METHODS,
)

#: The masks whose union is "the parts" in the focus score.
PARTS = ("eyes", "brows", "mouth")


#: The heatmap methods and layers the demo chooses from (senet.explain.choose_explanation,
#: on validation images): every method senet has, at the last ReLU of blocks 2-4 (24x24,
#: 12x12 and 6x6 maps; block 1's 48x48 map is left out for time).
CANDIDATE_METHODS = METHODS


CANDIDATE_LAYERS = ("block2_relu2", "block3_relu2", "block4_relu2")


#: Integration steps of "intgrad" and deletion steps of the faithfulness curve.
FOCUS_STEPS = 8


# Budgets: the full demo's target is under 3 minutes on 2 CPU cores (measured on a 2-core Zen 3
# with oneDNN on: 2 min 56 s with both models training at once, 126 and 131 s of it training;
# 5 min 23 s one after the other); quick is a smoke run.
# selection_images: validation faces the method and layer are chosen on.
# layers: the candidate layers of the heatmap choice (quick: the last only, so that a smoke
# run scores 4 candidates, not 12; each is scored op by op on both models and their copies).
BUDGETS = {
    False: {
        "synthetic_size": 5000,
        "epochs": 8,
        "grid_images": 7,
        "selection_images": 48,
        "layers": CANDIDATE_LAYERS,
    },
    True: {
        "synthetic_size": 280,
        "epochs": 1,
        "grid_images": 3,
        "selection_images": 7,
        "layers": CANDIDATE_LAYERS[-1:],
    },
}


BATCH_SIZE = 64


MODELS = {"baseline": None, "se": "se"}


TITLES = {"baseline": "plain CNN (baseline)", "se": "SE CNN"}


@dataclass
class Trained:
    """One model of the demo and its run: metrics.json, history rows and how it was had."""

    model: keras.Model
    metrics: dict[str, Any]
    history: list[dict[str, float]]
    how: str


@dataclass
class Focus:
    """The heatmaps of both models on the test split and their focus scores."""

    heatmaps: dict[str, np.ndarray]  # baseline, se: (N, H, W)
    parts: np.ndarray  # the test images' part masks, (N, H, W) bool
    scores: dict[str, dict]  # baseline, se, image_blind: focus_score(...)
    gradxact: dict[str, dict]  # baseline, se: focus_score of gradient x activation
    per_part: dict[str, dict[str, float]]  # name -> part -> energy inside that part alone


@dataclass
class Gates:
    """The SE model's mean gates per class at an early, a middle and the last SE block."""

    depths: dict[str, str]  # depth -> SE layer
    profiles: dict[str, np.ndarray]  # SE layer -> (classes, channels)
    specificity: dict[str, float]  # SE layer -> class specificity


def fmt(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}"
