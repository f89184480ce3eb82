"""An ablation's results: one row per cell (mean and spread over seeds, the difference to the
model's no-attention cell paired by seed with its 95% interval, the costs), the CSV files,
the tables laid out like the SE paper's with its numbers beside them, and the figures.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from senet._files import atomic_write_text, save_figure
from senet.ablate.grid import AXES, Cell, Settings, number_text
from senet.stats import mean_std, paired_interval

#: ImageNet top-1 error (%) of SE-ResNet-50 in the SE paper's ablations (Hu et al., TPAMI
#: 2019, Tables 10-14), by (axis, value); ("attention", "none") is ResNet-50 without SE,
#: ("attention", "se") the paper's standard SE-ResNet-50 (r = 16, avg, sigmoid, all stages).
PAPER_TOP1_ERROR: dict[tuple[str, Any], float] = {
    ("attention", "none"): 23.30,
    ("attention", "se"): 22.28,
    ("reduction", 2): 22.29,
    ("reduction", 4): 22.25,
    ("reduction", 8): 22.26,
    ("reduction", 16): 22.28,
    ("reduction", 32): 22.72,
    ("squeeze", "avg"): 22.28,
    ("squeeze", "max"): 22.57,
    ("gate", "sigmoid"): 22.28,
    ("gate", "tanh"): 23.00,
    ("gate", "relu"): 23.47,
    ("stages", "2"): 23.03,
    ("stages", "3"): 23.04,
    ("stages", "4"): 22.68,
    ("stages", "all"): 22.28,
    ("placement", "standard"): 22.28,
    ("placement", "pre"): 22.23,
    ("placement", "post"): 22.78,
    ("placement", "identity"): 22.20,
}


_AXIS_TITLES = {
    "reduction": "Reduction ratio r (paper Table 10)",
    "squeeze": "Squeeze operator (paper Table 11)",
    "gate": "Excitation gate (paper Table 12)",
    "stages": "Stages with attention (paper Table 13)",
    "placement": "Integration strategy (paper Table 14)",
    "attention": "Attention kind",
    "model": "Model",
}


_AXIS_NOTES = {
    "stages": "Stages are numbered as in the layer names (conv2, conv3, ...). The paper's are "
    "ResNet-50's conv2-conv5; the CIFAR ResNets (resnet20/32/56) have conv2-conv4 only, so "
    "their stage 4 is the last stage, where ResNet-50's last is stage 5.",
    "reduction": "The paper's r = 16 is its default; senet's emotion CNN defaults to r = 8.",
}


def score_of(records: Sequence[dict]) -> str:
    """The metric the records compare: their task's score (``"score"``; a record written
    before tasks had one holds ``"accuracy"``)."""
    names = {record.get("score", "accuracy") for record in records} or {"accuracy"}
    if len(names) > 1:
        raise ValueError(f"the cell records compare different metrics: {sorted(names)}")
    return names.pop()


def summarize(records: Sequence[dict], cells: Sequence[Cell] | None = None) -> list[dict]:
    """One row per cell: the task's score (accuracy), its mean and std over seeds, the
    difference to the model's no-attention cell paired by seed with its 95% interval, and
    the cell's costs.

    Args:
        records: Cell-seed records (:func:`load_records`).
        cells: The cells to summarise, in order (default: every cell in ``records``).

    Returns:
        Dicts with the cell's fields and ``name``, ``seeds``, ``score`` (the metric's
        name, :func:`score_of`), ``<score>_mean`` (``accuracy_mean``), ``<score>_std``
        (None with one seed), ``diff_mean``, ``diff_low``, ``diff_high``,
        ``diff_n``, ``verdict`` (``"baseline"``, ``"within noise"``, ``"better"``,
        ``"worse"``, ``"n/a (1 seed)"``, ``"no baseline"``), ``params``,
        ``params_overhead_pct``, ``flops``, ``flops_overhead_pct``,
        ``train_seconds_per_epoch``, ``latency_ms`` (means over seeds).
    """
    by_cell: dict[str, dict[int, dict]] = {}
    cell_of: dict[str, Cell] = {}
    for record in records:
        info = record["cell"]
        by_cell.setdefault(info["name"], {})[int(record["seed"])] = record
        cell_of[info["name"]] = Cell(**{k: v for k, v in info.items() if k != "name"})
    order = [c for c in cells if c.name in by_cell] if cells is not None else list(cell_of.values())
    score = score_of(records)
    rows = []
    for cell in order:
        seeds = by_cell[cell.name]
        values = {s: r[score] for s, r in seeds.items()}
        base = by_cell.get(Cell(cell.model, "none").name, {})
        base_values = {s: r[score] for s, r in base.items()}
        mean, std = mean_std(list(values.values()))
        row: dict[str, Any] = {**cell.to_dict(), "seeds": len(seeds), "score": score}
        row[f"{score}_mean"], row[f"{score}_std"] = mean, std
        if cell.attention == "none":
            diff, low, high, n = 0.0, None, None, len(seeds)
            verdict = "baseline"
        else:
            diff, low, high, n = paired_interval(values, base_values)
            if n == 0:
                verdict = "no baseline"
            elif low is None:
                verdict = "n/a (1 seed)"
            elif low <= 0 <= high:
                verdict = "within noise"
            else:
                verdict = "better" if low > 0 else "worse"
        row.update(diff_mean=diff, diff_low=low, diff_high=high, diff_n=n, verdict=verdict)
        for key in ("params", "flops"):
            value = _mean_of(seeds, key)
            reference = _mean_of(base, key)
            row[key] = int(round(value))
            row[f"{key}_overhead_pct"] = (
                100.0 * (value - reference) / reference if reference else None
            )
        row["train_seconds_per_epoch"] = _mean_of(seeds, "train_seconds_per_epoch")
        row["latency_ms"] = _mean_of(seeds, "latency_ms")
        rows.append(row)
    return rows


def _mean_of(records: dict[int, dict], key: str) -> float | None:
    values = [r[key] for r in records.values() if r.get(key) is not None]
    return sum(values) / len(values) if values else None


def csv_columns(score: str) -> tuple[str, ...]:
    """results.csv's columns (``accuracy_mean``, ... for classification)."""
    return (
        "name", *AXES, "seeds", f"{score}_mean", f"{score}_std", "diff_mean", "diff_low",
        "diff_high", "diff_n", "verdict", "params", "params_overhead_pct", "flops",
        "flops_overhead_pct", "train_seconds_per_epoch", "latency_ms",
    )  # fmt: skip


