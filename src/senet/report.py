"""Figures and reports: training curves, confusion matrices and the one report writer.

Figures are drawn on a bare :class:`matplotlib.figure.Figure` (no pyplot), so they work
in any thread and with any (or no) display, and never leak global figure state.

:func:`write_report` turns one list of :class:`Section` (paragraphs, :class:`Table` and
:class:`Image` blocks) into ``report.md`` (images linked as files beside it) and a
self-contained ``report.html`` (images embedded as base64 data URIs, inline CSS), so both
always say the same thing.
"""

from __future__ import annotations

import base64
import html
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np
from matplotlib.figure import Figure

from senet._files import atomic_write_text, save_figure

__all__ = [
    "Image",
    "Section",
    "Table",
    "plot_confusion",
    "plot_curves",
    "write_report",
]


def _history_columns(history) -> dict[str, np.ndarray]:
    """Accept ``{"loss": [...], ...}`` (Keras History.history) or a list of per-epoch rows."""
    if isinstance(history, Mapping):
        return {key: np.asarray(values, dtype=float) for key, values in history.items()}
    rows = list(history)
    keys = sorted({key for row in rows for key in row})
    return {key: np.asarray([row.get(key, np.nan) for row in rows], dtype=float) for key in keys}


def _save(figure: Figure, path: str | os.PathLike | None) -> None:
    if path is not None:
        save_figure(figure, path, dpi=120, bbox_inches="tight")


def plot_curves(
    history,
    path: str | os.PathLike | None = None,
    *,
    title: str = "Training curves",
    score: str = "accuracy",
    loss: str = "cross-entropy loss",
) -> Figure:
    """Loss and the task's score (accuracy) per epoch, training and validation, side by side.

    Args:
        history: ``History.history``-like dict of per-epoch lists, or a list of per-epoch
            dicts (rows of ``history.csv``). Keys ``loss``, ``accuracy``, ``val_loss``,
            ``val_accuracy``; an ``epoch`` key (1-based) sets the x axis when present.
        path: Where to save a PNG, or None to only return the figure.
        title: Figure title.
        score: The second panel's key (``score`` and ``val_<score>``, a task's
            :attr:`senet.tasks.Task.score`); accuracy is drawn from 0 to 1.
        loss: The loss panel's y label (a task's :attr:`senet.tasks.Task.loss_name`).

    Returns:
        The figure (two axes: loss, the score).

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
    panels = (
        ("Loss", loss, "loss", "val_loss"),
        (score.replace("_", " ").capitalize(), score.replace("_", " "), score, f"val_{score}"),
    )
    for axes, (panel, ylabel, train_key, val_key) in zip(
        figure.subplots(1, len(panels)), panels, strict=True
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
        if score == "accuracy" and panel == "Accuracy":
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
        raise ValueError(f"`matrix` must be square (K, K), got shape {counts.shape}")
    if len(class_names) != counts.shape[0]:
        raise ValueError(
            f"Expected {counts.shape[0]} `class_names` for a {counts.shape} matrix, "
            f"got {len(class_names)}: {list(class_names)}"
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


# --------------------------------------------------------------------------- report writer


@dataclass
class Table:
    """A table block of a report section.

    Attributes:
        headers: Column titles.
        rows: One sequence of cells per row, as many as ``headers``; cells are written with
            ``str()`` (format numbers before).
        caption: A line under the table, or None.
    """

    headers: Sequence[str]
    rows: Sequence[Sequence[object]]
    caption: str | None = None

    def __post_init__(self):
        width = len(self.headers)
        for index, row in enumerate(self.rows):
            if len(row) != width:
                raise ValueError(
                    f"Expected every row of the table to have {width} cells like `headers` "
                    f"{list(self.headers)}, got row {index} with {len(row)} cells {list(row)}"
                )


@dataclass
class Image:
    """An image block of a report section: a PNG (or JPEG, GIF, SVG) file.

    Attributes:
        path: The image file; Markdown links it relative to the report, HTML embeds it.
        caption: Text under the image (also its alt text).
    """

    path: str | os.PathLike
    caption: str = ""


@dataclass
class Section:
    """A titled part of a report.

    Attributes:
        title: The section heading.
        blocks: In order: paragraphs (``str``, a light Markdown: `` `code` ``, ``**bold**``,
            lines starting with ``- `` are a bullet list), :class:`Table` and :class:`Image`.
    """

    title: str
    blocks: Sequence[str | Table | Image] = field(default_factory=list)


_MIME_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".svg": "image/svg+xml",
}

_CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.5; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #eee; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: .35em .8em; text-align: left; }
th { background: #f3f5f7; }
tr:nth-child(even) td { background: #fafafa; }
caption { caption-side: bottom; font-size: .9em; color: #555; padding-top: .4em; text-align: left; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .9em; color: #555; }
code { background: #f3f3f3; padding: 0 .25em; border-radius: 3px; }
""".strip()


def _check_image(image: Image) -> Path:
    path = Path(image.path)
    if path.suffix.lower() not in _MIME_TYPES:
        raise ValueError(
            f"Expected an image file ending in one of {tuple(_MIME_TYPES)}, "
            f"got path={os.fspath(path)!r}"
        )
    if not path.is_file():
        raise ValueError(f"Expected an existing image file, got path={os.fspath(path)!r}")
    return path


