"""Inference-only fast path for SE-ResNets: fuse each residual tail into one layer.

A residual unit with SE in the "standard" placement ends in
``conv -> BN -> SE -> Add(shortcut) -> ReLU``. At inference BN is the per-channel affine
``a * u + b``, so the whole tail is

    y = relu(shortcut + s * (conv(h, K * a) + b'))    with    s = gate(MLP(mean(u)))

and two things make SE nearly free there:

* the squeeze is taken from the narrow input ``h`` of a 1x1 convolution: the mean is
  linear, so ``mean(BN(conv1x1(h))) = mean(h) @ (K * a) + b'``; the pooling pass over the
  wide output (4x the channels in a bottleneck) disappears, and since nothing but a
  ReLU sits between that product and the MLP's first Dense, the two matrices are
  multiplied once, here: the MLP's first layer takes ``mean(h)`` directly;
* BN is folded into the convolution (``K * a`` and ``b'``), and the per-sample scale
  ``s`` is applied once, with the shortcut and the ReLU right behind it.

:func:`fuse_se` rewrites a trained model into one with a :class:`FusedSEResidual` per
such tail, computing the same function up to float rounding. It is for inference only:
BN's moving statistics are folded into constants, so a fused model cannot be trained
(the layer raises with ``training=True``); train the unfused model and fuse again.

For a tail whose convolution is not 1x1 with stride 1 (the 3x3 ending a basic block of
ResNet-18/34, a strided projection), the mean of the output is not the convolution of the
mean (zero padding at the borders, strides), so the squeeze pools the output there, as
SE itself does, and only the BN folding and the scale are fused.

Which implementation is fastest depends on the backend and the machine; see
``benchmarks/bench_resnet.py`` and BENCHMARKS.md for what each gave on a 2-core CPU.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
from keras import ops

from senet.checks import check_choice
from senet.graph import Graph
from senet.layers import SqueezeExcite
from senet.layers.fused import IMPLEMENTATIONS, FusedSEResidual
from senet.models.rewrite import rewrite

__all__ = ["IMPLEMENTATIONS", "FusedSEResidual", "fuse_for_inference", "fuse_se"]


# -------------------------------------------------------------------- model rewrite


def fuse_for_inference(model: keras.Model, *, fold_plain: bool = False) -> tuple[keras.Model, bool]:
    """The inference path senet uses by default: ``(fuse_se(model, strict=False), True)``
    where ``model`` has residual tails to fuse, else ``(model, False)``.

    What ``senet predict``, ``senet export`` and ``senet bench`` run. SE layers in other
    placements stay as they are (silently: the model computes the same either way); a
    model that is not functional, or has nothing to fuse, is returned unchanged.

    Args:
        model: A Keras model.
        fold_plain: Also fold the residual tails without SE (see :func:`fuse_se`): what
            a plain model gets so that it is compared like for like with a fused SE model.
    """
    if not fold_plain and not any(isinstance(layer, SqueezeExcite) for layer in model.layers):
        return model, False
    with warnings.catch_warnings():  # SE layers in other placements stay as they are
        warnings.simplefilter("ignore")
        try:
            return fuse_se(model, strict=False, fold_plain=fold_plain), True
        except ValueError:  # nothing in the "standard" residual placement
            return model, False


def fuse_se(
    model: keras.Model,
    *,
    implementation: str = "auto",
    fold_plain: bool = False,
    strict: bool = True,
) -> keras.Model:
    """An inference copy of ``model`` with each SE residual tail fused into one layer.

    Every ``Conv2D -> BatchNormalization -> SqueezeExcite -> Add -> ReLU`` chain (SE's
    "standard" placement, as :func:`senet.models.resnet` builds it) becomes one
    :class:`FusedSEResidual` named like the ReLU (``conv2_block1_out``), so stage outputs
    keep their names. Every other layer is re-created from its config with the
    original's weights; the new model shares nothing with ``model``.

    The result computes the same function at inference (up to float rounding: BN is
    folded into the convolution and, for 1x1 convolutions, the squeeze is taken from the
    convolution's input). It cannot be trained; train ``model`` and fuse again.

    Args:
        model: A functional Keras model, channels_last, float32.
        implementation: How the fused layers compute, one of ``IMPLEMENTATIONS``.
        fold_plain: Also fuse residual tails without SE (``Conv2D -> BN -> Add -> ReLU``)
            into ``FusedSEResidual(excite=False)``, e.g. a plain ResNet, so that it
            gets the same BN folding as a fused SE network (a like-for-like baseline).
        strict: Raise a ``ValueError`` if a ``SqueezeExcite`` layer cannot be fused
            (another placement: "pre", "post", "identity" without a projection; a
            channels_first or mixed-precision model); with ``False`` such layers stay as
            they are, with a warning.

    Returns:
        A new functional model.

    Raises:
        ValueError: For a model that is not functional, has nothing to fuse, or (with
            ``strict``) has SE layers that cannot be fused; the message names each one
            and why.

    Example:
        >>> from senet.models import resnet
        >>> model = resnet(50, input_shape=(64, 64, 3), num_classes=5, attention="se")
        >>> fused = fuse_se(model)
        >>> type(fused.get_layer("conv2_block1_out")).__name__
        'FusedSEResidual'
    """
    check_choice("implementation", implementation, IMPLEMENTATIONS)
    if isinstance(model, keras.Sequential):
        raise ValueError(
            "fuse_se needs a functional model (keras.Model(inputs, outputs)); a Sequential "
            f"has no residual to fuse. Received: Sequential {model.name!r}"
        )
    graph = Graph(model)
    tails, rejected = [], []
    for node in graph.nodes:
        if isinstance(node.operation, SqueezeExcite):
            tail = _match_se_tail(graph, node)
            if isinstance(tail, str):
                rejected.append((node.operation.name, tail))
            else:
                tails.append(tail)
    if fold_plain:
        claimed = {id(tail.relu) for tail in tails}
        for node in graph.nodes:
            if _is_relu(node.operation) and id(node) not in claimed:
                tail = _match_plain_tail(graph, node)
                if tail is not None:
                    tails.append(tail)
    if rejected:
        details = "\n".join(f"  {name}: {reason}" for name, reason in rejected)
        message = (
            "fuse_se fuses SE in the 'standard' placement (Conv2D -> BatchNormalization -> "
            "SqueezeExcite -> Add -> ReLU); these SE layers do not fit:\n" + details
        )
        if strict:
            raise ValueError(message + "\nPass strict=False to keep them unfused.")
        warnings.warn(message + "\nThey stay unfused.", stacklevel=2)
    if not tails:
        raise ValueError(
            f"fuse_se found nothing to fuse in model {model.name!r}: it has no SqueezeExcite "
            "layer in the 'standard' placement"
            + ("" if fold_plain else " (pass fold_plain=True to fold plain residual tails)")
            + "."
        )
    return _rebuild(model, tails, implementation)


def _rebuild(model: keras.Model, tails: list[_Tail], implementation: str) -> keras.Model:
    """``model`` with each tail's five calls replaced by one ``FusedSEResidual`` call.

    Through :func:`senet.models.rewrite.rewrite`: the calls of a tail's conv, BN, SE and
    Add only note the new tensors they see (the conv's input ``h``, the Add's shortcut)
    and pass a stand-in on, without calling anything; at the tail's ReLU the fused layer
    is called on ``[h, shortcut]``. Nothing outside the tail reads those stand-ins (the
    match checked that each output feeds only the next step), so the dropped layers
    leave no trace in the new model.
    """
    roles = {}
    for tail in tails:
        for part, node in zip(("conv", "bn", "se", "add", "relu"), tail.all_nodes, strict=True):
            if node is not None:
                roles[id(node.operation)] = (tail, part)
    seen: dict[int, dict] = {}

    def call(layer, clone, *args, **kwargs):
        if id(layer) not in roles:
            return clone(*args, **kwargs)
        tail, part = roles[id(layer)]
        tensors = [
            t for t in keras.tree.flatten((args, kwargs)) if isinstance(t, keras.KerasTensor)
        ]
        found = seen.setdefault(id(tail), {})
        if part == "conv":
            found["h"] = tensors[0]
        elif part == "add":
            found["shortcut"] = tensors[tail.shortcut_index]
        elif part == "relu":
            fused = tail.layer(implementation)
            output = fused([found["h"], found["shortcut"]])
            fused.set_weights(tail.weights())
            return output
        return tensors[0]

    return rewrite(model, call, name=f"{model.name}_fused")


class _Tail:
    """A matched chain: conv(h) -> BN -> [SE] -> Add(shortcut) -> ReLU."""

    def __init__(self, conv, bn, se, add, relu, h, shortcut):
        self.conv, self.bn, self.se, self.add, self.relu = conv, bn, se, add, relu
        self.h, self.shortcut = h, shortcut
        # Which argument of the Add is the shortcut (identity: KerasTensor's == is symbolic).
        self.shortcut_index = next(
            i for i, tensor in enumerate(add.input_tensors) if tensor is shortcut
        )

    @property
    def all_nodes(self):
        """conv, BN, SE (None without SE), Add and ReLU nodes."""
        return [self.conv, self.bn, self.se, self.add, self.relu]

    def squeezes_input(self) -> bool:
        """Whether the squeeze can come from ``h``: a 1x1 stride-1 conv and an average."""
        conv, se = self.conv.operation, self.se and self.se.operation
        return (
            tuple(conv.kernel_size) == (1, 1)
            and tuple(conv.strides) == (1, 1)
            and (se is None or se.squeeze == "avg")
        )

    def layer(self, implementation: str) -> FusedSEResidual:
        conv, se = self.conv.operation, self.se and self.se.operation
        squeeze_from = "input" if self.squeezes_input() else "output"
        options = {}
        if se is not None:
            options = dict(
                units=se.reduce.units,
                squeeze=se.squeeze,
                gate=se.gate,
                activation=se.activation,
            )
        layer = FusedSEResidual(
            kernel_size=tuple(conv.kernel_size),
            strides=tuple(conv.strides),
            padding=conv.padding,
            squeeze_from=squeeze_from,
            excite=se is not None,
            implementation=implementation,
            name=self.relu.operation.name,
            **options,
        )
        return layer

    def weights(self) -> list[np.ndarray]:
        """The fused layer's weights, computed in float64 from the original layers'."""
        conv, bn = self.conv.operation, self.bn.operation

        def numpy(variable):
            return ops.convert_to_numpy(variable).astype("float64")

        kernel = numpy(conv.kernel)
        conv_bias = numpy(conv.bias) if conv.use_bias else 0.0
        variance = numpy(bn.moving_variance)
        scale = 1.0 / np.sqrt(variance + bn.epsilon)
        if bn.scale:
            scale = scale * numpy(bn.gamma)
        shift = numpy(bn.beta) if bn.center else 0.0
        bias = (conv_bias - numpy(bn.moving_mean)) * scale + shift
        kernel = kernel * scale
        weights = [kernel, bias]
        if self.se is not None:
            se = self.se.operation
            w1 = numpy(se.reduce.kernel)
            b1 = numpy(se.reduce.bias) if se.use_bias else np.zeros(w1.shape[1])
            w2 = numpy(se.expand.kernel)
            b2 = numpy(se.expand.bias) if se.use_bias else np.zeros(w2.shape[1])
            if self.squeezes_input():
                # mean(u) = mean(h) @ K' + b', so the first Dense takes mean(h) directly.
                b1 = bias @ w1 + b1
                w1 = kernel.reshape(kernel.shape[-2], kernel.shape[-1]) @ w1
            weights += [w1, b1, w2, b2]
        return [w.astype("float32") for w in weights]


def _is_relu(layer) -> bool:
    if isinstance(layer, keras.layers.ReLU):
        return layer.max_value is None and not layer.negative_slope and not layer.threshold
    if isinstance(layer, keras.layers.Activation):
        return (
            layer.activation in (keras.activations.relu,)
            or getattr(layer.activation, "__name__", "") == "relu"
        )
    return False


def _conv_reason(conv) -> str | None:
    if type(conv) is not keras.layers.Conv2D:
        return f"the layer before its BN is {type(conv).__name__}, not Conv2D"
    if conv.data_format != "channels_last":
        return "the model is channels_first"
    if tuple(conv.dilation_rate) != (1, 1) or conv.groups != 1:
        return f"{conv.name} is dilated or grouped"
    if conv.activation not in (None, keras.activations.linear):
        return f"{conv.name} has an activation"
    if keras.backend.standardize_dtype(conv.compute_dtype) != "float32":
        return f"{conv.name} computes in {conv.compute_dtype}, not float32"
    return None


def _bn_reason(bn) -> str | None:
    if not isinstance(bn, keras.layers.BatchNormalization):
        return f"its input comes from {type(bn).__name__} {bn.name!r}, not BatchNormalization"
    if bn.axis not in (-1, 3):
        return f"{bn.name} normalises axis {bn.axis}, not the channels_last axis"
    return None


def _match_se_tail(graph: Graph, se_node) -> _Tail | str:
    """The tail around an SE node, or why there is none."""
    se = se_node.operation
    if se.data_format != "channels_last":
        return "it is channels_first"
    bn_node = graph.producer(se_node.input_tensors[0])
    if bn_node is None:
        return "its input is a model input"
    reason = _bn_reason(bn_node.operation)
    if reason:
        return reason
    conv_node = graph.producer(bn_node.input_tensors[0])
    if conv_node is None:
        return "its BN reads a model input"
    reason = _conv_reason(conv_node.operation)
    if reason:
        return reason
    for node in (conv_node, bn_node):
        if not graph.single_use(node):
            return f"the output of {node.operation.name!r} is used elsewhere too"
    return _match_add_relu(graph, conv_node, bn_node, se_node)


def _match_add_relu(graph, conv_node, bn_node, se_node):
    branch_end = se_node if se_node is not None else bn_node
    if not graph.single_use(branch_end):
        return f"the output of {branch_end.operation.name!r} is used elsewhere too"
    add_node = graph.consumers(branch_end.outputs[0])[0]
    if not isinstance(add_node.operation, keras.layers.Add) or len(add_node.input_tensors) != 2:
        return f"it is followed by {add_node.operation.name!r}, not a two-input Add"
    if not graph.single_use(add_node):
        return f"the output of {add_node.operation.name!r} is used elsewhere too"
    relu_node = graph.consumers(add_node.outputs[0])[0]
    if not _is_relu(relu_node.operation):
        return f"its Add is followed by {relu_node.operation.name!r}, not a ReLU"
    branch = branch_end.outputs[0]
    shortcuts = [t for t in add_node.input_tensors if t is not branch]
    if len(shortcuts) != 1:
        return "its Add adds the branch to itself"
    for node in (conv_node, bn_node, se_node, add_node, relu_node):
        if node is not None and len(graph.nodes_of(node.operation)) > 1:
            return f"layer {node.operation.name!r} is called at several points (a shared layer)"
    return _Tail(
        conv_node, bn_node, se_node, add_node, relu_node, conv_node.input_tensors[0], shortcuts[0]
    )


def _match_plain_tail(graph: Graph, relu_node) -> _Tail | None:
    """conv -> BN -> Add -> ReLU without SE; the Add's last fitting input is the branch."""
    add_node = graph.producer(relu_node.input_tensors[0])
    if add_node is None or not isinstance(add_node.operation, keras.layers.Add):
        return None
    if len(add_node.input_tensors) != 2 or not graph.single_use(add_node):
        return None
    for tensor in reversed(add_node.input_tensors):
        bn_node = graph.producer(tensor)
        if bn_node is None or _bn_reason(bn_node.operation):
            continue
        conv_node = graph.producer(bn_node.input_tensors[0])
        if conv_node is None or _conv_reason(conv_node.operation):
            continue
        if not (graph.single_use(conv_node) and graph.single_use(bn_node)):
            continue
        tail = _match_add_relu(graph, conv_node, bn_node, None)
        if isinstance(tail, _Tail):
            return tail
    return None