def seed_columns(score: str) -> tuple[str, ...]:
    """seeds.csv's columns."""
    return (
        "name", "seed", score, "split", "params", "flops", "train_seconds_per_epoch",
        "latency_ms", "latency_batch", "run_dir",
    )  # fmt: skip


def _csv(rows: Sequence[dict], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    return buffer.getvalue()


def _pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f}"


def _error_text(row: dict) -> str:
    """Accuracy as top-1 error % (the paper's unit); another score as it is."""
    score = row["score"]
    mean, std = row[f"{score}_mean"], row[f"{score}_std"]
    if score != "accuracy":
        spread = f" ± {std:.4f}" if std is not None else ""
        return f"{mean:.4f}{spread} (n={row['seeds']})"
    spread = f" ± {100 * std:.1f}" if std is not None else ""
    return f"{100 * (1 - mean):.1f}{spread} (n={row['seeds']})"


def _diff_text(row: dict) -> str:
    """The difference in top-1 error points (the paper's unit): error = 1 - accuracy; for
    another score, the difference in the score."""
    if row["verdict"] == "baseline":
        return "reference"
    if row["diff_mean"] is None:
        return "—"
    if row["score"] != "accuracy":
        text = f"{row['diff_mean']:+.4f}"
        if row["diff_low"] is not None:
            text += f" [{row['diff_low']:+.4f}, {row['diff_high']:+.4f}]"
        return text
    text = f"{-100 * row['diff_mean']:+.1f}"
    if row["diff_low"] is not None:
        text += f" [{-100 * row['diff_high']:+.1f}, {-100 * row['diff_low']:+.1f}]"
    return text


def _paper(axis: str, row: dict) -> str:
    if row["attention"] == "none":
        return f"{PAPER_TOP1_ERROR[('attention', 'none')]:.2f}"
    if row["attention"] != "se":
        return "—"
    value = row[axis]
    if axis == "reduction" and value is not None:
        value = int(value) if float(value).is_integer() else value
    paper = PAPER_TOP1_ERROR.get((axis, value))
    return "—" if paper is None else f"{paper:.2f}"


def _option_text(value) -> str:
    if value is None:
        return "—"
    return number_text(value) if isinstance(value, float) else str(value)


def _varying_axes(cells: Sequence[Cell]) -> list[str]:
    """The axes with more than one value; an option a cell's kind does not take (None, e.g.
    ECA's reduction) is not a value, so a grid over kinds varies in the kind only."""
    attended = [c for c in cells if c.attention != "none"]
    return [
        axis
        for axis in AXES
        if len({c.value(axis) for c in (cells if axis == "attention" else attended)} - {None}) > 1
    ]