def _inline_html(text: str) -> str:
    """Escape, then the light Markdown of a paragraph: `code` and **bold**."""
    parts = re.split(r"(`[^`]+`)", text)
    out = []
    for part in parts:
        if len(part) > 1 and part.startswith("`") and part.endswith("`"):
            out.append(f"<code>{html.escape(part[1:-1])}</code>")
        else:
            escaped = html.escape(part)
            out.append(re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped))
    return "".join(out)


def _paragraph_html(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if lines and all(line.lstrip().startswith("- ") for line in lines):
        items = "".join(f"<li>{_inline_html(line.lstrip()[2:])}</li>" for line in lines)
        return f"<ul>{items}</ul>"
    return f"<p>{_inline_html(' '.join(line.strip() for line in lines))}</p>"


def _table_markdown(table: Table) -> str:
    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(cell(h) for h in table.headers) + " |",
        "|" + "|".join(" --- " for _ in table.headers) + "|",
        *("| " + " | ".join(cell(v) for v in row) + " |" for row in table.rows),
    ]
    if table.caption:
        lines += ["", f"*{table.caption}*"]
    return "\n".join(lines)


def _table_html(table: Table) -> str:
    head = "".join(f"<th>{_inline_html(str(h))}</th>" for h in table.headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{_inline_html(str(v))}</td>" for v in row) + "</tr>"
        for row in table.rows
    )
    caption = f"<caption>{_inline_html(table.caption)}</caption>" if table.caption else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _link(path: Path, root: Path) -> str:
    """``path`` relative to the report's folder, with forward slashes."""
    return Path(os.path.relpath(path.resolve(), root.resolve())).as_posix()


def _image_html(image: Image, root: Path, embed: bool = True) -> str:
    path = _check_image(image)
    if embed:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        source = f"data:{_MIME_TYPES[path.suffix.lower()]};base64,{data}"
    else:
        source = html.escape(quote(_link(path, root)), quote=True)
    alt = html.escape(image.caption or path.stem, quote=True)
    caption = f"<figcaption>{_inline_html(image.caption)}</figcaption>" if image.caption else ""
    return f'<figure><img src="{source}" alt="{alt}">{caption}</figure>'


def _image_markdown(image: Image, root: Path) -> str:
    path = _check_image(image)
    link = _link(path, root)
    # the caption follows as text, so the alt text stays short: the file's name
    text = f"![{path.stem}]({link})"
    return f"{text}\n\n*{image.caption}*" if image.caption else text


def _as_section(section) -> Section:
    if isinstance(section, Section):
        return section
    if isinstance(section, (tuple, list)) and len(section) == 2 and isinstance(section[0], str):
        return Section(section[0], list(section[1]))
    raise ValueError(
        f"Expected each section to be a Section or a (title, blocks) pair, "
        f"got {type(section).__name__} {section!r:.80}"
    )


def write_report(
    out_dir: str | os.PathLike,
    title: str,
    sections: Sequence[Section | tuple[str, Sequence[str | Table | Image]]],
    *,
    name: str = "report",
    embed_images: bool = True,
) -> dict[str, Path]:
    """Write one report as Markdown and as a self-contained HTML page, from the same content.

    ``OUT_DIR/<name>.md`` links its images by paths relative to ``OUT_DIR``;
    ``OUT_DIR/<name>.html`` embeds them as base64 ``data:`` URIs and carries its CSS
    inline, so it can be mailed or opened anywhere, alone. Both files are written to a
    temporary name first and renamed, so a reader never sees half a report.

    Args:
        out_dir: Directory of the report (created).
        title: The report's title (its ``#`` heading and HTML ``<title>``).
        sections: :class:`Section` objects or ``(title, blocks)`` pairs; blocks are
            paragraphs (``str``), :class:`Table` and :class:`Image`.
        name: File name stem of both files.
        embed_images: False links the HTML's images by relative path too, as the
            Markdown does: a page listing many images (``senet explain``'s index) stays
            small and quick to rewrite, but needs its image files beside it.

    Returns:
        ``{"markdown": path, "html": path}``.

    Raises:
        ValueError: An unknown block, a missing image file or a table with ragged rows.

    Example:
        >>> paths = write_report("out", "Run 3", [  # doctest: +SKIP
        ...     Section("Results", ["Accuracy rose.", Table(["model", "acc"], [["se", "0.91"]]),
        ...                         Image("out/curves.png", "Training curves")])])
        >>> sorted(paths)  # doctest: +SKIP
        ['html', 'markdown']
    """
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    markdown = [f"# {title}"]
    body = [f"<h1>{_inline_html(title)}</h1>"]
    for section in map(_as_section, sections):
        markdown.append(f"## {section.title}")
        body.append(f"<h2>{_inline_html(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, str):
                markdown.append(block.strip())
                body.append(_paragraph_html(block))
            elif isinstance(block, Table):
                markdown.append(_table_markdown(block))
                body.append(_table_html(block))
            elif isinstance(block, Image):
                markdown.append(_image_markdown(block, root))
                body.append(_image_html(block, root, embed_images))
            else:
                raise ValueError(
                    f"Expected report blocks to be str, Table or Image, got "
                    f"{type(block).__name__} in section {section.title!r}"
                )
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>\n{_CSS}\n</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
    paths = {"markdown": root / f"{name}.md", "html": root / f"{name}.html"}
    for kind, text in (("markdown", "\n\n".join(markdown) + "\n"), ("html", page)):
        atomic_write_text(paths[kind], text)
    return paths
