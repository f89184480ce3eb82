"""FLOPs and parameters, counted analytically from layer configurations and shapes, so the
count is the same on every backend and needs no profiler.

Convention: a multiply-add is 2 FLOPs (a convolution or Dense layer costs ``2 * MACs``, plus
one FLOP per output for a bias); every other elementwise operation (batch-norm affine,
activation, merge, SE scale) costs 1 FLOP per element it computes, and pooling one FLOP per
element it reads. The paper's "GFLOPs" (3.86 for ResNet-50) are multiply-adds of the
convolutions and Dense layers; ``count_flops(model, macs_only=True)`` gives that number. An
attention layer counts itself (its ``flops`` method).
"""

from __future__ import annotations

import math
import warnings

import keras

from senet import graph
from senet.checks import fail
from senet.layers._common import elements


def count_params(model: keras.Model) -> int:
    """Total number of weights (trainable and not, e.g. BN moving statistics)."""
    return int(sum(math.prod(v.shape) for v in model.weights))


def _conv_flops(layer, in_shape, out_shape, macs_only):
    kernel = elements(layer.kernel_size)
    channel_axis = -1 if layer.data_format == "channels_last" else 1
    in_channels = int(in_shape[channel_axis])
    groups = getattr(layer, "groups", 1)
    out_elems = elements(out_shape)
    if isinstance(layer, keras.layers.SeparableConv2D | keras.layers.SeparableConv1D):
        depth = in_channels * layer.depth_multiplier
        spatial = out_elems // int(out_shape[channel_axis])
        macs = spatial * kernel * depth + spatial * depth * layer.filters
    elif isinstance(layer, keras.layers.DepthwiseConv2D | keras.layers.DepthwiseConv1D):
        macs = out_elems * kernel
    elif isinstance(
        layer,
        keras.layers.Conv1DTranspose | keras.layers.Conv2DTranspose | keras.layers.Conv3DTranspose,
    ):
        macs = elements(in_shape) * kernel * layer.filters
    else:
        macs = out_elems * kernel * in_channels // groups
    bias = out_elems if layer.use_bias else 0
    return macs if macs_only else 2 * macs + bias


def _dense_flops(layer, in_shape, out_shape, macs_only):
    rows = elements(in_shape[:-1])
    macs = rows * int(in_shape[-1]) * layer.units
    if macs_only:
        return macs
    bias = rows * layer.units if layer.use_bias else 0
    activation = elements(out_shape) if _has_activation(layer) else 0
    return 2 * macs + bias + activation


def _has_activation(layer) -> bool:
    activation = getattr(layer, "activation", None)
    return activation is not None and activation is not keras.activations.linear


_ZERO_COST = (
    keras.layers.InputLayer,
    keras.layers.Flatten,
    keras.layers.Reshape,
    keras.layers.Permute,
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.SpatialDropout3D,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.ActivityRegularization,
    keras.layers.Concatenate,
    keras.layers.ZeroPadding1D,
    keras.layers.ZeroPadding2D,
    keras.layers.ZeroPadding3D,
    keras.layers.Cropping1D,
    keras.layers.Cropping2D,
    keras.layers.Cropping3D,
    keras.layers.Identity,
)


_ELEMENTWISE = (
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.PReLU,
    keras.layers.ELU,
    keras.layers.Softmax,
)


_MERGE = (
    keras.layers.Add,
    keras.layers.Subtract,
    keras.layers.Multiply,
    keras.layers.Maximum,
    keras.layers.Minimum,
    keras.layers.Average,
)


_POOL = (
    keras.layers.MaxPooling1D,
    keras.layers.MaxPooling2D,
    keras.layers.MaxPooling3D,
    keras.layers.AveragePooling1D,
    keras.layers.AveragePooling2D,
    keras.layers.AveragePooling3D,
)


_GLOBAL_POOL = (
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalAveragePooling3D,
    keras.layers.GlobalMaxPooling1D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.GlobalMaxPooling3D,
)


_CONV = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
)