def _base(cells: Sequence[Cell]) -> dict[str, Any]:
    """The base setting: each axis's first value among the cells with attention."""
    attended = [c for c in cells if c.attention != "none"] or list(cells)
    return {axis: next(c.value(axis) for c in attended) for axis in AXES}


def _axis_rows(rows: Sequence[dict], cells: Sequence[Cell], axis: str) -> list[dict]:
    """Rows differing from the base setting in ``axis`` only (and the baselines)."""
    base = _base(cells)
    fixed = [a for a in AXES if a not in (axis, "model", "attention")]
    chosen = []
    for row in rows:
        if row["attention"] == "none":
            if axis == "model" or row["model"] == base["model"]:
                chosen.append(row)
            continue
        same = axis in ("model", "attention") or row["attention"] == base["attention"]
        same = same and (axis == "model" or row["model"] == base["model"])
        # options a cell does not take (None) match any base value
        if same and all(row[a] is None or row[a] == base[a] for a in fixed):
            chosen.append(row)
    return chosen


def _table_headers(score: str) -> list[str]:
    """Accuracy next to the paper's top-1 error; another score without a paper column."""
    if score != "accuracy":
        return [f"{score} here (mean ± std)", f"Δ {score} vs none [95% CI]", "verdict",
                "params", "Δ params"]  # fmt: skip
    return [
        "top-1 error % here (mean ± std)",
        "Δ error vs none [95% CI]",
        "verdict",
        "params",
        "Δ params",
        "paper top-1 error %",
    ]


def _table_row(row: dict, label: str, axis: str) -> list[str]:
    overhead = row["params_overhead_pct"]
    cells = [
        label,
        _error_text(row),
        _diff_text(row),
        row["verdict"],
        f"{row['params']:,}",
        "—" if overhead is None or row["attention"] == "none" else f"{overhead:+.1f}%",
    ]
    return [*cells, _paper(axis, row)] if row["score"] == "accuracy" else cells


def _sections(rows, cells, settings: Settings, plots: dict[str, Path], command: str | None):
    from senet.report import Image, Section, Table

    score = rows[0]["score"] if rows else "accuracy"
    if score == "accuracy":
        reading = (
            "Paper: SE-ResNet-50, ImageNet top-1 error (Hu et al., Tables 10-14). Here: test "
            "error on the data above; Δ is in error points, negative = fewer errors than the "
            "same model without attention"
        )
    else:
        reading = (
            f"Here: test {score} (task {settings.task}) on the data above; Δ is the "
            f"difference in {score} to the same model without attention"
        )
    setup = [
        f"Data: `{settings.data}`"
        + (
            f" ({settings.difficulty}, {settings.synthetic_size} images)"
            if settings.data == "synthetic"
            else ""
        )
        + f", {settings.image_size}x{settings.image_size}x{settings.channels}; "
        f"{settings.epochs} epoch(s), batch {settings.batch_size}, {settings.optimizer} "
        f"lr {settings.learning_rate:g} ({settings.lr_schedule}). {reading}, paired by seed "
        "with a 95% t interval; an interval holding 0 is **within noise**.",
    ]
    if command:
        setup.append(f"Command: `{command}`")
    sections = [Section("Setup", setup)]
    for axis in _varying_axes(cells):
        chosen = _axis_rows(rows, cells, axis)
        table = Table(
            [axis, *_table_headers(score)],
            [
                _table_row(
                    row,
                    "none"
                    if row["attention"] == "none" and axis != "model"
                    else _option_text(row[axis]),
                    axis,
                )
                for row in chosen
            ],
        )
        blocks: list = [table]
        if axis in _AXIS_NOTES:
            blocks.append(_AXIS_NOTES[axis])
        if axis in plots:
            blocks.append(Image(plots[axis], f"{_AXIS_TITLES[axis]}: {score} ± std over seeds"))
        sections.append(Section(_AXIS_TITLES[axis], blocks))
    sections.append(Section("All cells", [_all_cells_table(rows, score)]))
    return sections


