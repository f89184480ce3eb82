"""Is a heatmap faithful to the model? Deletion curves, and the rule that picks a method.

Deletion (Petsiuk et al., RISE, BMVC 2018): remove the pixels a heatmap ranks highest
first and follow the model's probability of the explained class; the faster it falls,
the better the map names the evidence the model uses. The area under that curve over the
removed fraction 0..1 is the score: lower is more faithful.

:func:`choose_explanation` is the rule that picks the heatmap method and layer the demo
reports, written down before any number is seen (see its docstring).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras
import numpy as np

from senet.checks import check_number
from senet.explain.cam import grad_cam
from senet.explain.focus import focus_score
from senet.explain.sanity import SANITY_MARGIN, probabilities, randomize_model, sanity_passes

__all__ = [
    "choose_explanation",
    "deletion_auc",
    "deletion_curve",
    "pick_explanation",
    "score_explanations",
]


def deletion_curve(
    model: keras.Model,
    x,
    heatmaps,
    *,
    class_index=None,
    steps: int = 8,
    seed: int = 0,
    batch_size: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """The mean class probability as the most-attributed pixels are removed.

    For each fraction ``f`` in ``0, 1/steps, ..., 1`` the ``round(f * H * W)`` pixels
    with the highest heatmap values (ties in a fixed random order, so a flat map
    removes pixels at random) are set to the image's mean value, over all channels.

    Args:
        model: A classifier on images ``(B, H, W, C)`` (softmax or logits out).
        x: Images ``(B, H, W, C)``.
        heatmaps: ``(B, H, W)`` maps, high = important.
        class_index: One class per image; default the model's prediction on ``x``.
        steps: Number of deletion steps (the curve has ``steps + 1`` points).
        seed: Seed of the tie-breaking order.
        batch_size: Images per forward pass.

    Returns:
        ``(fractions, probabilities)``, each ``(steps + 1,)``.
    """
    steps = check_number("steps", steps, integer=True, minimum=1)
    x = np.asarray(x, dtype=np.float32)
    heatmaps = np.asarray(heatmaps, dtype=np.float64)
    if x.ndim != 4 or heatmaps.shape != x.shape[:3]:
        raise ValueError(
            f"`heatmaps` must have the images' shape (B, H, W) = {x.shape[:3]}, "
            f"got {heatmaps.shape}"
        )
    count, height, width = heatmaps.shape
    if class_index is None:
        class_index = probabilities(model, x, batch_size).argmax(axis=1)
    classes = np.broadcast_to(np.asarray(class_index, dtype=np.int64), (count,))
    ties = np.random.default_rng(seed).random((count, height * width))
    # order: highest heatmap first, ties broken by the random key
    order = np.lexsort((ties, -heatmaps.reshape(count, -1)), axis=-1)
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(height * width)[None, :], axis=-1)
    ranks = ranks.reshape(count, height, width)
    fill = x.mean(axis=(1, 2, 3), keepdims=True)
    fractions = np.linspace(0.0, 1.0, steps + 1)
    counts = np.round(fractions * height * width).astype(np.int64)
    removed = ranks[None] < counts[:, None, None, None]  # (steps + 1, B, H, W)
    degraded = np.where(removed[..., None], fill[None], x[None]).astype(np.float32)
    scores = probabilities(model, degraded.reshape(-1, *x.shape[1:]), batch_size)
    scores = scores.reshape(steps + 1, count, -1)[:, np.arange(count), classes]
    return fractions, scores.mean(axis=1)


def deletion_auc(model: keras.Model, x, heatmaps, **kwargs) -> float:
    """Area under :func:`deletion_curve` (trapezoid rule over 0..1); lower is better."""
    fractions, probabilities = deletion_curve(model, x, heatmaps, **kwargs)
    return float(np.sum((probabilities[1:] + probabilities[:-1]) * np.diff(fractions)) / 2)


def score_explanations(
    model: keras.Model,
    x,
    masks,
    *,
    methods: Sequence[str],
    layers: Sequence[str],
    steps: int = 8,
    seed: int = 0,
    batch_size: int = 128,
    margin: float = SANITY_MARGIN,
) -> list[dict]:
    """One model's scores of every candidate ``(method, layer)``: step 1 and 2 of the rule.

    The half of :func:`choose_explanation` that needs the model, so that each model can be
    scored where it was trained (the demo's worker processes) and only numbers travel.
    Arguments are those of :func:`choose_explanation`, for one model.

    Returns:
        One entry per candidate, ``methods`` outer and ``layers`` inner order:
        ``{"method", "layer", "trained", "randomized", "area_fraction", "passes",
        "deletion_auc"}`` (plain floats, bools and strings).
    """
    if not methods or not layers:
        raise ValueError("`methods` and `layers` must each name at least one candidate, got none")
    margin = check_number("margin", margin, minimum=0, maximum=1)
    random_model = randomize_model(model, seed=seed)
    # both models explain the trained model's predicted class: only the weights differ
    classes = probabilities(model, x, batch_size).argmax(axis=1)
    entries = []
    for method in methods:
        for layer in layers:
            options = {"layer": layer, "method": method, "steps": steps}
            options.update(class_index=classes, batch_size=batch_size)
            heatmaps = grad_cam(model, x, **options)
            trained = focus_score(heatmaps, masks)
            randomized = focus_score(grad_cam(random_model, x, **options), masks)
            auc = deletion_auc(model, x, heatmaps, class_index=classes, steps=steps, seed=seed)
            entries.append(
                {
                    "method": method,
                    "layer": layer,
                    "trained": trained["energy_in_parts"],
                    "randomized": randomized["energy_in_parts"],
                    "area_fraction": trained["area_fraction"],
                    "passes": sanity_passes(trained, randomized, margin=margin),
                    "deletion_auc": auc,
                }
            )
    return entries


def pick_explanation(scores: Mapping[str, Sequence[dict]], *, margin: float = SANITY_MARGIN):
    """The candidate the rule picks from :func:`score_explanations` of each model by name.

    Step 2 and 3 of :func:`choose_explanation`'s rule, on numbers only; returns what
    :func:`choose_explanation` returns. Every model must have scored the same candidates
    in the same order.
    """
    if not scores:
        raise ValueError("`scores` must hold at least one model's scores, got none")
    margin = check_number("margin", margin, minimum=0, maximum=1)
    names = list(scores)
    keys = [[(entry["method"], entry["layer"]) for entry in scores[name]] for name in names]
    if any(other != keys[0] for other in keys[1:]) or not keys[0]:
        raise ValueError(
            "every model must score the same (method, layer) candidates in the same order"
        )
    fields = ("trained", "randomized", "area_fraction", "passes", "deletion_auc")
    candidates = []
    for index, (method, layer) in enumerate(keys[0]):
        per_model = {name: {key: scores[name][index][key] for key in fields} for name in names}
        candidates.append(
            {
                "method": method,
                "layer": layer,
                "passes": all(entry["passes"] for entry in per_model.values()),
                "deletion_auc": float(
                    np.mean([entry["deletion_auc"] for entry in per_model.values()])
                ),
                "models": per_model,
            }
        )
    passing = [candidate for candidate in candidates if candidate["passes"]]
    pool = passing or candidates
    best = min(pool, key=lambda candidate: candidate["deletion_auc"])  # first of equals
    return {
        "method": best["method"],
        "layer": best["layer"],
        "passed": bool(passing),
        "rule": (
            "discard (method, layer) candidates whose validation focus does not drop by "
            f"at least {margin:.0%} of its excess over chance on a re-initialised model "
            "(for any model); of the rest take the lowest mean validation deletion AUC"
        ),
        "candidates": candidates,
    }


def choose_explanation(
    models: Mapping[str, keras.Model],
    x,
    masks,
    *,
    methods: Sequence[str],
    layers: Sequence[str],
    steps: int = 8,
    seed: int = 0,
    batch_size: int = 128,
    margin: float = SANITY_MARGIN,
) -> dict:
    """Pick the heatmap method and layer by a rule fixed before the numbers are seen.

    The rule, on VALIDATION images only (never the test split):

    1. Sanity (Adebayo et al. 2018): every candidate ``(method, layer)`` is run on each
       model and on a copy of it with all weights re-initialised
       (:func:`~senet.explain.randomize_model`, one copy per model, the same ``seed``).
       A candidate passes when, for every model, its maps on the trained model put
       more energy on the parts than chance and the random model's maps lose at least
       ``margin`` of that excess (:func:`~senet.explain.sanity_check`). Candidates that
       fail for any model are discarded: their focus would measure the image.
    2. Faithfulness: among the candidates that pass, take the lowest deletion AUC
       (:func:`deletion_auc` of the trained model's own maps, ``steps`` deletion steps),
       averaged over the models. Ties go to the earlier candidate (``methods`` outer,
       ``layers`` inner order).
    3. If no candidate passes, take the lowest deletion AUC among all and say so
       (``"passed": False``).

    Args:
        models: The trained models by name (all must have every layer in ``layers``).
        x: Validation images ``(B, H, W, C)``.
        masks: Their boolean part masks ``(B, H, W)``.
        methods: Candidate methods (from :data:`senet.explain.METHODS`).
        layers: Candidate layer names.
        steps: Integration steps of ``"intgrad"`` and deletion steps.
        seed: Seed of the re-initialisation and of the deletion tie order.
        batch_size: Images per pass.
        margin: The sanity margin (default :data:`~senet.explain.SANITY_MARGIN`).

    It is :func:`score_explanations` of each model followed by :func:`pick_explanation`.

    Returns:
        ``{"method", "layer", "passed", "rule", "candidates": [{"method", "layer",
        "passes", "deletion_auc", "models": {name: {"trained", "randomized",
        "deletion_auc", "passes"}}}, ...]}``, all values plain floats/bools/strings.
    """
    options = {"methods": methods, "layers": layers, "steps": steps, "seed": seed}
    options.update(batch_size=batch_size, margin=margin)
    scores = {
        name: score_explanations(model, x, masks, **options) for name, model in models.items()
    }
    return pick_explanation(scores, margin=margin)
