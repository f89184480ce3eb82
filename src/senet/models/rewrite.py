"""Rewrite a functional Keras model layer by layer: senet's one graph rewriter.

:func:`rewrite` is ``keras.models.clone_model(model, clone_function=...,
call_function=...)``, public Keras API, plus the four things model surgery needs that
``clone_model`` does not do itself:

* the original layer: ``clone_model`` hands its ``call_function`` the clone only;
  :func:`rewrite` keeps the map clone -> original and calls
  ``call(layer, clone, *args, **kwargs)``, so a rewrite decides by the original layer;
* the weights: ``clone_model`` re-creates each layer from its config with fresh
  weights; :func:`rewrite` copies every original's weights into its clone once the new
  model is built (``set_weights`` needs built layers), so the two models share no state;
* Sequential models: ``clone_model`` takes a ``call_function`` for functional models
  only, so a built Sequential is rewritten through its functional graph
  (:func:`senet.graph.functional`); the result is functional either way;
* model inputs: ``clone_model`` calls nothing for an input, so ``inputs=`` (what to
  feed onward instead of an input) is substituted into the arguments of every call that
  reads that input;
* compilation: ``clone_model`` compiles its copy of a compiled model again from the
  compile config, which fails for a loss or metric that is a plain Python function; the
  copy is made from an uncompiled view of the graph, ``keras.Model(model.input,
  model.output)`` over the same tensors (no layer is called), and comes back uncompiled.

What ``call`` returns stands for the call's outputs. A call that returns one of its own
arguments instead of calling its clone (a layer being fused away) leaves no trace:
clones that are never called, and calls whose outputs lead to no model output, are not
part of the new model (a functional model keeps only what its outputs depend on).

Finding the calls to rewrite (producers, consumers, depths) is :class:`senet.graph.Graph`.
"""

from __future__ import annotations

from collections.abc import Callable

import keras

from senet.graph import Graph

__all__ = ["copy_layer", "rewrite"]

#: ``call(layer, clone, *args, **kwargs) -> outputs``: ``layer`` is the original layer of
#: this call, ``clone`` its re-created copy (given the original's weights at the end),
#: ``args``/``kwargs`` the call's arguments in the new model.
Call = Callable[..., object]


def rewrite(
    model: keras.Model,
    call: Call | None = None,
    *,
    inputs: Callable | None = None,
    name: str | None = None,
) -> keras.Model:
    """A new functional model: ``model`` with every call made through ``call``.

    Args:
        model: A functional or built Sequential Keras model.
        call: ``call(layer, clone, *args, **kwargs)`` returns the outputs of one call of
            ``layer``; the default is ``clone(*args, **kwargs)``, which copies the model.
        inputs: ``inputs(reference, tensor)`` returns what the calls reading the model
            input ``reference`` get instead of its new input ``tensor`` (default: the
            tensor itself).
        name: The new model's name (default ``model``'s).

    Returns:
        An uncompiled functional ``keras.Model`` with the same input structure.

    Raises:
        ValueError: for a model that is not functional or a built Sequential, a layer
            with weights that cannot be re-created from its config, or an ``inputs``
            substitution for an input that is itself a model output.

    Example:
        >>> import keras
        >>> x = keras.Input((4,))
        >>> model = keras.Model(x, keras.layers.Dense(2, name="dense")(x))
        >>> def add_dropout(layer, clone, *args, **kwargs):
        ...     return keras.layers.Dropout(0.5, name=f"{layer.name}_drop")(clone(*args, **kwargs))
        >>> [layer.name for layer in rewrite(model, add_dropout).layers][1:]
        ['dense', 'dense_drop']
    """
    graph = Graph(model)
    call = call or _plain_call
    originals: dict[int, object] = {}

    def clone_function(layer):
        clone = copy_layer(layer)
        originals[id(clone)] = layer
        return clone

    def call_function(clone, *args, **kwargs):
        if substitutes:
            args, kwargs = keras.tree.map_structure(
                lambda value: substitutes.get(id(value), value), (args, kwargs)
            )
        return call(originals[id(clone)], clone, *args, **kwargs)

    # Named like the input layers (clone_model would take the tensors' names).
    new_inputs = keras.tree.map_structure(
        lambda x: keras.Input(
            batch_shape=x.shape, dtype=x.dtype, sparse=x.sparse, name=graph.layer_of(x).name
        ),
        graph.model.input,
    )
    substitutes = _substitutes(graph, new_inputs, inputs) if inputs is not None else {}
    view = keras.Model(graph.model.input, graph.model.output, name=name or model.name)
    result = keras.models.clone_model(
        view,
        input_tensors=new_inputs,
        clone_function=clone_function,
        call_function=call_function,
    )
    for layer in result.layers:
        original = originals.get(id(layer))
        if original is not None and original is not layer and getattr(original, "weights", None):
            try:
                layer.set_weights(original.get_weights())
            except ValueError as error:
                raise ValueError(
                    f"Could not copy the weights of layer {original.name!r} into its clone: {error}"
                ) from error
    return result


def _plain_call(layer, clone, *args, **kwargs):
    return clone(*args, **kwargs)


def _substitutes(graph, new_inputs, inputs) -> dict[int, object]:
    substitutes = {}
    flat_new = keras.tree.flatten(new_inputs)
    for reference, tensor in zip(graph.inputs, flat_new, strict=True):
        value = inputs(reference, tensor)
        if value is tensor:
            continue
        if graph.is_output(reference):
            raise ValueError(
                f"Input {reference.name!r} of model {graph.name!r} is also one of its "
                "outputs; a rewrite of what it feeds cannot reach that output."
            )
        substitutes[id(tensor)] = value
    return substitutes


def copy_layer(layer):
    """A fresh copy of ``layer`` from its config (nested models via ``clone_model``).

    The copy has no weights yet; :func:`rewrite` sets them once it is built. A layer
    without weights that cannot be re-created from its config (a ``Lambda`` holding a
    Python lambda, a Keras op) is returned itself: it holds no state to share.
    """
    try:
        if isinstance(layer, keras.Model):
            return keras.models.clone_model(layer)
        return layer.__class__.from_config(layer.get_config())
    except Exception as error:
        if not getattr(layer, "weights", None):
            return layer
        raise ValueError(
            f"Layer {layer.name!r} ({type(layer).__name__}) cannot be re-created from its "
            f"config, so its weights cannot be copied into a new model: {error}"
        ) from error
