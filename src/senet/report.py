"""Figures and reports: training curves, confusion matrices (and, later, the report writer).

Figures are drawn on a bare :class:`matplotlib.figure.Figure` (no pyplot), so they work
in any thread and with any (or no) display, and never leak global figure state.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

# history keys drawn as curves, in panel order: (title, y label, train key, validation key)
_CURVE_PANELS = (
    ("Loss", "cross-entropy loss", "loss", "val_loss"),
    ("Accuracy", "accuracy", "accuracy", "val_accuracy"),
)


def _history_columns(history) -> dict[str, np.ndarray]:
    """Accept ``{"loss": [...], ...}`` (Keras History.history) or a list of per-epoch rows."""
    if isinstance(history, Mapping):
        return {key: np.asarray(values, dtype=float) for key, values in history.items()}
    rows = list(history)
    keys = sorted({key for row in rows for key in row})
    return {key: np.asarray([row.get(key, np.nan) for row in rows], dtype=float) for key in keys}


def _save(figure: Figure, path: str | os.PathLike | None) -> None:
    if path is not None:
        figure.savefig(os.fspath(path), dpi=120, bbox_inches="tight")


def plot_curves(
    history, path: str | os.PathLike | None = None, *, title: str = "Training curves"
) -> Figure:
    """Loss and accuracy per epoch, training and validation, side by side.

    Args:
        history: ``History.history``-like dict of per-epoch lists, or a list of per-epoch
            dicts (rows of ``history.csv``). Keys ``loss``, ``accuracy``, ``val_loss``,
            ``val_accuracy``; an ``epoch`` key (1-based) sets the x axis when present.
        path: Where to save a PNG, or None to only return the figure.
        title: Figure title.

    Returns:
        The figure (two axes: loss, accuracy).

    Example:
        >>> figure = plot_curves({"loss": [1.2, 0.9], "accuracy": [0.4, 0.6]})
        >>> [axes.get_title() for axes in figure.axes]
        ['Loss', 'Accuracy']
    """
    columns = _history_columns(history)
    lengths = {len(values) for values in columns.values()}
    epochs_run = max(lengths, default=0)
    epochs = columns.get("epoch", np.arange(1, epochs_run + 1, dtype=float))
    figure = Figure(figsize=(10, 4), layout="constrained")
    figure.suptitle(title)
    for axes, (panel, ylabel, train_key, val_key) in zip(
        figure.subplots(1, len(_CURVE_PANELS)), _CURVE_PANELS, strict=True
    ):
        for key, label, style in ((train_key, "train", "-o"), (val_key, "validation", "--s")):
            if key in columns and np.isfinite(columns[key]).any():
                axes.plot(epochs, columns[key], style, label=label, markersize=3)
        axes.set_title(panel)
        axes.set_xlabel("epoch")
        axes.set_ylabel(ylabel)
        axes.grid(alpha=0.3)
        if axes.lines:
            axes.legend()
        if panel == "Accuracy":
            axes.set_ylim(0.0, 1.0)
    _save(figure, path)
    return figure


def plot_confusion(
    matrix,
    class_names: Sequence[str],
    path: str | os.PathLike | None = None,
    *,
    normalize: bool = True,
    title: str = "Confusion matrix",
) -> Figure:
    """Confusion matrix heat map: rows are true classes, columns predicted classes.

    Args:
        matrix: ``(K, K)`` counts, ``matrix[true, predicted]``.
        class_names: ``K`` names for the axes.
        path: Where to save a PNG, or None to only return the figure.
        normalize: Colour by the fraction of each true class (row-normalised, so classes
            of different sizes compare); each cell is annotated with its count.
        title: Axes title.

    Returns:
        The figure (the matrix axes and its colour bar).

    Example:
        >>> figure = plot_confusion([[3, 1], [0, 4]], ["cat", "dog"])
        >>> figure.axes[0].get_xlabel()
        'predicted class'
    """
    counts = np.asarray(matrix, dtype=float)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"Expected `matrix` to be square (K, K). Received shape {counts.shape}")
    if len(class_names) != counts.shape[0]:
        raise ValueError(
            f"Expected {counts.shape[0]} `class_names` for a {counts.shape} matrix. "
            f"Received {len(class_names)}: {list(class_names)}"
        )
    if normalize:
        totals = counts.sum(axis=1, keepdims=True)
        shown = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
        bar_label, vmax = "fraction of true class", 1.0
    else:
        shown, bar_label, vmax = counts, "count", max(float(counts.max()), 1.0)
    size = max(4.0, 0.7 * len(class_names) + 2.0)
    figure = Figure(figsize=(size + 1.0, size), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(shown, cmap="Blues", vmin=0.0, vmax=vmax)
    figure.colorbar(image, ax=axes, label=bar_label)
    ticks = np.arange(len(class_names))
    axes.set_xticks(ticks, labels=list(class_names), rotation=45, ha="right")
    axes.set_yticks(ticks, labels=list(class_names))
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(title)
    for row in range(counts.shape[0]):
        for column in range(counts.shape[1]):
            # dark text on light cells, light text on dark ones
            color = "white" if shown[row, column] > 0.6 * vmax else "black"
            axes.text(
                column, row, f"{int(counts[row, column])}", ha="center", va="center", color=color
            )
    _save(figure, path)
    return figure
