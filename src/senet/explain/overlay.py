"""Pictures of explanations: heatmap overlays, image x model grids, class x channel profiles.

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas, never pyplot,
so they work headless and leave no global state; matplotlib is imported on first use.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from senet.checks import fail
from senet.explain.excitation import class_specificity

DPI = 110
_CELL_INCHES = 1.9


def _rgb_float(image) -> np.ndarray:
    """Image ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)``, uint8 or float in [0, 1] -> float RGB."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(
            f"`image` must have shape (H, W), (H, W, 1) or (H, W, 3), "
            f"got image with shape {image.shape}"
        )
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    return np.clip(np.nan_to_num(image.astype(np.float32)), 0.0, 1.0)


def _colormap(name: str):
    import matplotlib

    if name not in matplotlib.colormaps:
        raise fail("cmap", "a matplotlib colormap name (e.g. 'jet', 'viridis', 'inferno')", name)
    return matplotlib.colormaps[name]


def overlay(image, heatmap, *, cmap: str = "jet", alpha: float = 0.45) -> np.ndarray:
    """Blend a coloured heatmap over an image.

    Args:
        image: Gray ``(H, W)``/``(H, W, 1)`` or RGB ``(H, W, 3)``, uint8 or float in [0, 1]
            (floats outside are clipped).
        heatmap: ``(h, w)`` in [0, 1]; resized bilinearly to ``(H, W)`` when it differs.
        cmap: A matplotlib colormap name.
        alpha: Weight of the heatmap colour, in [0, 1].

    Returns:
        uint8 RGB array ``(H, W, 3)``: ``(1 - alpha) * image + alpha * cmap(heatmap)``.

    Example:
        >>> overlay(np.zeros((48, 48)), np.ones((6, 6))).shape
        (48, 48, 3)
    """
    if not 0.0 <= alpha <= 1.0:
        raise fail("alpha", "in [0, 1]", alpha)
    rgb = _rgb_float(image)
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.ndim != 2:
        raise ValueError(
            f"`heatmap` must have shape (H, W), got heatmap with shape {heatmap.shape}"
        )
    height, width = rgb.shape[:2]
    if heatmap.shape != (height, width):
        heatmap = cv2.resize(heatmap, (width, height), interpolation=cv2.INTER_LINEAR)
    heatmap = np.clip(np.nan_to_num(heatmap), 0.0, 1.0)
    colored = _colormap(cmap)(heatmap)[..., :3].astype(np.float32)
    blended = (1.0 - alpha) * rgb + alpha * colored
    return np.clip(np.rint(blended * 255.0), 0, 255).astype(np.uint8)


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path) -> None:
    if path is not None:
        from senet._files import save_figure

        save_figure(figure, path, dpi=DPI, facecolor="white")


def _class_name(class_names: Sequence[str] | None, index) -> str:
    index = int(index)
    if class_names is not None and 0 <= index < len(class_names):
        return str(class_names[index])
    return str(index)


