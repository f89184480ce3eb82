"""Retrofit attention into an existing Keras model ("model surgery").

``insert_attention(model, "se")`` rebuilds a functional or Sequential Keras 3 model
layer by layer and puts an attention layer after chosen tensors: by default on every
residual branch right before its ``Add`` (SE-ResNet's placement), or after each conv
block of a plain CNN. Every original layer is re-created from its config and gets the
original weights, so the new model is independent of the old one; with
``init="identity"`` the inserted layers start as a near-identity, so the retrofitted
model computes almost what the original did and fine-tuning starts from there.

How close "almost" is, measured with ``tests/models/test_surgery.py``'s setup
(``weights=None``, ``input_shape=(64, 64, 3)``, 10 classes, logits as outputs, two
random batches of 8 images in [0, 1]; max |softmax difference| / relative logit
difference ``||l' - l|| / ||l||``, SE with r=8):

=====================  ===================  ===================  ===================
model                  identity (g=0.999)   g=0.9999             init="random"
=====================  ===================  ===================  ===================
ResNet50, fresh        1.2e-5 / 1.7e-3                           3.6e-3 / 0.52
ResNet50, calibrated   0.065 / 0.067        0.007 / 0.007        0.73 / 0.83
MobileNetV2, fresh     0 / 6.4e-5                                0 / 0.033
MobileNetV2, calib.    0.006 / 0.027        7e-4 / 2.8e-3        0.27 / 1.1
=====================  ===================  ===================  ===================

"fresh" is the untrained network as built: moving means 0 and variances 1 let its
activations fade with depth (MobileNetV2's logits are ~1e-11, so its softmax is flat
whatever happens), which flatters the comparison. "calibrated" sets every BatchNorm's
moving statistics to one batch's statistics first, so every layer sees normalised
activations as in a trained network; a random network then amplifies the 0.1% change
of each residual branch 27-fold (MobileNetV2) to 67-fold (ResNet50), and the
difference scales with ``1 - g`` (``identity_gain``). sSE and CBAM give the same
numbers as SE (same constant gain); scSE starts as an exact identity (difference 0).
The tests assert the calibrated case with 2x margins (0.15 for ResNet50, 0.06 for
MobileNetV2) and, exactly, that the retrofit equals the original with each branch
BatchNorm's gamma and beta times g.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import keras

from senet.checks import fail
from senet.graph import Graph
from senet.layers import attention
from senet.models.rewrite import rewrite

__all__ = ["IDENTITY_GAIN", "insert_attention"]

#: Default ``identity_gain``: with ``init="identity"`` inserted layers start as ``y = g * x``
#: (exactly ``y = x`` for scSE, whose two gates start at 0.5 each and add up).
#: For SE's sigmoid gate that is an expand bias of ``logit(0.999) = 6.9068``. Closer to 1
#: would move the outputs less but saturates the gate: its gradient is
#: ``g * (1 - g) = 0.000999`` here, which fine-tuning still moves.
IDENTITY_GAIN = 0.999

_INITS = ("identity", "random")
_CONVOLUTIONS = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
)
# Layers that keep a conv block going: per-channel or per-element, shape-preserving.
_BLOCK_TAIL = (
    keras.layers.BatchNormalization,
    keras.layers.LayerNormalization,
    keras.layers.GroupNormalization,
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.PReLU,
    keras.layers.ELU,
)


def insert_attention(
    model: keras.Model,
    kind: str = "se",
    where: str | Iterable[str] | Callable[[keras.layers.Layer], bool] = "auto",
    init: str = "identity",
    *,
    name_suffix: str | None = None,
    identity_gain: float = IDENTITY_GAIN,
    **layer_options,
) -> keras.Model:
    """Return a new functional model with attention layers inserted into ``model``.

    The model is rebuilt with :func:`senet.models.rewrite.rewrite` (Keras's
    ``clone_model``): each layer is re-created with
    ``layer.__class__.from_config(layer.get_config())`` (nested models, treated as
    opaque blocks, with ``keras.models.clone_model``) and given the original's weights,
    so the two models share no state. A weightless layer that cannot be re-created
    from its config (a ``Lambda`` holding a Python lambda) is reused as it is.

    Where attention goes (``where``):

    * ``"auto"``: on every residual branch, right before its ``Add``. The inputs of
      an ``Add`` (layer or ``keras.ops.add`` / ``x + y``) are ranked by their depth,
      the longest path from the model's inputs in layers; the shallowest one is the
      shortcut (the identity, or a projection such as ResNet's ``*_0_bn``, which is
      always shorter than the branch it skips) and every deeper input is a residual
      branch. ResNet50 gets 16 layers, after each ``convN_blockM_3_bn``; MobileNetV2
      gets 10, after each ``block_N_project_BN`` of a block with an ``Add``. An
      ``Add`` whose shallowest inputs tie has no identifiable shortcut and is skipped.
      A model without any such ``Add`` (a plain CNN) gets attention after each conv
      block: after each convolution, or after the run of normalisation and
      activation layers that directly follows it (Conv -> BN -> ReLU: after the
      ReLU), stopping before pooling, dropout, a fork or a model output. Only rank
      3-5 tensors with a known channel count qualify; ``Add`` s inside nested
      models are not looked at.
    * a list of layer names: after each named layer's output (all of its consumers,
      and the model output if it is one, see the inserted layer's output).
    * a callable ``where(layer) -> bool``: after every layer of the model (input
      layers included, topological order) for which it returns true.

    Inserted layers are built with ``senet.layers.attention(kind, **layer_options)``
    and named ``"<layer>_<name_suffix or kind>"`` (``"conv2_block1_3_bn_se"``;
    ``"<layer>_<i>_<suffix>"`` after output ``i`` of a multi-output layer). Unless
    given in ``layer_options`` they take the anchor layer's dtype policy and, where the
    anchor says (``data_format`` attribute, or a BatchNormalization on axis 1), its
    data format.

    ``init="identity"`` makes each inserted layer start as ``y = g * x`` with a
    constant ``g = identity_gain`` (default ``IDENTITY_GAIN``, 0.999): SE's expand
    kernel is zero and its expand bias solves ``gate(b) = g`` (``logit(0.999) =
    6.9068`` for the sigmoid); sSE the same with its 1x1 kernel and bias; CBAM splits
    ``g`` into ``sqrt(g)`` for its channel and spatial gates; scSE starts exactly as
    ``y = x`` (both gates 0.5, which add up; ``identity_gain`` is not used). ECA has
    no bias, so its gate cannot start near 1: ``init="identity"`` raises for it, use
    ``init="random"``. Each layer class does this itself (``identity_init(gain)``); a
    registered kind whose class has no such method raises too.
    ``init="random"`` keeps the layers' own initialisation.

    The returned model is not compiled; its name is the original's.

    Args:
        model: A functional or (built) Sequential Keras 3 model, e.g.
            ``keras.applications.ResNet50(weights=None)`` or one loaded from ``.h5``.
        kind: Attention kind for ``senet.layers.attention``: ``"se"``, ``"eca"``,
            ``"sse"``, ``"scse"``, ``"cbam"`` or a registered one.
        where: ``"auto"``, a list of layer names, or a predicate on layers.
        init: ``"identity"`` (default) or ``"random"``.
        name_suffix: Suffix of the inserted layers' names; defaults to ``kind``.
        identity_gain: The constant gain ``g`` of ``init="identity"``, in (0, 1];
            closer to 1 changes the outputs less (the difference scales with
            ``1 - g``) but saturates the sigmoid gate more (its slope is
            ``g * (1 - g)``). A gate that cannot reach ``g`` raises.
        **layer_options: Passed to the attention layer (``reduction``, ``squeeze``,
            ``gate``, ...); not ``name``, which is generated.

    Returns:
        A new ``keras.Model`` (functional) with the same inputs and outputs.

    Raises:
        ValueError: for a model that is not Functional or a built Sequential (a
            subclassed model), a layer called at several points of the model (shared
            layer), a ``where`` name that is no layer of the model, a selected layer
            whose output cannot take attention, an unknown ``kind`` or ``init``,
            ``init="identity"`` for a kind without an identity start, or a generated
            name that is already a layer's name.

    Example:
        >>> import keras
        >>> base = keras.applications.ResNet50(
        ...     weights=None, input_shape=(64, 64, 3), classes=10)
        >>> se_resnet = insert_attention(base, "se", reduction=16)
        >>> len(se_resnet.layers) - len(base.layers)
        16
        >>> se_resnet.get_layer("conv2_block1_3_bn_se").name
        'conv2_block1_3_bn_se'
    """
    graph = Graph(model)
    _check_called_once(graph)
    suffix = _check_insert_options(kind, init, identity_gain, name_suffix, layer_options)
    anchors = _select(graph, where)
    names = _inserted_names(graph, anchors, suffix)

    def attend(ref, new):
        if id(ref) not in anchors:
            return new
        anchor = anchors[id(ref)][1]
        options = dict(layer_options)
        if getattr(anchor, "dtype_policy", None) is not None:
            options.setdefault("dtype", anchor.dtype_policy)
        data_format = _data_format(anchor, len(ref.shape))
        if data_format is not None:
            options.setdefault("data_format", data_format)
        layer = attention(kind, name=names[id(ref)], **options)
        try:
            out = layer(new)
        except ValueError as error:
            raise ValueError(
                f"Cannot insert {kind!r} attention after layer {anchor.name!r} (output shape "
                f"{tuple(ref.shape)}): {error}"
            ) from error
        if init == "identity":
            _identity_init(layer, identity_gain)
        return out

    def call(layer, clone, *args, **kwargs):
        outputs = clone(*args, **kwargs)
        references = graph.outputs_of(layer)
        if not any(id(reference) in anchors for reference in references):
            return outputs
        flat = keras.tree.flatten(outputs)
        attended = [attend(ref, new) for ref, new in zip(references, flat, strict=True)]
        return keras.tree.pack_sequence_as(outputs, attended)

    return rewrite(model, call, inputs=attend)


def _check_insert_options(kind, init, identity_gain, name_suffix, layer_options) -> str:
    """Every argument of :func:`insert_attention` checked before any surgery (one
    unconnected layer is built, which checks ``kind`` and the options); the name suffix."""
    if not isinstance(init, str) or init not in _INITS:
        raise fail("init", f"one of {_INITS}", init)
    if (
        isinstance(identity_gain, bool)
        or not isinstance(identity_gain, (int, float))
        or not 0 < identity_gain <= 1
    ):
        raise fail("identity_gain", "a number in (0, 1]", identity_gain)
    if "name" in layer_options:
        raise ValueError(
            "The inserted layers are named '<layer>_<name_suffix>'; pass `name_suffix` "
            f"instead of `name`, got name={layer_options['name']!r}"
        )
    if kind is None or (isinstance(kind, str) and kind.lower() == "none"):
        raise ValueError(f"`kind` must name an attention kind, got {kind!r}")
    probe = attention(kind, **layer_options)
    if init == "identity":
        _check_identity_possible(probe, kind)
    suffix = kind.lower() if name_suffix is None else name_suffix
    if not isinstance(suffix, str) or not suffix:
        raise fail("name_suffix", "a non-empty string", suffix)
    return suffix


def _inserted_names(graph: Graph, anchors: dict, suffix: str) -> dict[int, str]:
    """``<layer>[_<output>]_<suffix>`` for each anchor; a name the model has is refused."""
    names = {}
    taken = {layer.name for layer in graph.layers()}
    for key, (tensor, layer) in anchors.items():
        outputs = graph.outputs_of(layer)
        index = f"_{outputs.index(tensor)}" if len(outputs) > 1 else ""
        name = f"{layer.name}{index}_{suffix}"
        if name in taken:
            raise ValueError(
                f"The inserted layer's name {name!r} is already taken in model "
                f"{graph.name!r}; pass another `name_suffix`, got name_suffix={suffix!r}"
            )
        taken.add(name)
        names[key] = name
    return names


def _check_called_once(graph: Graph) -> None:
    """Anchors are found by layer, so each layer may be called at one point only."""
    for node in graph.nodes:
        count = len(graph.nodes_of(node.operation))
        if count > 1:
            raise ValueError(
                f"Layer {node.operation.name!r} is called at {count} points of model "
                f"{graph.name!r} (a shared layer); insert_attention rewrites models in "
                "which each layer is called once."
            )


def _select(graph: Graph, where) -> dict[int, tuple]:
    """Map ``id(tensor) -> (tensor, producing layer)`` for every insertion point."""
    if isinstance(where, str):
        if where != "auto":
            raise fail(
                "where", "'auto', a list of layer names or a callable `where(layer) -> bool`", where
            )
        chosen = _residual_branches(graph) or _conv_block_ends(graph)
    elif callable(where):
        chosen = [t for layer in graph.layers() if where(layer) for t in graph.outputs_of(layer)]
    elif isinstance(where, Iterable):
        wanted = list(where)
        by_name = {layer.name: layer for layer in graph.layers()}
        for name in wanted:
            if not isinstance(name, str):
                raise ValueError(
                    f"`where` must list layer names (str), got {name!r} in where={wanted!r}"
                )
            if name not in by_name:
                raise ValueError(
                    f"`where` names layer {name!r}, which is not a layer of model "
                    f"{graph.name!r}, got where={wanted!r}"
                )
        chosen = [t for name in dict.fromkeys(wanted) for t in graph.outputs_of(by_name[name])]
    else:
        raise fail(
            "where", "'auto', a list of layer names or a callable `where(layer) -> bool`", where
        )
    return {id(t): (t, graph.layer_of(t)) for t in chosen}


def _is_add(operation) -> bool:
    # `keras.layers.Add` and the op behind `keras.ops.add` / `x + y` on symbolic tensors.
    return isinstance(operation, keras.layers.Add) or (
        type(operation).__name__ == "Add" and type(operation).__module__.endswith("ops.numpy")
    )


def _fits(tensor) -> bool:
    """Rank 3-5 with a known channel dimension (either end), as the attention layers need."""
    return len(tensor.shape) in (3, 4, 5) and None not in (tensor.shape[1], tensor.shape[-1])


def _residual_branches(graph: Graph) -> list:
    depth = graph.depths()
    branches = []
    for node in graph.nodes:
        if not _is_add(node.operation):
            continue
        summands = list({id(t): t for t in node.input_tensors}.values())
        if len(summands) < 2:
            continue
        shallowest = min(depth[id(t)] for t in summands)
        if sum(depth[id(t)] == shallowest for t in summands) > 1:
            continue  # No single shortcut: parallel branches merged, not a residual.
        branches += [t for t in summands if depth[id(t)] > shallowest and _fits(t)]
    return list({id(t): t for t in branches}.values())


def _conv_block_ends(graph: Graph) -> list:
    ends = []
    for node in graph.nodes:
        if not isinstance(node.operation, _CONVOLUTIONS) or len(node.outputs) != 1:
            continue
        tensor = node.outputs[0]
        while not graph.is_output(tensor):
            consumers = graph.consumers(tensor)
            if len(consumers) != 1:
                break
            follower = consumers[0]
            if not isinstance(follower.operation, _BLOCK_TAIL) or len(follower.outputs) != 1:
                break
            tensor = follower.outputs[0]
        if _fits(tensor):
            ends.append(tensor)
    return list({id(t): t for t in ends}.values())


def _data_format(layer, rank: int) -> str | None:
    data_format = getattr(layer, "data_format", None)
    if data_format in ("channels_last", "channels_first"):
        return data_format
    axis = getattr(layer, "axis", None)
    if isinstance(layer, keras.layers.BatchNormalization) and isinstance(axis, int):
        return "channels_first" if axis % rank == 1 else "channels_last"
    return None


def _check_identity_possible(layer, kind) -> None:
    """Raise before any surgery if ``layer`` cannot start as a constant gain: every senet
    attention layer says so itself (``identity_init(gain, check_only=True)``)."""
    identity_init = getattr(layer, "identity_init", None)
    try:
        if not callable(identity_init):
            raise ValueError("the layer has no identity_init(gain) method")
        identity_init(1.0, check_only=True)
    except ValueError as error:
        raise ValueError(
            f"init='identity' is not available for kind={kind!r} ({type(layer).__name__}): "
            f"{error}. Use init='random'."
        ) from None


def _identity_init(layer, gain: float) -> None:
    """Zero the input-dependent weights and set the biases so the gate is constant."""
    layer.identity_init(gain)
