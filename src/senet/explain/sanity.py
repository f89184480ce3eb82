"""Model-randomisation sanity check for heatmaps (Adebayo et al., NeurIPS 2018).

"Sanity Checks for Saliency Maps" asks whether an explanation depends on what the model
learned: re-initialise the model's weights (all at once, or cascading from the output
layer down) and compute the same maps again. A method whose maps keep their focus on the
parts when the weights are random is drawing the image (its edges, its contrast), not
the model's evidence, and its focus score says nothing about the model.

- :func:`randomize_model`: a copy of a model with some or all weights re-initialised
  (the original is untouched).
- :func:`cascade_layers`: the layers with weights, output first (the cascading order).
- :func:`sanity_check`: focus scores of the trained and the randomised model's maps and
  whether the drop is clear (:data:`SANITY_MARGIN`).
"""

from __future__ import annotations

import keras
import numpy as np

from senet.checks import check_number
from senet.explain.cam import grad_cam
from senet.explain.focus import focus_score

__all__ = [
    "SANITY_MARGIN",
    "cascade_layers",
    "probabilities",
    "randomize_model",
    "sanity_check",
    "sanity_passes",
]

#: A method passes when the randomised model's energy in the parts is below the trained
#: model's by at least this share of the trained model's excess over chance.
SANITY_MARGIN = 0.25


def cascade_layers(model: keras.Model) -> list[str]:
    """Names of the top-level layers that hold weights, output layer first.

    Randomising the first ``k`` of them is step ``k`` of the cascading randomisation.
    """
    return [layer.name for layer in reversed(model.layers) if layer.weights]


def randomize_model(
    model: keras.Model, *, from_layer: str | None = None, seed: int | None = 0
) -> keras.Model:
    """A copy of ``model`` whose weights are re-initialised, fully or from a layer up.

    The copy is :func:`keras.models.clone_model` (same architecture and layer names,
    fresh weights from each layer's own initializers; BatchNorm back to its initial
    statistics). With ``from_layer``, only that layer and every layer after it (in
    ``model.layers`` order, i.e. towards the output) stay re-initialised; the layers
    before it get the trained weights back: the cascading randomisation of Adebayo et
    al. The original model is not changed.

    Args:
        model: A functional or Sequential Keras model.
        from_layer: ``None`` to re-initialise every layer, or the name of the lowest
            top-level layer to re-initialise.
        seed: Seeds Keras' global random state (``keras.utils.set_random_seed``) before
            the weights are drawn, so the same seed gives the same random model;
            ``None`` leaves the global state alone.

    Returns:
        A new, built model.

    Example:
        >>> random = randomize_model(model)  # doctest: +SKIP
        >>> random is model  # doctest: +SKIP
        False
    """
    names = [layer.name for layer in model.layers]
    if from_layer is not None and from_layer not in names:
        raise ValueError(f"`from_layer` must be None or one of {names}, got {from_layer!r}")
    if seed is not None:
        keras.utils.set_random_seed(check_number("seed", seed, integer=True, minimum=0))
    copy = keras.models.clone_model(model)
    if not copy.built:
        copy.build(model.input_shape)
    keep = names.index(from_layer) if from_layer is not None else 0
    for index in range(keep):
        original = model.layers[index]
        if original.weights:
            copy.get_layer(original.name).set_weights(original.get_weights())
    return copy


def probabilities(model: keras.Model, x, batch_size: int = 256) -> np.ndarray:
    """Class probabilities ``(B, classes)`` of ``model`` on ``x`` (logits are softmaxed).

    Direct calls in inference mode, batch by batch: cheaper than ``Model.predict`` for
    the few hundred images an explanation check uses.
    """
    x = np.asarray(x, dtype=np.float32)
    parts = [
        keras.ops.convert_to_numpy(model(x[start : start + batch_size], training=False))
        for start in range(0, len(x), batch_size)
    ]
    out = np.concatenate(parts).astype(np.float64)
    if out.min() < 0 or not np.allclose(out.sum(axis=1), 1.0, atol=1e-3):
        out = np.exp(out - out.max(axis=1, keepdims=True))  # logits: softmax them
        out /= out.sum(axis=1, keepdims=True)
    return out


def sanity_check(
    model: keras.Model,
    x,
    masks,
    *,
    method: str = "gradcam",
    layer: str | None = None,
    steps: int = 8,
    from_layer: str | None = None,
    seed: int = 0,
    batch_size: int | None = 128,
    random_model: keras.Model | None = None,
    margin: float = SANITY_MARGIN,
) -> dict:
    """Focus of a method's maps on the trained and on a randomised model.

    Both maps explain the same class, the trained model's prediction for each image,
    so only the weights differ. The check passes when the trained maps point at the
    parts better than chance and the randomised model's do clearly less::

        trained > area  and  random <= trained - margin * (trained - area)

    with ``trained``, ``random`` the ``energy_in_parts`` of :func:`focus_score` and
    ``area`` the parts' area share (chance).

    Args:
        model: The trained classifier.
        x: Images ``(B, H, W, C)``.
        masks: Boolean part masks ``(B, H, W)``.
        method: A :data:`senet.explain.METHODS` method.
        layer: The layer to explain (default: :func:`senet.explain.default_layer`).
        steps: Integration steps of ``"intgrad"``.
        from_layer: Cascading randomisation from this layer up (``None``: all layers).
        seed: Seed of the re-initialisation.
        batch_size: Images per pass.
        random_model: A randomised model to reuse (then ``from_layer`` and ``seed`` are
            not used): checking several methods costs one randomisation.
        margin: Share of the trained model's excess over chance the randomised model
            must lose (default :data:`SANITY_MARGIN`).

    Returns:
        ``{"trained": focus_score(...), "randomized": focus_score(...),
        "drop": trained - random energy, "passes": bool}``.
    """
    margin = check_number("margin", margin, minimum=0, maximum=1)
    if random_model is None:
        random_model = randomize_model(model, from_layer=from_layer, seed=seed)
    classes = probabilities(model, x, batch_size or 256).argmax(axis=1)
    options = {"layer": layer, "method": method, "batch_size": batch_size, "steps": steps}
    trained = focus_score(grad_cam(model, x, class_index=classes, **options), masks)
    randomized = focus_score(grad_cam(random_model, x, class_index=classes, **options), masks)
    return {
        "trained": trained,
        "randomized": randomized,
        "drop": float(trained["energy_in_parts"] - randomized["energy_in_parts"]),
        "passes": sanity_passes(trained, randomized, margin=margin),
    }


def sanity_passes(trained: dict, randomized: dict, *, margin: float = SANITY_MARGIN) -> bool:
    """The verdict of :func:`sanity_check` from two :func:`focus_score` results.

    ``trained > area and random <= trained - margin * (trained - area)`` on
    ``energy_in_parts``, with ``area`` the trained score's ``area_fraction``.
    """
    excess = trained["energy_in_parts"] - trained["area_fraction"]
    drop = trained["energy_in_parts"] - randomized["energy_in_parts"]
    return bool(excess > 0 and drop >= margin * excess)
