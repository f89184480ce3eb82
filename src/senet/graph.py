"""Walking a functional Keras model's call graph, read-only: the one home for it.

A functional model is a graph of *nodes*, one per call of a layer (or op) on symbolic
tensors; a node has public attributes ``operation`` (the layer), ``arguments`` (the call's
arguments, ``arguments.fill_in(values)`` substitutes them), ``input_tensors``, ``outputs``
and ``is_input``. Every senet module that needs those calls reads them here: the model
rewriter (:mod:`senet.models.rewrite`, behind ``insert_attention`` and ``fuse_se``), the
explain tools (``excitations``, ``grad_cam``) and ``bench.count_flops``.

Floor: this module imports only Keras, so it sits at the bottom with ``layers/`` and
``data/``. ``models/`` and ``explain/`` share the floor above and may not import each
other, and ``bench`` sits higher still; a walker inside ``models/`` could not serve them all.

Public Keras API covers nearly everything: a built Sequential's graph is
``keras.Model(model.inputs, model.outputs)``; a functional model's input and output
structures are ``model.input`` and ``model.output``, flat as ``model.inputs`` and
``model.outputs``. What Keras 3 does not expose is *which nodes make up a functional
model*: ``layer.input`` / ``layer.output`` raise for a layer called more than once (a
shared layer, a layer used in two models) and do not name the call inside one model, and
``keras.models.clone_model``, which walks the nodes, always builds a new model by calling
layers on new symbolic tensors. So :func:`nodes` reads ``Functional._nodes_by_depth``;
it is the only private Keras attribute senet reads, and everything else here (and in
``rewrite``, ``explain``, ``bench``) is built on it, so a Keras change is fixed in one place.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import ops

__all__ = ["Graph", "functional", "nodes", "run"]


def functional(model) -> keras.Model:
    """The functional model that runs ``model``: itself, or a built Sequential's graph.

    A built Sequential is rebuilt as ``keras.Model(model.inputs, model.outputs)`` over
    the same layers and tensors (no layer is called, nothing of ``model`` changes).

    Raises:
        ValueError: for a Sequential without an input shape or a subclassed model (its
            graph is its Python ``call``).
    """
    if isinstance(model, keras.Sequential):
        try:
            inputs, outputs = model.inputs, model.outputs
        except (AttributeError, ValueError):
            raise ValueError(
                "`model` must be a functional or built Sequential Keras model, "
                f"got Sequential model {model.name!r} with no input shape yet, so it "
                "has no graph; start it with `keras.Input(shape)` or call "
                "`model.build(input_shape)` first."
            ) from None
        # A Sequential has one input and one output; a tensor, not a list of one, as its own
        # graph has it (a list would make Keras warn at every plain-array call).
        return keras.Model(inputs[0], outputs[0], name=model.name)
    if not isinstance(model, keras.Model) or _nodes_by_depth(model) is None:
        raise ValueError(
            "`model` must be a functional or built Sequential Keras model, got "
            f"model={getattr(model, 'name', model)!r} of class {type(model).__name__}, "
            "a subclassed model whose graph is its Python `call`; rebuild it functionally."
        )
    return model


def _nodes_by_depth(model):
    # The one read of a private Keras attribute in senet (see the module docstring):
    # Keras 3 lists a functional model's own nodes nowhere else. Depth counts from the
    # outputs, so decreasing depth is a topological order; a layer's nodes from other
    # models it was called in are not in it.
    return getattr(model, "_nodes_by_depth", None)


def nodes(model) -> list:
    """Every node of ``model``'s graph in topological order, its input nodes first.

    ``model`` may be functional or a built Sequential (see :func:`functional`); nested
    models are one node each (walk them with another call).
    """
    by_depth = _nodes_by_depth(functional(model))
    ordered = [node for depth in sorted(by_depth, reverse=True) for node in by_depth[depth]]
    # An input read only near the outputs sits at a low depth; list every input first.
    return [n for n in ordered if n.is_input] + [
        n for n in ordered if not n.is_input and n.operation is not None
    ]


class Graph:
    """Producers, consumers and calls of a functional (or built Sequential) model.

    Attributes:
        model: The functional model (a built Sequential's graph, see :func:`functional`).
        name: The given model's name.
        inputs: Flat list of the model's input tensors (``model.inputs``).
        outputs: Flat list of its output tensors (``model.outputs``).
        nodes: The call nodes (no input nodes) in topological order.
    """

    def __init__(self, model: keras.Model):
        self.name = model.name
        self.model = functional(model)
        self.inputs = list(self.model.inputs)
        self.outputs = list(self.model.outputs)
        every = nodes(self.model)
        self.nodes = [node for node in every if not node.is_input]
        self._producer = {}
        self._consumers: dict[int, list] = {}
        self._nodes_of: dict[int, list] = {}
        for node in every:
            self._nodes_of.setdefault(id(node.operation), []).append(node)
            for tensor in node.outputs:
                self._producer[id(tensor)] = node
            if not node.is_input:
                for tensor in node.input_tensors:
                    self._consumers.setdefault(id(tensor), []).append(node)
        self._output_ids = {id(tensor) for tensor in self.outputs}

    def producer(self, tensor):
        """The call node that computes ``tensor``, or None for a model input."""
        node = self._producer.get(id(tensor))
        return None if node is None or node.is_input else node

    def layer_of(self, tensor):
        """The layer that produces ``tensor``: an ``InputLayer`` for a model input."""
        return self._producer[id(tensor)].operation

    def consumers(self, tensor) -> list:
        """The call nodes that read ``tensor``, in topological order."""
        return self._consumers.get(id(tensor), [])

    def is_output(self, tensor) -> bool:
        return id(tensor) in self._output_ids

    def nodes_of(self, layer) -> list:
        """The calls of ``layer`` in this model, earliest first (its input node for an input)."""
        return list(self._nodes_of.get(id(layer), []))

    def input_layers(self) -> list:
        return [self.layer_of(tensor) for tensor in self.inputs]

    def layers(self) -> list:
        """Input layers first, then the layer of every call, in topological order."""
        return self.input_layers() + [node.operation for node in self.nodes]

    def outputs_of(self, layer) -> list:
        """The output tensors of ``layer``'s first call in this model."""
        calls = self._nodes_of.get(id(layer))
        return list(calls[0].outputs) if calls else []

    def single_use(self, node) -> bool:
        """Whether the node's one output feeds exactly one call and is no model output."""
        return (
            len(node.outputs) == 1
            and not self.is_output(node.outputs[0])
            and len(self.consumers(node.outputs[0])) == 1
        )

    def depths(self) -> dict[int, int]:
        """``id(tensor) -> `` the longest path, in calls, from the model inputs to it."""
        depth = {id(tensor): 0 for tensor in self.inputs}
        for node in self.nodes:
            below = [depth.get(id(t), 0) for t in node.input_tensors]
            for tensor in node.outputs:
                depth[id(tensor)] = 1 + max(below, default=0)
        return depth


def run(model: keras.Model, inputs, operation_fn: Callable | None = None):
    """Run ``model``'s graph on real tensors, each call through ``operation_fn(layer)``.

    ``operation_fn(layer)`` returns what to call instead of ``layer`` (itself by default),
    so a caller can read or replace any call on the way; it works on tensors of any
    backend, tracers included, and calls layers as the model would (inference unless a
    call passed ``training``). ``inputs`` has the model's input structure (a dict is
    matched by input name also for a list of inputs); an input of rank one less or more
    with a trailing 1 is adjusted as Keras does. Returns the model's output structure.
    """
    graph = functional(model)
    references = list(graph.inputs)
    if isinstance(inputs, dict) and not isinstance(graph.input, dict):
        flat = [inputs[reference.name] for reference in references]
    else:
        flat = keras.tree.flatten(inputs)
    if len(flat) != len(references):
        raise ValueError(
            f"`inputs` must hold {len(references)} arrays for model {model.name!r}, got {len(flat)}"
        )
    values = {
        id(reference): _match_rank(ops.convert_to_tensor(x, dtype=reference.dtype), reference)
        for reference, x in zip(references, flat, strict=True)
    }
    operation_fn = operation_fn or (lambda operation: operation)
    for node in nodes(graph):
        if node.is_input or any(id(t) not in values for t in node.input_tensors):
            continue  # An input, or a call on an optional input that was not given.
        args, kwargs = node.arguments.fill_in(values)
        outputs = operation_fn(node.operation)(*args, **kwargs)
        for reference, value in zip(node.outputs, keras.tree.flatten(outputs), strict=True):
            values[id(reference)] = value
    return keras.tree.pack_sequence_as(graph.output, [values[id(t)] for t in graph.outputs])


def _match_rank(x, reference):
    """Keras's own input rule: a trailing axis of 1 may be missing or extra."""
    rank, wanted = len(x.shape), len(reference.shape)
    if rank == wanted + 1 and x.shape[-1] == 1:
        return ops.squeeze(x, axis=-1)
    if rank == wanted - 1 and reference.shape[-1] == 1:
        return ops.expand_dims(x, axis=-1)
    return x
