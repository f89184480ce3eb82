"""Class activation maps: where in the image a model's evidence for a class lies.

Grad-CAM (Selvaraju et al., ICCV 2017) weights a layer's channels by the spatial
mean of the class score's gradient and keeps the positive part of the weighted sum;
gradient x activation (``"gradxact"``) keeps the gradient per position, a finer
map; Grad-CAM++ (Chattopadhay et al., WACV 2018) weights positive gradients by
second-order terms; ``"intgrad"`` is integrated gradients (Sundararajan et al., ICML
2017) taken at the layer: gradient x activation with the gradient averaged along the
path from an all-zero activation, so the map's sum is the score's change from "no
features" (completeness) rather than a local slope. :func:`attention_map` needs no gradient: an attention layer's
output channels weighted by its own gate.

The gradient is taken in one helper, :func:`_value_and_grad`, with one branch per
Keras backend (TensorFlow, JAX, PyTorch); everything after it is NumPy.
"""

from __future__ import annotations

import cv2
import keras
import numpy as np
from keras import ops

from senet.checks import fail
from senet.explain import _graph

METHODS = ("gradcam", "gradxact", "gradcam++", "intgrad")
_CONV_LAYERS = (
    keras.layers.Conv2D,
    keras.layers.SeparableConv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.Conv2DTranspose,
)
# Output activations that saturate: the class score is taken before them.
_SQUASHING = ("softmax", "sigmoid")


