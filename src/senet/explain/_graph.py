"""Walking a Keras model's layer graph: attention layers, nodes, and runs with substitutions.

Everything here reads the model and never changes it: no layer is called on
symbolic tensors (which would add inbound nodes, after which ``layer.input``
raises for "multiple inbound nodes"), no attribute is set. The graph itself (a
model's nodes, a run with substituted calls) comes from :mod:`senet.graph`, senet's
one functional-graph walker; this module adds what explain needs on top: attention
layers, ``"outer/inner"`` paths into nested models, and batching.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import keras
import numpy as np

from senet import graph as _walker
from senet.checks import fail

# A substitute for one layer call: ``fn(layer, *args, **kwargs) -> output``.
Replacement = Callable[..., object]


def is_attention(layer) -> bool:
    """True for layers that expose a channel gate: ``layer.excitation(x) -> (B, C)``."""
    return not isinstance(layer, keras.Model) and callable(getattr(layer, "excitation", None))


def graph_of(model: keras.Model) -> keras.Model:
    """The functional graph that runs ``model``: itself, or a built Sequential's graph."""
    return _walker.functional(model)


def nodes_of(graph: keras.Model, layer) -> list:
    """The calls (nodes) of ``layer`` inside ``graph``, earliest first."""
    return [node for node in _walker.nodes(graph) if node.operation is layer]


def attention_paths(model: keras.Model, prefix: str = "") -> list[str]:
    """Paths (``"name"`` or ``"outer/inner"``) of every attention layer, in graph order."""
    paths = []
    for layer in model.layers:
        if is_attention(layer):
            paths.append(prefix + layer.name)
        elif isinstance(layer, keras.Model):
            paths.extend(attention_paths(layer, prefix + layer.name + "/"))
    return paths


def get_layer(model: keras.Model, path: str):
    """The layer at ``path``: a layer name, or ``"outer/inner"`` inside nested models."""
    head, _, rest = path.partition("/")
    names = [layer.name for layer in model.layers]
    if head not in names:
        raise ValueError(
            f"`layer` must name a layer of model {model.name!r} (nested layers as "
            f"'outer/inner'), got layer={path!r}; available: {names}"
        )
    layer = model.get_layer(head)
    if not rest:
        return layer
    if not isinstance(layer, keras.Model):
        raise ValueError(
            f"Expected {head!r} in layer={path!r} to be a nested model, "
            f"got a {type(layer).__name__}"
        )
    return get_layer(layer, rest)


def forward(model: keras.Model, inputs, replace: dict[str, Replacement]):
    """Run ``model`` on ``inputs`` in inference mode, with some layer calls substituted.

    ``replace`` maps layer paths (``"name"`` or ``"outer/inner"``) to functions
    ``fn(layer, *args, **kwargs)`` used instead of ``layer(*args, **kwargs)``: to
    read a layer's input or output on the way, or to feed a given tensor onward
    from a layer (what differentiating with respect to an activation needs on
    JAX, where a traced function can only be differentiated w.r.t. its inputs).
    Works on tensors of any backend, tracers included.
    """
    own: dict[int, Callable] = {}
    nested: dict[int, tuple[keras.Model, dict[str, Replacement]]] = {}
    for path, fn in replace.items():
        head, _, rest = path.partition("/")
        layer = get_layer(model, head)
        if rest:
            nested.setdefault(id(layer), (layer, {}))[1][rest] = fn
        else:
            own[id(layer)] = _bind(fn, layer)
    for key, (sub_model, sub_replace) in nested.items():
        own[key] = _bind_model(sub_model, sub_replace)
    outputs = _walker.run(model, inputs, operation_fn=lambda op: own.get(id(op), op))
    if isinstance(outputs, (list, tuple)) and len(outputs) == 1:
        return outputs[0]
    return outputs


def _bind(fn: Replacement, layer) -> Callable:
    return lambda *args, **kwargs: fn(layer, *args, **kwargs)


def _bind_model(model: keras.Model, replace: dict[str, Replacement]) -> Callable:
    def call(inputs, *args, **kwargs):
        return forward(model, inputs, replace)

    return call


def num_samples(x) -> int:
    """Batch size of an input structure (array, list or dict of arrays)."""
    return int(np.shape(keras.tree.flatten(x)[0])[0])


def batches(x, batch_size: int | None) -> Iterator:
    """Slices of the input structure ``x`` along the batch axis (all of it when None)."""
    total = num_samples(x)
    if batch_size is None:
        yield x
        return
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise fail("batch_size", "a positive integer or None", batch_size)
    for start in range(0, total, batch_size):
        yield keras.tree.map_structure(lambda a, s=start: a[s : s + batch_size], x)


def output_layer(model: keras.Model):
    """The layer that produces the model's (first) output."""
    graph = _walker.Graph(model)
    return graph.layer_of(graph.outputs[0])


def output_shape(model: keras.Model, layer) -> tuple | None:
    """Shape of ``layer``'s first output at its first call in ``model`` (None if not called)."""
    nodes = nodes_of(graph_of(model), layer)
    if not nodes or not nodes[0].outputs:
        return None
    return tuple(nodes[0].outputs[0].shape)