def heatmap_grid(
    images,
    heatmaps_by_model: dict[str, np.ndarray],
    labels=None,
    preds_by_model: dict[str, np.ndarray] | None = None,
    class_names: Sequence[str] | None = None,
    path=None,
    *,
    cmap: str = "jet",
    title: str | None = None,
):
    """A grid of images and, per model, the heatmap and its overlay.

    Rows are images; the columns are the image (titled with its true class), then
    for each model its heatmap (titled with the model's prediction, green when
    right, red when wrong) and the heatmap over the image. One colour bar.

    Args:
        images: ``(B, H, W)``, ``(B, H, W, 1)`` or ``(B, H, W, 3)``.
        heatmaps_by_model: ``{model name: heatmaps (B, H, W) in [0, 1]}``.
        labels: True classes ``(B,)`` or None.
        preds_by_model: ``{model name: predicted classes (B,)}`` or None.
        class_names: Names for the class indices, or None to show indices.
        path: Where to save a PNG, or None.
        cmap: Heatmap colormap.
        title: Figure title, or None.

    Returns:
        The matplotlib ``Figure``.
    """
    images = np.asarray(images)
    count = len(images)
    for name, heatmaps in heatmaps_by_model.items():
        if np.shape(heatmaps)[0] != count:
            raise ValueError(
                f"`heatmaps_by_model[{name!r}]` must hold {count} heatmaps, one per image, "
                f"got shape {np.shape(heatmaps)}"
            )
    preds_by_model = preds_by_model or {}
    columns = 1 + 2 * len(heatmaps_by_model)
    figure = _new_figure(
        _CELL_INCHES * columns + 1.0, _CELL_INCHES * count + 0.5 + 0.4 * bool(title)
    )
    axes = figure.subplots(count, columns, squeeze=False)
    color_source = None
    for row in range(count):
        rgb = _rgb_float(images[row])
        axes[row, 0].imshow(rgb)
        axes[row, 0].set_title(
            "image" if labels is None else f"true: {_class_name(class_names, labels[row])}",
            fontsize=9,
        )
        for m, (name, heatmaps) in enumerate(heatmaps_by_model.items()):
            heatmap = np.asarray(heatmaps[row], dtype=np.float32)
            heat_axis, over_axis = axes[row, 1 + 2 * m], axes[row, 2 + 2 * m]
            color_source = heat_axis.imshow(heatmap, cmap=cmap, vmin=0.0, vmax=1.0)
            caption, color = name, "black"
            if name in preds_by_model:
                predicted = preds_by_model[name][row]
                caption = f"{name}\npred: {_class_name(class_names, predicted)}"
                if labels is not None:
                    color = "green" if int(predicted) == int(labels[row]) else "red"
            heat_axis.set_title(caption, fontsize=9, color=color)
            over_axis.imshow(overlay(rgb, heatmap, cmap=cmap))
            over_axis.set_title(f"{name} overlay", fontsize=9)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    if color_source is not None:
        bar = figure.colorbar(color_source, ax=axes, shrink=min(1.0, 3.0 / count), pad=0.02)
        bar.set_label("heatmap (0 = none, 1 = most evidence)", fontsize=9)
    if title:
        figure.suptitle(title, fontsize=11)
    _save(figure, path)
    return figure


def profile_figure(
    profiles,
    class_names: Sequence[str] | None,
    layer_name: str | Sequence[str],
    path=None,
    *,
    cmap: str = "viridis",
):
    """Class x channel heatmap of the mean excitation of one or more attention layers.

    Args:
        profiles: ``{layer: (K, C)}`` from :func:`~senet.explain.class_profiles`, or one
            ``(K, C)`` array.
        class_names: K names for the rows, or None for indices.
        layer_name: The layer to draw, or several (one panel each, e.g. the
            ``pick_depths`` choices), on one colour scale.
        path: Where to save a PNG, or None.
        cmap: Colormap.

    Returns:
        The matplotlib ``Figure``; each panel's title gives the layer's class
        specificity (mean pairwise L2 / sqrt(C), see ``class_specificity``).
    """
    names = [layer_name] if isinstance(layer_name, str) else list(layer_name)
    if not isinstance(profiles, dict):
        profiles = {names[0]: np.asarray(profiles)}
    missing = [name for name in names if name not in profiles]
    if missing or not names:
        raise ValueError(
            f"`layer_name` must name profiles to draw, got {layer_name!r}; "
            f"available: {list(profiles)}"
        )
    arrays = {name: np.asarray(profiles[name], dtype=np.float32) for name in names}
    specificity = class_specificity(arrays)
    finite = np.concatenate([a[np.isfinite(a)] for a in arrays.values()])
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    classes = arrays[names[0]].shape[0]
    widest = max(a.shape[1] for a in arrays.values())
    width = min(14.0, max(6.0, 0.09 * widest + 3.0))
    figure = _new_figure(width, (0.3 * classes + 1.3) * len(names) + 0.3)
    axes = figure.subplots(len(names), 1, squeeze=False)[:, 0]
    image = None
    for axis, name in zip(axes, names, strict=True):
        profile = arrays[name]
        image = axis.imshow(
            profile, aspect="auto", cmap=cmap, vmin=low, vmax=high, interpolation="nearest"
        )
        axis.set_yticks(range(profile.shape[0]))
        axis.set_yticklabels([_class_name(class_names, k) for k in range(profile.shape[0])])
        axis.set_ylabel("class")
        axis.set_xlabel(f"channel (C = {profile.shape[1]})")
        axis.set_title(
            f"{name}: mean excitation per class (specificity {specificity[name]:.3f})",
            fontsize=10,
        )
    bar = figure.colorbar(image, ax=list(axes), pad=0.02)
    bar.set_label("mean excitation (gate)")
    _save(figure, path)
    return figure
