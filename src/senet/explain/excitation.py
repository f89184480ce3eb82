"""Excitations: the channel gates an attention model computes, per image and per class.

An SE block's gate ``s = sigmoid(W2 relu(W1 z))`` says how much each channel counts
for this image. Hu et al. (SENet, section 7.2) plot its mean per class at several
depths: early gates are nearly the same for every class (shared low-level
features), late ones become class specific. :func:`class_profiles` and
:func:`class_specificity` measure exactly that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations

import keras
import numpy as np

from senet.checks import fail
from senet.explain import _graph


@dataclass
class _Probe:
    """How to read every gate of one (sub-)model: one probe model, then the layers' math.

    ``steps`` in graph order, each ``(key, layer, index)`` for an attention layer whose
    input is probe output ``index``, or ``(None, nested_probe, (structure, indices))``
    for a nested model whose call input is rebuilt from those probe outputs.
    """

    model: keras.Model | None
    steps: list[tuple] = field(default_factory=list)


def _build_probe(model: keras.Model, prefix: str = "") -> _Probe | None:
    graph = _graph.graph_of(model)
    targets: list = []
    index_of: dict[int, int] = {}

    def output_index(tensor) -> int:
        # Two layers reading one tensor share one probe output.
        if id(tensor) not in index_of:
            index_of[id(tensor)] = len(targets)
            targets.append(tensor)
        return index_of[id(tensor)]

    probe = _Probe(model=None)
    for layer in model.layers:
        if _graph.is_attention(layer):
            for call, node in enumerate(_graph.nodes_of(graph, layer)):
                key = prefix + layer.name + (f":{call}" if call else "")
                probe.steps.append((key, layer, output_index(node.input_tensors[0])))
        elif isinstance(layer, keras.Model):
            for call, node in enumerate(_graph.nodes_of(graph, layer)):
                name = layer.name + (f":{call}" if call else "")
                inner = _build_probe(layer, prefix + name + "/")
                if inner is None:
                    continue
                structure = _call_input(node)
                indices = [output_index(t) for t in keras.tree.flatten(structure)]
                probe.steps.append((None, inner, (structure, indices)))
    if not targets:
        return None
    # The probe stops at the attention layers' inputs; the model itself is untouched.
    probe.model = keras.Model(graph.input, targets, name=f"{model.name}_excitation_probe")
    return probe


def _call_input(node):
    """What a (sub-model) call received as its first argument: a tensor, list or dict."""
    if node.arguments.args:
        return node.arguments.args[0]
    return node.arguments.kwargs["inputs"]


def _run_probe(probe: _Probe, inputs) -> dict[str, np.ndarray]:
    values = probe.model(inputs, training=False)
    if not isinstance(values, (list, tuple)):
        values = [values]
    gates = {}
    for key, step, where in probe.steps:
        if key is None:  # a nested model: its own probe on its rebuilt call input
            structure, indices = where
            sub_inputs = keras.tree.pack_sequence_as(structure, [values[i] for i in indices])
            gates.update(_run_probe(step, sub_inputs))
        else:
            gate = step.excitation(values[where])
            gates[key] = keras.ops.convert_to_numpy(keras.ops.cast(gate, "float32"))
    return gates


def excitations(model: keras.Model, x, *, batch_size: int | None = None) -> dict[str, np.ndarray]:
    """The gate of every attention layer in ``model`` for a batch, without changing the model.

    Any layer with an ``excitation(x)`` method counts (SqueezeExcite, ECA, the
    channel branch of scSE, CBAM's channel gate). A probe model runs from the
    model's inputs to the attention layers' inputs, then each layer's own
    ``excitation`` turns its input into the gate. Nested models (functional or
    Sequential) are searched too.

    Args:
        model: A functional or built Sequential Keras model.
        x: Model input: an array ``(B, ...)`` or the list/dict a multi-input model takes.
        batch_size: Images per forward pass; ``None`` runs the whole batch at once.

    Returns:
        ``{key: gates}`` in graph order, ``gates`` a float32 array ``(B, C)``. The key
        is the layer name, ``"outer/inner"`` for a layer inside the nested model
        ``outer``, and gets ``":1"``, ``":2"`` ... for a layer called more than once.
        Empty for a model without attention layers.

    Example:
        >>> import keras, numpy as np, senet
        >>> inputs = keras.Input((8, 8, 3))
        >>> features = keras.layers.Conv2D(16, 3, padding="same")(inputs)
        >>> features = senet.SqueezeExcite(4, name="block1_se")(features)
        >>> model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(features))
        >>> {k: v.shape for k, v in excitations(model, np.ones((2, 8, 8, 3))).items()}
        {'block1_se': (2, 16)}
    """
    probe = _build_probe(model)
    if probe is None:
        return {}
    parts: dict[str, list[np.ndarray]] = {}
    for chunk in _graph.batches(x, batch_size):
        for key, gate in _run_probe(probe, chunk).items():
            parts.setdefault(key, []).append(gate)
    return {key: np.concatenate(values, axis=0) for key, values in parts.items()}


def _class_labels(y, num_classes: int) -> np.ndarray:
    labels = np.asarray(y)
    if labels.ndim == 2:  # one-hot or probabilities
        labels = labels.argmax(axis=1)
    labels = labels.reshape(-1)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"`y` must hold class indices in [0, {num_classes}) (or one-hot rows), "
            f"got y with values in [{labels.min()}, {labels.max()}]"
        )
    return labels.astype(np.int64)


def class_profiles(
    model: keras.Model,
    x,
    y,
    num_classes: int,
    layers: Sequence[str] | None = None,
    *,
    batch_size: int | None = None,
) -> dict[str, np.ndarray]:
    """Mean excitation per class and channel for each attention layer (SENet's figure 6).

    Args:
        model: A functional or Sequential Keras model with attention layers.
        x: Inputs ``(N, ...)``.
        y: Class indices ``(N,)`` or one-hot rows ``(N, num_classes)``.
        num_classes: Number of classes K.
        layers: Keys of :func:`excitations` to keep; ``None`` keeps all.
        batch_size: Images per forward pass (``None``: all at once).

    Returns:
        ``{key: profile}`` with ``profile`` of shape ``(K, C)``: row k is the mean gate of
        the images of class k; NaN for a class with no images.

    Example:
        >>> profiles = class_profiles(model, x, y, num_classes=7)  # doctest: +SKIP
        >>> profiles["block3_se"].shape  # doctest: +SKIP
        (7, 64)
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= 0:
        raise fail("num_classes", "a positive integer", num_classes)
    labels = _class_labels(y, num_classes)
    if labels.size != _graph.num_samples(x):
        raise ValueError(
            f"`y` must have one label per input, got {labels.size} labels for "
            f"{_graph.num_samples(x)} inputs"
        )
    gates = excitations(model, x, batch_size=batch_size)
    if layers is not None:
        unknown = [name for name in layers if name not in gates]
        if unknown:
            raise ValueError(
                f"`layers` must name attention layers of the model, got {unknown}; "
                f"available: {list(gates)}"
            )
        gates = {name: gates[name] for name in layers}
    profiles = {}
    for key, gate in gates.items():
        profile = np.full((num_classes, gate.shape[1]), np.nan, dtype=np.float32)
        for k in range(num_classes):
            members = labels == k
            if members.any():
                profile[k] = gate[members].mean(axis=0)
        profiles[key] = profile
    return profiles


SPECIFICITY_METRICS = ("l2", "cosine")


def class_specificity(profiles: dict[str, np.ndarray], *, metric: str = "l2") -> dict[str, float]:
    """How much the class profiles of each layer differ: 0 when every class gets the same gates.

    The mean over all pairs of classes (rows without NaN) of

    - ``"l2"`` (default): ``||p_i - p_j||_2 / sqrt(C)``, the root-mean-square gate
      difference per channel, in gate units (at most 1 for sigmoid gates), so layers
      of different widths compare;
    - ``"cosine"``: ``1 - cos(p_i, p_j)``, insensitive to a common scale.

    Args:
        profiles: ``{key: (K, C)}`` as returned by :func:`class_profiles`.
        metric: ``"l2"`` or ``"cosine"``.

    Returns:
        ``{key: specificity}``; NaN for a layer with fewer than two classes present.

    Example:
        >>> class_specificity({"se": np.array([[0.0, 0.0], [1.0, 1.0]])})
        {'se': 1.0}
    """
    if metric not in SPECIFICITY_METRICS:
        raise fail("metric", f"one of {SPECIFICITY_METRICS}", metric)
    scores = {}
    for key, profile in profiles.items():
        profile = np.asarray(profile, dtype=np.float64)
        if profile.ndim != 2:
            raise ValueError(
                f"Expected each profile to have shape (num_classes, channels), got "
                f"{key!r} with shape {profile.shape}"
            )
        rows = profile[~np.isnan(profile).any(axis=1)]
        distances = []
        for a, b in combinations(rows, 2):
            if metric == "l2":
                distances.append(np.linalg.norm(a - b) / np.sqrt(profile.shape[1]))
            else:
                norms = np.linalg.norm(a) * np.linalg.norm(b)
                cosine = float(a @ b / norms) if norms > 0 else float(np.array_equal(a, b))
                distances.append(1.0 - cosine)
        scores[key] = float(np.mean(distances)) if distances else float("nan")
    return scores


def pick_depths(layer_names: Sequence[str]) -> dict[str, str]:
    """An early, a middle and the last layer of a list in depth order (SENet's figure 6 picks).

    Args:
        layer_names: Attention layer keys in graph order (the keys of :func:`excitations`).

    Returns:
        ``{"early": ..., "middle": ..., "last": ...}``; with fewer than three layers
        only the distinct ones: ``{"early", "last"}`` for two, ``{"last"}`` for one.

    Example:
        >>> pick_depths(["b1_se", "b2_se", "b3_se", "b4_se", "b5_se"])
        {'early': 'b1_se', 'middle': 'b3_se', 'last': 'b5_se'}
    """
    names = list(layer_names)
    if not names:
        raise ValueError("`layer_names` must hold at least one name, got []")
    if len(names) == 1:
        return {"last": names[0]}
    if len(names) == 2:
        return {"early": names[0], "last": names[1]}
    return {"early": names[0], "middle": names[len(names) // 2], "last": names[-1]}
