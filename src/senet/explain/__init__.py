"""Seeing what attention does: gates, class activation maps, focus scores and figures.

- :func:`excitations`, :func:`class_profiles`, :func:`class_specificity`,
  :func:`pick_depths`: the channel gates of every attention layer, per image and class.
- :func:`grad_cam` (Grad-CAM, gradient x activation, Grad-CAM++, integrated gradients) and
  :func:`attention_map`: heatmaps ``(B, H, W)`` in [0, 1] at the input's resolution.
- :func:`focus_score`, :func:`image_blind_map`: how much heatmap energy falls on the parts.
- :func:`randomize_model`, :func:`sanity_check`: the model-randomisation sanity check
  (Adebayo et al. 2018): a method whose focus survives random weights measures the image.
- :func:`deletion_curve`, :func:`deletion_auc`: faithfulness by deleting the top pixels;
  :func:`choose_explanation`: the written-down rule that picks a method and layer (in two
  halves, :func:`score_explanations` per model and :func:`pick_explanation` on the numbers).
- :func:`overlay`, :func:`heatmap_grid`, :func:`profile_figure`: pictures of the above.

Works on the TensorFlow, JAX and PyTorch Keras backends.
"""

from senet.explain.cam import (
    METHODS,
    attention_map,
    default_attention_layer,
    default_layer,
    grad_cam,
)
from senet.explain.excitation import class_profiles, class_specificity, excitations, pick_depths
from senet.explain.faithfulness import (
    choose_explanation,
    deletion_auc,
    deletion_curve,
    pick_explanation,
    score_explanations,
)
from senet.explain.focus import focus_score, image_blind_map
from senet.explain.overlay import heatmap_grid, overlay, profile_figure
from senet.explain.sanity import (
    SANITY_MARGIN,
    cascade_layers,
    probabilities,
    randomize_model,
    sanity_check,
    sanity_passes,
)

__all__ = [
    "METHODS",
    "SANITY_MARGIN",
    "attention_map",
    "cascade_layers",
    "choose_explanation",
    "class_profiles",
    "class_specificity",
    "default_attention_layer",
    "default_layer",
    "deletion_auc",
    "deletion_curve",
    "excitations",
    "focus_score",
    "grad_cam",
    "heatmap_grid",
    "image_blind_map",
    "overlay",
    "pick_depths",
    "pick_explanation",
    "probabilities",
    "profile_figure",
    "randomize_model",
    "sanity_check",
    "sanity_passes",
    "score_explanations",
]
