"""Where a segmentation network looks: the gates of its attention layers, level by level.

In an scSE U-Net (Roy et al. 2018) every decoder block ends with an attention layer whose
gates are the picture of its attention: sSE's spatial gate (one number per pixel: which
places the block passes on) and cSE's channel gate (one number per channel: which
features). :func:`attention_gates` reads both for every attention layer of a model;
:func:`plot_gates` draws them next to the image, the true and the predicted mask, the
segmentation analogue of the emotion example's heatmaps.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from senet.explain import _graph

__all__ = ["attention_gates", "plot_gates"]


def _spatial_layer(layer):
    """The layer that computes a spatial gate in ``layer`` (itself, or scSE's sSE)."""
    if hasattr(layer, "spatial_excitation"):
        return layer
    inner = getattr(layer, "spatial", None)
    return inner if hasattr(inner, "spatial_excitation") else None


def attention_gates(model: keras.Model, x) -> dict[str, dict[str, np.ndarray | None]]:
    """The channel and spatial gates of every attention layer of ``model`` for ``x``.

    Args:
        model: A functional Keras model (a U-Net from :func:`senet.models.unet`, or any
            model with senet attention layers).
        x: A batch of inputs, channels last.

    Returns:
        ``{layer path: {"channel": (B, C) or None, "spatial": (B, *spatial) or None}}`` in
        the model's order (for a U-Net: the coarsest decoder level first); ``channel`` is
        the gate of a layer with ``excitation`` (SE, cSE, scSE's cSE), ``spatial`` the
        gate of a layer with ``spatial_excitation`` (sSE, scSE's sSE), at that layer's
        resolution.

    Example:
        >>> from senet.models import unet
        >>> model = unet((32, 32, 1), num_classes=3, depth=2, base_filters=4)
        >>> gates = attention_gates(model, np.zeros((1, 32, 32, 1), "float32"))
        >>> [(name, g["spatial"].shape) for name, g in gates.items()]
        [('decoder2_scse', (1, 16, 16)), ('decoder1_scse', (1, 32, 32))]
    """
    paths = _attention_layer_paths(model)
    captured: dict[str, object] = {}

    def capture(path):
        def run(layer, inputs, *args, **kwargs):
            captured[path] = inputs
            return layer(inputs, *args, **kwargs)

        return run

    _graph.forward(model, x, {path: capture(path) for path in paths})
    gates = {}
    for path in paths:
        layer = _graph.get_layer(model, path)
        inputs = captured[path]
        channel = spatial = None
        if hasattr(layer, "excitation"):
            channel = ops.convert_to_numpy(ops.cast(layer.excitation(inputs), "float32"))
        spatial_layer = _spatial_layer(layer)
        if spatial_layer is not None:
            gate = ops.cast(spatial_layer.spatial_excitation(inputs), "float32")
            spatial = ops.convert_to_numpy(gate)[..., 0]
        gates[path] = {"channel": channel, "spatial": spatial}
    return gates


def _attention_layer_paths(model: keras.Model) -> list[str]:
    """The top-level layers with a channel or a spatial gate, in the model's order."""
    return [
        layer.name
        for layer in model.layers
        if _graph.is_attention(layer) or _spatial_layer(layer) is not None
    ]


def _upsample(gate: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    return cv2.resize(gate.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def plot_gates(
    images: np.ndarray,
    truth: np.ndarray | None,
    predicted: np.ndarray,
    gates: dict[str, dict[str, np.ndarray | None]],
    path: str | os.PathLike,
    *,
    class_names: Sequence[str] = (),
    title: str = "",
) -> None:
    """One row per image: the image, the true mask (when given), the predicted mask, then
    every layer's spatial gate (upsampled to the image); below, every layer's channel
    gates as a strip per image (channels along x). 2-D images only; for volumes pass the
    middle slice of each.

    Args:
        images: ``(B, H, W, C)`` in ``[0, 1]``.
        truth: True label maps ``(B, H, W)`` or None.
        predicted: Predicted label maps ``(B, H, W)``.
        gates: :func:`attention_gates`' output for ``images``.
        path: The PNG to write.
        class_names: Names for the mask colour legend.
        title: The figure's title.
    """
    from matplotlib.figure import Figure

    from senet._files import save_figure
    from senet.segmentation.colours import colour_labels

    spatial = [(name, g["spatial"]) for name, g in gates.items() if g["spatial"] is not None]
    channel = [(name, g["channel"]) for name, g in gates.items() if g["channel"] is not None]
    count = len(images)
    masks = [("true mask", truth)] if truth is not None else []
    masks.append(("predicted", predicted))
    columns = 1 + len(masks) + max(len(spatial), len(channel))
    rows = count + (1 if channel else 0)
    figure = Figure(figsize=(1.9 * columns, 1.9 * rows + 0.6), layout="constrained")
    axes = np.asarray(figure.subplots(rows, columns, squeeze=False))
    for axis in axes.ravel():
        axis.set_axis_off()
    size = images.shape[1:3]
    for row in range(count):
        image = images[row]
        axes[row, 0].imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray")
        if row == 0:
            axes[row, 0].set_title("image", fontsize=8)
        for column, (label, mask) in enumerate(masks, start=1):
            axes[row, column].imshow(colour_labels(mask[row]))
            if row == 0:
                axes[row, column].set_title(label, fontsize=8)
        for offset, (name, gate) in enumerate(spatial):
            axis = axes[row, 1 + len(masks) + offset]
            axis.imshow(_upsample(gate[row], size), cmap="magma", vmin=0, vmax=1)
            if row == 0:
                axis.set_title(f"sSE {name}\n{gate.shape[1]}x{gate.shape[2]}", fontsize=7)
    if channel:
        for offset, (name, gate) in enumerate(channel):
            axis = axes[count, 1 + len(masks) + offset] if spatial else axes[count, offset]
            axis.set_axis_on()
            axis.imshow(gate, cmap="viridis", vmin=0, vmax=1, aspect="auto")
            axis.set_title(f"cSE {name}: {gate.shape[1]} ch", fontsize=7)
            axis.set_xticks([])
            axis.set_yticks(range(count))
            axis.tick_params(labelsize=6)
        label_axis = axes[count, 0]
        label_axis.text(
            0.0,
            0.5,
            "channel gates\n(rows: images,\ncolumns: channels)",
            fontsize=7,
            va="center",
        )
    if class_names:
        from matplotlib.patches import Patch

        colours = colour_labels(np.arange(len(class_names))) / 255.0
        handles = [Patch(color=c, label=n) for c, n in zip(colours, class_names, strict=True)]
        figure.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=7)
    if title:
        figure.suptitle(title, fontsize=9)
    save_figure(figure, path, dpi=110)