def _layer_flops(layer, in_shapes, out_shape, macs_only, unknown):
    """FLOPs of one call of ``layer`` with concrete (batched) input and output shapes.

    A layer that counts itself (every senet layer: ``layer.flops(input_shape, output_shape,
    macs_only=...)``, the input shapes as a list for a layer of several inputs) is asked;
    Keras' own layers are counted here."""
    first = in_shapes[0]
    counts_itself = getattr(layer, "flops", None)
    if callable(counts_itself):
        shapes = first if len(in_shapes) == 1 else list(in_shapes)
        return int(counts_itself(shapes, out_shape, macs_only=macs_only))
    if isinstance(layer, _CONV):
        return _conv_flops(layer, first, out_shape, macs_only)
    if isinstance(layer, keras.layers.Dense):
        return _dense_flops(layer, first, out_shape, macs_only)
    if macs_only or isinstance(layer, _ZERO_COST):
        return 0
    if isinstance(layer, keras.layers.BatchNormalization):
        # Inference: one multiply and one add per element (scale and shift folded).
        return 2 * elements(out_shape)
    if isinstance(layer, _ELEMENTWISE):
        return elements(out_shape)
    if isinstance(layer, _MERGE):
        extra = 1 if isinstance(layer, keras.layers.Average) else 0
        return (len(in_shapes) - 1 + extra) * elements(out_shape)
    if isinstance(layer, _POOL):
        return elements(out_shape) * elements(layer.pool_size)
    if isinstance(layer, _GLOBAL_POOL):
        return elements(first)
    unknown.add(f"{layer.name} ({type(layer).__name__})")
    return 0


def _concrete(shape, batch: int, where: str) -> tuple[int, ...]:
    shape = (batch, *tuple(shape)[1:])
    if any(d is None for d in shape):
        raise ValueError(
            f"count_flops needs fully defined input shapes; {where} has shape {shape}. "
            "Build the model with a fixed `input_shape`."
        )
    return tuple(int(d) for d in shape)


def _nodes(model):
    """The call nodes of a functional (or built Sequential) model, inputs first."""
    try:
        return graph.nodes(model)
    except ValueError as error:
        raise ValueError(f"count_flops cannot walk this model: {error}") from error


def _model_flops(model, batch, macs_only, unknown, per_layer, prefix=""):
    total = 0
    for node in _nodes(model):
        layer = node.operation
        if node.is_input or layer is None:
            continue
        in_shapes = [_concrete(t.shape, batch, layer.name) for t in node.input_tensors]
        out_shape = _concrete(node.outputs[0].shape, batch, layer.name)
        if isinstance(layer, keras.Model):
            flops = _model_flops(layer, batch, macs_only, unknown, per_layer, prefix + layer.name)
        else:
            flops = _layer_flops(layer, in_shapes, out_shape, macs_only, unknown)
            key = prefix + "/" + layer.name if prefix else layer.name
            per_layer[key] = per_layer.get(key, 0) + flops
        total += flops
    return total


def count_flops(
    model: keras.Model, batch: int = 1, *, macs_only: bool = False, by_layer: bool = False
) -> int | dict[str, int]:
    """Analytic FLOPs of one inference forward pass (backend-independent).

    A multiply-add counts 2 FLOPs; biases, batch-norm (inference affine: 2 per
    element), activations, merges and SE's scale count 1 per element; pooling counts
    1 per element read (per window element for windowed pooling). SE layers count their
    squeeze (global pool), the excitation MLP and the scale. Layers of unknown types
    count 0 and raise a warning that names them.

    Args:
        model: A functional or built Sequential Keras model with fixed input shapes.
            Nested models are counted layer by layer.
        batch: Batch size of the pass.
        macs_only: Count multiply-accumulates of convolutions, Dense and SE's MLP only
            (the convention of the paper's "GFLOPs"), nothing else.
        by_layer: Return ``{layer name: FLOPs}`` instead of the total.

    Returns:
        The total as an int, or a dict by layer name.

    Example:
        >>> import keras
        >>> inputs = keras.Input((8, 8, 3))
        >>> outputs = keras.layers.Conv2D(4, 1, use_bias=False)(inputs)
        >>> count_flops(keras.Model(inputs, outputs))  # 2 * 64 positions * 3 * 4
        1536
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise fail("batch", "a positive integer", batch)
    unknown: set[str] = set()
    per_layer: dict[str, int] = {}
    total = _model_flops(model, batch, macs_only, unknown, per_layer)
    if unknown:
        warnings.warn(
            f"count_flops does not know these layer types and counted them as 0: "
            f"{', '.join(sorted(unknown))}",
            stacklevel=2,
        )
    return per_layer if by_layer else total