def _all_cells_table(rows: Sequence[dict], score: str):
    """Every cell in one table: settings, the score, the paired difference, the costs."""
    from senet.report import Table

    return Table(
        [*AXES, "seeds", score, f"Δ {score} [95% CI]", "verdict", "params", "FLOPs",
         "s/epoch", "latency ms"],
        [
            [
                *(_option_text(row[a]) for a in AXES),
                row["seeds"],
                f"{row[f'{score}_mean']:.4f}"
                + (f" ± {row[f'{score}_std']:.4f}" if row[f"{score}_std"] is not None else ""),
                "reference" if row["verdict"] == "baseline" else (
                    "—" if row["diff_mean"] is None else f"{row['diff_mean']:+.4f}"
                    + (f" [{row['diff_low']:+.4f}, {row['diff_high']:+.4f}]"
                       if row["diff_low"] is not None else "")
                ),
                row["verdict"],
                f"{row['params']:,}",
                f"{row['flops']:,}",
                "—" if row["train_seconds_per_epoch"] is None
                else f"{row['train_seconds_per_epoch']:.2f}",
                f"{row['latency_ms']:.2f}",
            ]
            for row in rows
        ],
        caption="results.csv holds these numbers unrounded; seeds.csv every cell-seed.",
    )  # fmt: skip


def _plots(rows: Sequence[dict], cells: Sequence[Cell], out_dir: Path) -> dict[str, Path]:
    """<score>_vs_reduction.png (accuracy_vs_reduction.png) and options_<axis>.png for the
    axes that vary."""
    from matplotlib.figure import Figure

    score = rows[0]["score"] if rows else "accuracy"
    mean, std = f"{score}_mean", f"{score}_std"
    plots: dict[str, Path] = {}
    for axis in _varying_axes(cells):
        chosen = _axis_rows(rows, cells, axis)
        baselines = [r for r in chosen if r["attention"] == "none"]
        varied = [r for r in chosen if r["attention"] != "none"]
        if len(varied) < 2 and axis != "model":
            continue
        figure = Figure(figsize=(6, 4), layout="constrained")
        axes = figure.subplots()
        if axis == "reduction":
            varied = sorted(varied, key=lambda r: r["reduction"])
            x = [r["reduction"] for r in varied]
            axes.errorbar(
                x, [r[mean] for r in varied],
                yerr=[r[std] or 0 for r in varied], fmt="-o", capsize=3,
                label=f"{varied[0]['attention']} {score}",
            )  # fmt: skip
            axes.set_xscale("log", base=2)
            axes.set_xticks(x, [number_text(v) for v in x])
            axes.set_xlabel("reduction ratio r")
            second = axes.twinx()
            second.plot(x, [r["params"] for r in varied], "s--", color="tab:gray")
            second.set_ylabel("parameters", color="tab:gray")
        else:
            shown = chosen if axis == "model" else varied
            labels = [
                "none" if r["attention"] == "none" and axis != "model" else _option_text(r[axis])
                for r in shown
            ]
            if axis == "model":
                labels = [f"{r['model']}\n{r['attention']}" for r in shown]
            axes.bar(
                range(len(shown)), [r[mean] for r in shown],
                yerr=[r[std] or 0 for r in shown], capsize=4, color="tab:blue",
            )  # fmt: skip
            axes.set_xticks(range(len(shown)), labels)
            axes.set_xlabel(axis)
            if score == "accuracy":
                low = min(r[mean] - (r[std] or 0) for r in shown)
                axes.set_ylim(max(0.0, low - 0.05), 1.0)
        for base in baselines if axis != "model" else []:
            axes.axhline(base[mean], color="tab:red", linestyle=":", label="none")
        axes.set_ylabel(f"test {score} (mean ± std over seeds)")
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(loc="lower right")
        name = f"{score}_vs_reduction.png" if axis == "reduction" else f"options_{axis}.png"
        path = out_dir / name
        save_figure(figure, path, dpi=110)
        plots[axis] = path
    return plots


def write_outputs(out_dir, rows, records, cells, settings, command) -> dict[str, Path]:
    from senet.report import write_report

    paths = {"csv": out_dir / "results.csv", "seeds_csv": out_dir / "seeds.csv"}
    score = score_of(records)
    atomic_write_text(paths["csv"], _csv(rows, csv_columns(score)))
    seed_rows = [{**r, "name": r["cell"]["name"]} for r in records]
    atomic_write_text(paths["seeds_csv"], _csv(seed_rows, seed_columns(score)))
    plots = _plots(rows, cells, out_dir)
    written = write_report(
        out_dir,
        "Attention ablation",
        _sections(rows, cells, settings, plots, command),
        name="ablation",
    )
    paths.update(written)
    paths.update({f"plot_{axis}": path for axis, path in plots.items()})
    return paths