def _value_and_grad(fn, wrt):
    """``fn(wrt)`` (a scalar) and its gradient with respect to the tensor ``wrt``.

    The package's only gradient code: one branch per Keras backend.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        wrt = tf.convert_to_tensor(wrt)
        with tf.GradientTape() as tape:
            tape.watch(wrt)
            value = fn(wrt)
        gradient = tape.gradient(value, wrt)
        return value, tf.zeros_like(wrt) if gradient is None else gradient
    if backend == "jax":
        import jax

        return jax.value_and_grad(fn)(jax.numpy.asarray(wrt))
    if backend == "torch":
        import torch

        wrt = ops.convert_to_tensor(wrt).detach().requires_grad_(True)
        value = fn(wrt)
        (gradient,) = torch.autograd.grad(value, wrt, allow_unused=True)
        return value.detach(), torch.zeros_like(wrt) if gradient is None else gradient
    raise ValueError(
        f"Expected the Keras backend to be one of ('tensorflow', 'jax', 'torch') to take "
        f"gradients, got {backend!r}"
    )


def default_layer(model: keras.Model) -> str:
    """The layer :func:`grad_cam` explains by default.

    The last convolution, attention layer or nested model with a 4-D output, or the
    last layer after it with the same output shape (its BatchNorm, ReLU, dropout,
    residual add), so that the map comes from the final feature map before pooling.
    """
    layers = model.layers
    shapes = [_graph.output_shape(model, layer) for layer in layers]
    anchor = None
    for index in reversed(range(len(layers))):
        layer = layers[index]
        spatial = shapes[index] is not None and len(shapes[index]) == 4
        kind = (
            isinstance(layer, (*_CONV_LAYERS, keras.Model))
            or _graph.is_attention(layer)
            or hasattr(layer, "spatial_excitation")
        )
        if spatial and kind:
            anchor = index
            break
    if anchor is None:
        raise ValueError(
            f"`model` must have a convolution or attention layer with a 4-D output "
            f"(batch, height, width, channels) to explain, got model={model.name!r}"
        )
    chosen = anchor
    for index in range(anchor + 1, len(layers)):
        if shapes[index] == shapes[anchor]:
            chosen = index
    return layers[chosen].name


def _logit_replacement(model: keras.Model) -> dict[str, _graph.Replacement]:
    """Read the class score before a final softmax/sigmoid (Grad-CAM's ``y^c``).

    A saturated softmax has a vanishing gradient for the winning class, so the
    score is the pre-activation logit when the model ends in
    ``Dense(..., activation="softmax")``, ``Activation("softmax")`` or ``Softmax()``.
    """
    layer = _graph.output_layer(model)
    name = getattr(getattr(layer, "activation", None), "__name__", None)
    if isinstance(layer, keras.layers.Softmax) or (
        isinstance(layer, keras.layers.Activation) and name in _SQUASHING
    ):
        return {layer.name: lambda layer, inputs, *args, **kwargs: inputs}
    if (
        isinstance(layer, keras.layers.Dense)
        and name in _SQUASHING
        and getattr(layer, "quantization_mode", None) is None
    ):

        def linear(layer, inputs, *args, **kwargs):
            logits = ops.matmul(inputs, ops.cast(layer.kernel, inputs.dtype))
            if layer.bias is not None:
                logits = logits + ops.cast(layer.bias, inputs.dtype)
            return logits

        return {layer.name: linear}
    return {}


def _first(outputs):
    return outputs[0] if isinstance(outputs, (list, tuple)) else outputs


def _class_indices(class_index, count: int) -> np.ndarray | None:
    if class_index is None:
        return None
    indices = np.asarray(class_index)
    if not np.issubdtype(indices.dtype, np.integer) or indices.ndim > 1:
        raise fail("class_index", "None, an int or an int array (B,)", class_index)
    indices = np.broadcast_to(indices.reshape(-1) if indices.ndim else indices, (count,))
    return indices.astype(np.int64)


def _activation_and_gradient(model, x, path, classes, replace_logits, steps=None):
    """The layer's activation and d(class score)/d(activation) for one batch (NumPy).

    With ``steps``, the gradient is the mean over ``alpha = (i + 0.5) / steps`` of the
    gradient at ``alpha * activation`` (integrated gradients' midpoint rule); the class
    stays the one chosen at the full activation.
    """
    captured = {}

    def capture(layer, *args, **kwargs):
        captured["activation"] = layer(*args, **kwargs)
        return captured["activation"]

    logits = _first(_graph.forward(model, x, {path: capture, **replace_logits}))
    if len(logits.shape) != 2:
        raise ValueError(
            f"Expected the model output to be class scores (batch, classes), "
            f"got output shape {tuple(logits.shape)}"
        )
    num_classes = int(logits.shape[1])
    if classes is None:
        classes = np.argmax(ops.convert_to_numpy(logits), axis=1)
    elif classes.size and (classes.min() < 0 or classes.max() >= num_classes):
        raise ValueError(
            f"`class_index` must be in [0, {num_classes}), got values in "
            f"[{classes.min()}, {classes.max()}]"
        )
    picks = ops.convert_to_tensor(classes.reshape(-1, 1).astype("int32"))

    def score(activation):
        # Feed the given activation onward from the layer, so the score is a function of it.
        feed = {path: lambda layer, *args, **kwargs: activation, **replace_logits}
        outputs = _first(_graph.forward(model, x, feed))
        return ops.sum(ops.take_along_axis(outputs, picks, axis=1))

    activation = captured["activation"]
    if steps is None:
        _, gradient = _value_and_grad(score, activation)
    else:
        gradient = None
        for step in range(steps):
            alpha = (step + 0.5) / steps
            _, slope = _value_and_grad(score, activation * ops.cast(alpha, activation.dtype))
            gradient = slope if gradient is None else gradient + slope
        gradient = gradient / steps
    return (
        ops.convert_to_numpy(ops.cast(captured["activation"], "float32")),
        ops.convert_to_numpy(ops.cast(gradient, "float32")),
    )


def _channels_last(array: np.ndarray, data_format: str) -> np.ndarray:
    return np.moveaxis(array, 1, -1) if data_format == "channels_first" else array


def _data_format(layer) -> str:
    return getattr(layer, "data_format", None) or keras.config.image_data_format()


def _check_feature_map(path: str, array: np.ndarray) -> None:
    if array.ndim != 4:
        raise ValueError(
            f"`layer` must output a 4-D feature map (batch, height, width, channels), "
            f"got layer={path!r} with output shape {array.shape}"
        )


def _combine(method: str, activation: np.ndarray, gradient: np.ndarray) -> np.ndarray:
    """Channels-last activation and gradient ``(B, h, w, C)`` -> map ``(B, h, w)``."""
    if method == "gradcam":
        weights = gradient.mean(axis=(1, 2))
    elif method in ("gradxact", "intgrad"):  # intgrad's gradient is the path average
        return np.maximum((gradient * activation).sum(axis=-1), 0.0)
    else:  # gradcam++, closed form with first-order gradients (exp of the score)
        squared = gradient**2
        denominator = 2.0 * squared + activation.sum(axis=(1, 2), keepdims=True) * gradient**3
        alpha = squared / np.where(denominator != 0.0, denominator, 1.0)
        weights = (alpha * np.maximum(gradient, 0.0)).sum(axis=(1, 2))
    return np.maximum(np.einsum("bhwc,bc->bhw", activation, weights), 0.0)


def _input_size(x, data_format: str) -> tuple[int, int]:
    shape = np.shape(keras.tree.flatten(x)[0])
    if len(shape) != 4:
        raise ValueError(
            f"`x` must be a batch of images (batch, height, width, channels), "
            f"got x with shape {shape}"
        )
    return tuple(shape[2:4]) if data_format == "channels_first" else tuple(shape[1:3])


def _upsample_and_normalize(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of ``(B, h, w)`` to ``size``, then each map to [0, 1] (min 0, max 1)."""
    height, width = size
    out = np.empty((len(maps), height, width), dtype=np.float32)
    for i, heatmap in enumerate(maps.astype(np.float32)):
        if heatmap.shape != (height, width):
            heatmap = cv2.resize(heatmap, (width, height), interpolation=cv2.INTER_LINEAR)
        low, high = float(heatmap.min()), float(heatmap.max())
        # A flat map (all zero: no positive evidence) carries no location: it stays 0.
        if high - low > 1e-6 * abs(high):
            out[i] = (heatmap - low) / (high - low)
        else:
            out[i] = 0.0
    return out


def grad_cam(
    model: keras.Model,
    x,
    layer: str | None = None,
    class_index=None,
    *,
    method: str = "gradcam",
    batch_size: int | None = None,
    steps: int = 8,
) -> np.ndarray:
    """Heatmaps of where the evidence for a class lies, at the input's resolution.

    The class score is the logit (taken before a final softmax or sigmoid); its
    gradient with respect to the layer's output ``A`` gives, per image,

    - ``"gradcam"``: ``ReLU(sum_k mean_ij(dy/dA_k) A_k)`` (Grad-CAM);
    - ``"gradxact"``: ``ReLU(sum_k dy/dA_k * A_k)`` per position (finer);
    - ``"gradcam++"``: Grad-CAM++'s weights ``sum_ij alpha_ij ReLU(dy/dA_k)``;
    - ``"intgrad"``: ``ReLU(sum_k A_k * mean_a dy/dA_k(a A))`` over ``steps`` points
      ``a`` in (0, 1): integrated gradients from an all-zero activation, whose unrectified
      sum is ``y(A) - y(0)``; less of the local noise of ``"gradxact"``.

    Each map is upsampled bilinearly to the input's height and width and scaled to
    [0, 1] (min 0, max 1); a map without positive evidence is all 0.

    Args:
        model: A functional or Sequential Keras classifier on images (4-D input).
        x: Images ``(B, H, W, C)`` (channels_first models: ``(B, C, H, W)``).
        layer: Name of the layer to explain (``"outer/inner"`` inside a nested
            model); default :func:`default_layer`, the final feature map.
        class_index: Class to explain: ``None`` for each image's predicted class,
            an int, or one int per image.
        method: ``"gradcam"``, ``"gradxact"``, ``"gradcam++"`` or ``"intgrad"``.
        batch_size: Images per pass (``None``: all at once).
        steps: Points on the integration path of ``"intgrad"`` (ignored otherwise).

    Returns:
        float32 array ``(B, H, W)`` in [0, 1].

    Example:
        >>> heatmaps = grad_cam(model, images)  # doctest: +SKIP
        >>> heatmaps.shape, float(heatmaps.max())  # doctest: +SKIP
        ((8, 48, 48), 1.0)
    """
    if method not in METHODS:
        raise fail("method", f"one of {METHODS}", method)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise fail("steps", "a positive integer", steps)
    path = default_layer(model) if layer is None else layer
    data_format = _data_format(_graph.get_layer(model, path))
    size = _input_size(x, data_format)
    classes = _class_indices(class_index, _graph.num_samples(x))
    replace_logits = _logit_replacement(model)
    maps, start = [], 0
    for chunk in _graph.batches(x, batch_size):
        count = _graph.num_samples(chunk)
        chunk_classes = None if classes is None else classes[start : start + count]
        activation, gradient = _activation_and_gradient(
            model,
            chunk,
            path,
            chunk_classes,
            replace_logits,
            steps=int(steps) if method == "intgrad" else None,
        )
        _check_feature_map(path, activation)
        activation = _channels_last(activation, data_format)
        gradient = _channels_last(gradient, data_format)
        maps.append(_combine(method, activation, gradient))
        start += count
    return _upsample_and_normalize(np.concatenate(maps), size)


def _attention_io(model, x, path):
    """The input and output of the attention layer at ``path`` for one batch."""
    captured = {}

    def capture(attention, inputs, *args, **kwargs):
        captured["inputs"] = inputs
        captured["outputs"] = attention(inputs, *args, **kwargs)
        return captured["outputs"]

    _graph.forward(model, x, {path: capture})
    return captured["inputs"], captured["outputs"]


def default_attention_layer(model: keras.Model) -> str:
    """The layer :func:`attention_map` explains by default: the model's last attention
    layer with an ``excitation`` method (its ``"outer/inner"`` path in a nested model).

    Raises:
        ValueError: The model has none.
    """
    paths = _graph.attention_paths(model)
    if not paths:
        raise ValueError(
            f"`model` must contain an attention layer with an `excitation` method, "
            f"got model={model.name!r} without one"
        )
    return paths[-1]


def attention_map(
    model: keras.Model, x, layer: str | None = None, *, batch_size: int | None = None
) -> np.ndarray:
    """Gradient-free heatmaps: an attention layer's output channels weighted by its gate.

    ``ReLU(sum_c s_c Y_c)`` with ``Y`` the layer's output and ``s`` its excitation
    ``(B, C)``, upsampled to the input's size and scaled to [0, 1] like
    :func:`grad_cam`. It shows what the layer passes on most strongly, for any class.

    Args:
        model: A functional or Sequential Keras model on images.
        x: Images ``(B, H, W, C)`` (channels_first models: ``(B, C, H, W)``).
        layer: Name (or ``"outer/inner"`` path) of an attention layer with an
            ``excitation`` method; default the last one in the model.
        batch_size: Images per pass (``None``: all at once).

    Returns:
        float32 array ``(B, H, W)`` in [0, 1].
    """
    if layer is None:
        layer = default_attention_layer(model)
    target = _graph.get_layer(model, layer)
    if not _graph.is_attention(target):
        raise ValueError(
            f"`layer` must name an attention layer with an `excitation` method, "
            f"got {layer!r} of type {type(target).__name__}"
        )
    data_format = _data_format(target)
    size = _input_size(x, data_format)
    maps = []
    for chunk in _graph.batches(x, batch_size):
        inputs, outputs = _attention_io(model, chunk, layer)
        gate = ops.convert_to_numpy(ops.cast(target.excitation(inputs), "float32"))
        outputs = ops.convert_to_numpy(ops.cast(outputs, "float32"))
        _check_feature_map(layer, outputs)
        outputs = _channels_last(outputs, data_format)
        maps.append(np.maximum(np.einsum("bhwc,bc->bhw", outputs, gate), 0.0))
    return _upsample_and_normalize(np.concatenate(maps), size)
