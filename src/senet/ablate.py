"""Ablations: a grid of attention settings x seeds, trained, measured and tabled beside the
paper's numbers.

:func:`run_ablation` trains every cell of a grid (model x attention kind x reduction x squeeze
x gate x placement x stages) once per seed with :func:`senet.train.train`, measures each
(test accuracy, parameters, FLOPs, seconds per training epoch, inference latency) and writes::

    OUT/ablation.json            the settings every cell shares (a rerun must ask the same)
    OUT/cells/<cell>/seed<k>.json   one finished cell-seed, written atomically
    OUT/runs/<cell>-seed<k>/     the run directory train() wrote (model.keras, history, ...)
    OUT/results.csv              one row per cell: mean, std, paired difference to baseline
    OUT/seeds.csv                one row per finished cell-seed
    OUT/ablation.md, .html       tables laid out like the paper's, with its numbers beside
    OUT/accuracy_vs_reduction.png, OUT/options_<axis>.png

Resuming: a cell-seed whose JSON exists is not trained again, so a rerun of the same command
after a kill loses at most the cells that were running (and train() resumes those from their
last finished epoch). More seeds or cells can be added to a finished grid the same way.

Statistics: for every cell the mean and sample standard deviation (n - 1) of test accuracy
over seeds; the difference to the same model's no-attention cell is paired by seed (both
cells see the same data split, and seed ``k`` seeds both): the mean of the per-seed
differences with a 95% Student-t interval, ``mean +- t(0.975, n - 1) * sd / sqrt(n)``. An
interval that holds zero is "within noise"; with one common seed there is no interval (n/a).

Latency is the median of a few calls of each trained model alone, at the end of its cell: a
rough figure, noisy across cells (and more so with ``jobs > 1``); ``senet bench`` times
models interleaved for an A/B comparison you can trust.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import itertools
import json
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from senet._files import atomic_write_text, read_json, save_figure
from senet._tf import WorkerPool, worker_layout
from senet.checks import check_choice, check_number, check_positive, fail, is_none
from senet.config import DEFAULTS, SYNTHETIC_DIFFICULTIES
from senet.progress import Progress
from senet.stats import mean_std, paired_interval

# senet.ablate imports Keras/TensorFlow lazily (inside functions): a worker process of
# `jobs > 1` must limit TensorFlow's threads before TensorFlow starts.

__all__ = [
    "AXES",
    "PAPER_TOP1_ERROR",
    "AblationResult",
    "Cell",
    "cell_config",
    "load_records",
    "make_grid",
    "run_ablation",
    "run_cell",
    "summarize",
]

#: The grid's axes, in the order of a cell's name and of the tables.
AXES = ("model", "attention", "reduction", "squeeze", "gate", "placement", "stages")
SQUEEZES = ("avg", "max", "avgmax")
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
_SCHEMA = 1


# --------------------------------------------------------------------------- the grid


@dataclass(frozen=True)
class Cell:
    """One setting of the grid. Options that do not apply are None.

    Attributes:
        model: A name from ``senet.train.MODEL_NAMES``.
        attention: An attention kind or ``"none"``.
        reduction: Reduction ratio (kinds with a bottleneck: se, scse, cbam).
        squeeze: ``"avg"``, ``"max"`` or ``"avgmax"`` (kinds that take it).
        gate: The gate's Keras activation (``"sigmoid"``, ``"tanh"``, ...).
        placement: Where attention sits in a residual unit (ResNets).
        stages: ``"all"`` or the stage numbers with attention, ``"2"``, ``"3,4"`` (ResNets).
    """

    model: str
    attention: str
    reduction: float | None = None
    squeeze: str | None = None
    gate: str | None = None
    placement: str | None = None
    stages: str | None = None

    @property
    def name(self) -> str:
        """A file-safe name: ``emotion_cnn-se-r8-avg-sigmoid``."""
        parts = [self.model, self.attention]
        if self.reduction is not None:
            parts.append(f"r{_number(self.reduction)}")
        parts += [v for v in (self.squeeze, self.gate, self.placement) if v is not None]
        if self.stages is not None:
            parts.append("stages" + self.stages.replace(",", "+"))
        return "-".join(parts)

    def model_options(self) -> dict[str, Any]:
        """The builder's further arguments (``TrainConfig.model_options``)."""
        options: dict[str, Any] = {}
        layer = {k: v for k, v in (("squeeze", self.squeeze), ("gate", self.gate)) if v}
        if layer:
            options["attention_options"] = layer
        if self.placement is not None:
            options["placement"] = self.placement
        if self.stages not in (None, "all"):
            options["stages"] = [int(s) for s in self.stages.split(",")]
        return options

    def value(self, axis: str) -> Any:
        return getattr(self, axis)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "name": self.name}


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _layer_options(kind: str) -> set[str]:
    """The options (reduction, squeeze, gate) that attention ``kind``'s layer takes."""
    from senet.layers import attention

    config = attention(kind, reduction=8).get_config()
    return {option for option in ("reduction", "squeeze", "gate") if option in config}


def _parse_stages(value) -> str:
    if is_none(value) or (isinstance(value, str) and value.strip().lower() == "all"):
        return "all"
    if isinstance(value, str):
        parts = value.replace("+", ",").split(",")
    elif isinstance(value, int) and not isinstance(value, bool):
        parts = [value]
    else:
        parts = list(value)
    try:
        numbers = sorted({int(p) for p in parts})
    except (TypeError, ValueError):
        raise fail("stages", "'all' or stage numbers such as 2, '3,4' or (3, 4)", value) from None
    if not numbers or min(numbers) < 1:
        raise fail("stages", "'all' or stage numbers such as 2, '3,4' or (3, 4)", value)
    return ",".join(map(str, numbers))


def _as_list(argument: str, values) -> list:
    if isinstance(values, str | int | float) or values is None:
        values = [values]
    values = list(values)
    if not values:
        raise fail(argument, "a non-empty list", values)
    return values


def make_grid(
    *,
    models: Sequence[str] | str = ("emotion_cnn",),
    attentions: Sequence[str] | str = ("se",),
    reductions: Sequence[float] | float = (8,),
    squeezes: Sequence[str] | str = ("avg",),
    gates: Sequence[str] | str = ("sigmoid",),
    placements: Sequence[str] | str = ("standard",),
    stages: Sequence | str = ("all",),
) -> list[Cell]:
    """The cells of a grid: every combination, each model's no-attention baseline first.

    Options a cell cannot use are dropped (None) and the duplicates this makes removed: the
    baseline has none, ECA/sSE take no reduction, sSE/CBAM no squeeze, ``emotion_cnn`` no
    placement or stages. The first value of each axis is the base setting the per-axis
    tables vary one option from.

    Raises:
        ValueError: An unknown model, kind, squeeze or placement, a reduction that is not
            positive, or placements/stages asked without a ResNet in ``models``.

    >>> [cell.name for cell in make_grid(reductions=(4, 8))]
    ['emotion_cnn-none', 'emotion_cnn-se-r4-avg-sigmoid', 'emotion_cnn-se-r8-avg-sigmoid']
    """
    from senet.layers.registry import check_kind
    from senet.models.resnet import PLACEMENTS
    from senet.train import MODEL_NAMES

    models = [check_choice("models", m, MODEL_NAMES) for m in _as_list("models", models)]
    kinds = [check_kind("attentions", a) or "none" for a in _as_list("attentions", attentions)]
    reductions = [check_positive("reductions", r) for r in _as_list("reductions", reductions)]
    squeezes = [check_choice("squeezes", s, SQUEEZES) for s in _as_list("squeezes", squeezes)]
    gates = _as_list("gates", gates)
    for gate in gates:
        if not isinstance(gate, str) or not gate.strip():
            raise fail("gates", "Keras activation names such as 'sigmoid' or 'tanh'", gate)
    gates = [g.strip().lower() for g in gates]
    placements = [
        check_choice("placements", p, PLACEMENTS) for p in _as_list("placements", placements)
    ]
    stage_sets = [_parse_stages(s) for s in _as_list("stages", stages)]
    if all(m == "emotion_cnn" for m in models):
        for argument, values, default in (
            ("placements", placements, "standard"),
            ("stages", stage_sets, "all"),
        ):
            if values != [default]:
                raise fail(argument, f"[{default!r}] unless a ResNet is in `models`", values)
    options = {kind: _layer_options(kind) for kind in kinds if kind != "none"}

    cells: dict[Cell, None] = {}
    for model in models:
        resnet = model != "emotion_cnn"
        cells[Cell(model, "none")] = None
        for kind, r, squeeze, gate, placement, stage in itertools.product(
            kinds, reductions, squeezes, gates, placements, stage_sets
        ):
            if kind == "none":
                continue
            takes = options[kind]
            cell = Cell(
                model,
                kind,
                reduction=float(r) if "reduction" in takes else None,
                squeeze=squeeze if "squeeze" in takes else None,
                gate=gate if "gate" in takes else None,
                placement=placement if resnet else None,
                stages=stage if resnet else None,
            )
            cells[cell] = None
    return list(cells)


# --------------------------------------------------------------------------- one cell


@dataclass
class Settings:
    """What every cell of an ablation shares (``OUT/ablation.json``): a view of
    :class:`senet.config.TrainConfig` (its fields and defaults; ``difficulty`` is its
    ``synthetic_difficulty``), and the latency measurement's two."""

    data: str = DEFAULTS["data"]
    difficulty: str = DEFAULTS["synthetic_difficulty"]
    synthetic_size: int = DEFAULTS["synthetic_size"]
    image_size: int = DEFAULTS["image_size"]
    channels: int = DEFAULTS["channels"]
    epochs: int = DEFAULTS["epochs"]
    batch_size: int = DEFAULTS["batch_size"]
    learning_rate: float = DEFAULTS["learning_rate"]
    optimizer: str = DEFAULTS["optimizer"]
    lr_schedule: str = DEFAULTS["lr_schedule"]
    augment: bool = DEFAULTS["augment"]
    split_seed: int = DEFAULTS["split_seed"]
    latency_batch: int = 1
    latency_rounds: int = 10

    def __post_init__(self):
        self.data = os.fspath(self.data)
        self.difficulty = check_choice("difficulty", self.difficulty, SYNTHETIC_DIFFICULTIES)
        for name in ("latency_batch", "latency_rounds"):
            setattr(self, name, check_number(name, getattr(self, name), integer=True, minimum=1))


def cell_config(cell: Cell, seed: int, settings: Settings):
    """The :class:`senet.train.TrainConfig` of one cell-seed.

    The difficulty is passed to the data as ``TrainConfig.synthetic_difficulty`` when this
    senet's TrainConfig has that field; without it only ``"easy"`` (the synthetic default)
    is accepted.
    """
    from senet.train import TrainConfig

    values = dict(
        data=settings.data,
        model=cell.model,
        attention=cell.attention,
        reduction=cell.reduction if cell.reduction is not None else 8,
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        optimizer=settings.optimizer,
        lr_schedule=settings.lr_schedule,
        augment=settings.augment,
        seed=seed,
        split_seed=settings.split_seed,
        image_size=settings.image_size,
        channels=settings.channels,
        synthetic_size=settings.synthetic_size,
        keep_checkpoints=1,
        model_options=cell.model_options(),
    )
    if "synthetic_difficulty" in {f.name for f in dataclasses.fields(TrainConfig)}:
        values["synthetic_difficulty"] = settings.difficulty
    elif settings.difficulty != "easy":
        raise ValueError(
            f"`difficulty` {settings.difficulty!r} needs TrainConfig.synthetic_difficulty, "
            "which this version of senet does not have yet"
        )
    return TrainConfig(**values)


def _cell_path(out_dir: Path, cell: Cell, seed: int) -> Path:
    return out_dir / "cells" / cell.name / f"seed{seed}.json"


def _measure(result, cell: Cell, seed: int, settings: Settings) -> dict[str, Any]:
    """The cell-seed's record: accuracy, parameters, FLOPs, seconds per epoch, latency."""
    import numpy as np

    from senet.bench import count_flops, count_params, latency_interleaved

    model = result.model
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        flops = count_flops(model)
    shape = (settings.latency_batch, *tuple(model.inputs[0].shape[1:]))
    latency = latency_interleaved(
        {"model": model}, np.zeros(shape, "float32"), rounds=settings.latency_rounds, warmup=2
    )["model"]
    metrics = result.metrics
    split = "test" if "test_accuracy" in metrics else "val"
    seconds = [row["seconds"] for row in result.history if "seconds" in row]
    return {
        "schema": _SCHEMA,
        "cell": cell.to_dict(),
        "seed": seed,
        "config": result.config.to_dict(),
        "accuracy": float(metrics[f"{split}_accuracy"]),
        "split": split,
        "params": count_params(model),
        "flops": int(flops),
        "flops_complete": not caught,
        "train_seconds_per_epoch": sum(seconds) / len(seconds) if seconds else None,
        "latency_ms": float(latency["ms"]),
        "latency_batch": settings.latency_batch,
        "run_dir": os.fspath(result.out_dir),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def run_cell(out_dir: str | os.PathLike, cell: Cell, seed: int, settings: Settings) -> dict:
    """Train one cell-seed into ``OUT/runs/<cell>-seed<k>`` and write its JSON record.

    A run directory left by a killed cell is resumed from its last finished epoch.
    """
    import keras

    from senet import runs
    from senet import train as training

    out_dir = Path(out_dir)
    keras.backend.clear_session(free_memory=False)  # the full gc.collect costs ~1 s
    run_dir = out_dir / "runs" / f"{cell.name}-seed{seed}"
    config = cell_config(cell, seed, settings)
    result = training.train(config, run_dir, resume=runs.holds_run(run_dir), verbose=0)
    record = _measure(result, cell, seed, settings)
    path = _cell_path(out_dir, cell, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return record


def _cell_task(out_dir: str, cell: dict, seed: int, settings: dict) -> dict:
    """:func:`run_cell` from plain values (what a worker process receives)."""
    cell = Cell(**{k: v for k, v in cell.items() if k != "name"})
    return run_cell(out_dir, cell, seed, Settings(**settings))


# --------------------------------------------------------------------------- results


def load_records(out_dir: str | os.PathLike) -> list[dict]:
    """Every finished cell-seed record under ``OUT/cells``, sorted by cell and seed."""
    records = []
    for path in sorted(Path(out_dir).glob("cells/*/seed*.json")):
        with contextlib.suppress(ValueError, OSError):  # a file senet did not write
            records.append(read_json(path))
    return sorted(records, key=lambda r: (r["cell"]["name"], r["seed"]))


def summarize(records: Sequence[dict], cells: Sequence[Cell] | None = None) -> list[dict]:
    """One row per cell: accuracy mean and std over seeds, the difference to the model's
    no-attention cell paired by seed with its 95% interval, and the cell's costs.

    Args:
        records: Cell-seed records (:func:`load_records`).
        cells: The cells to summarise, in order (default: every cell in ``records``).

    Returns:
        Dicts with the cell's fields and ``name``, ``seeds``, ``accuracy_mean``,
        ``accuracy_std`` (None with one seed), ``diff_mean``, ``diff_low``, ``diff_high``,
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
    rows = []
    for cell in order:
        seeds = by_cell[cell.name]
        accuracy = {s: r["accuracy"] for s, r in seeds.items()}
        base = by_cell.get(Cell(cell.model, "none").name, {})
        base_accuracy = {s: r["accuracy"] for s, r in base.items()}
        mean, std = mean_std(list(accuracy.values()))
        row: dict[str, Any] = {**cell.to_dict(), "seeds": len(seeds)}
        row["accuracy_mean"], row["accuracy_std"] = mean, std
        if cell.attention == "none":
            diff, low, high, n = 0.0, None, None, len(seeds)
            verdict = "baseline"
        else:
            diff, low, high, n = paired_interval(accuracy, base_accuracy)
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


_CSV_COLUMNS = (
    "name", *AXES, "seeds", "accuracy_mean", "accuracy_std", "diff_mean", "diff_low",
    "diff_high", "diff_n", "verdict", "params", "params_overhead_pct", "flops",
    "flops_overhead_pct", "train_seconds_per_epoch", "latency_ms",
)  # fmt: skip
_SEED_COLUMNS = (
    "name", "seed", "accuracy", "split", "params", "flops", "train_seconds_per_epoch",
    "latency_ms", "latency_batch", "run_dir",
)  # fmt: skip


def _csv(rows: Sequence[dict], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    return buffer.getvalue()


# --------------------------------------------------------------------------- report


def _pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f}"


def _error_text(row: dict) -> str:
    error = 100 * (1 - row["accuracy_mean"])
    std = row["accuracy_std"]
    spread = f" ± {100 * std:.1f}" if std is not None else ""
    return f"{error:.1f}{spread} (n={row['seeds']})"


def _diff_text(row: dict) -> str:
    """The difference in top-1 error points (the paper's unit): error = 1 - accuracy."""
    if row["verdict"] == "baseline":
        return "reference"
    if row["diff_mean"] is None:
        return "—"
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
    return _number(value) if isinstance(value, float) else str(value)


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


_TABLE_HEADERS = [
    "top-1 error % here (mean ± std)",
    "Δ error vs none [95% CI]",
    "verdict",
    "params",
    "Δ params",
    "paper top-1 error %",
]


def _table_row(row: dict, label: str, axis: str) -> list[str]:
    overhead = row["params_overhead_pct"]
    return [
        label,
        _error_text(row),
        _diff_text(row),
        row["verdict"],
        f"{row['params']:,}",
        "—" if overhead is None or row["attention"] == "none" else f"{overhead:+.1f}%",
        _paper(axis, row),
    ]


def _sections(rows, cells, settings: Settings, plots: dict[str, Path], command: str | None):
    from senet.report import Image, Section, Table

    setup = [
        f"Data: `{settings.data}`"
        + (
            f" ({settings.difficulty}, {settings.synthetic_size} images)"
            if settings.data == "synthetic"
            else ""
        )
        + f", {settings.image_size}x{settings.image_size}x{settings.channels}; "
        f"{settings.epochs} epoch(s), batch {settings.batch_size}, {settings.optimizer} "
        f"lr {settings.learning_rate:g} ({settings.lr_schedule}). Paper: SE-ResNet-50, "
        "ImageNet top-1 error (Hu et al., Tables 10-14). Here: test error on the data above; "
        "Δ is in error points, negative = fewer errors than the same model without "
        "attention, paired by seed with a 95% t interval; an interval holding 0 is "
        "**within noise**.",
    ]
    if command:
        setup.append(f"Command: `{command}`")
    sections = [Section("Setup", setup)]
    for axis in _varying_axes(cells):
        chosen = _axis_rows(rows, cells, axis)
        table = Table(
            [axis, *_TABLE_HEADERS],
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
            blocks.append(Image(plots[axis], f"{_AXIS_TITLES[axis]}: accuracy ± std over seeds"))
        sections.append(Section(_AXIS_TITLES[axis], blocks))
    everything = Table(
        [*AXES, "seeds", "accuracy", "Δ accuracy [95% CI]", "verdict", "params", "FLOPs",
         "s/epoch", "latency ms"],
        [
            [
                *(_option_text(row[a]) for a in AXES),
                row["seeds"],
                f"{row['accuracy_mean']:.4f}"
                + (f" ± {row['accuracy_std']:.4f}" if row["accuracy_std"] is not None else ""),
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
    sections.append(Section("All cells", [everything]))
    return sections


def _plots(rows: Sequence[dict], cells: Sequence[Cell], out_dir: Path) -> dict[str, Path]:
    """accuracy_vs_reduction.png and options_<axis>.png for the axes that vary."""
    from matplotlib.figure import Figure

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
                x, [r["accuracy_mean"] for r in varied],
                yerr=[r["accuracy_std"] or 0 for r in varied], fmt="-o", capsize=3,
                label=f"{varied[0]['attention']} accuracy",
            )  # fmt: skip
            axes.set_xscale("log", base=2)
            axes.set_xticks(x, [_number(v) for v in x])
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
                range(len(shown)), [r["accuracy_mean"] for r in shown],
                yerr=[r["accuracy_std"] or 0 for r in shown], capsize=4, color="tab:blue",
            )  # fmt: skip
            axes.set_xticks(range(len(shown)), labels)
            axes.set_xlabel(axis)
            low = min(r["accuracy_mean"] - (r["accuracy_std"] or 0) for r in shown)
            axes.set_ylim(max(0.0, low - 0.05), 1.0)
        for base in baselines if axis != "model" else []:
            axes.axhline(base["accuracy_mean"], color="tab:red", linestyle=":", label="none")
        axes.set_ylabel("test accuracy (mean ± std over seeds)")
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(loc="lower right")
        name = "accuracy_vs_reduction.png" if axis == "reduction" else f"options_{axis}.png"
        path = out_dir / name
        save_figure(figure, path, dpi=110)
        plots[axis] = path
    return plots


# --------------------------------------------------------------------------- the job


@dataclass
class AblationResult:
    """What :func:`run_ablation` returns.

    Attributes:
        out_dir: The output directory.
        rows: :func:`summarize`'s rows, one per cell of the grid.
        records: The cell-seed records of the grid.
        trained: Cell-seeds trained by this call.
        skipped: Cell-seeds found finished on disk.
        paths: ``{"csv", "seeds_csv", "markdown", "html"}`` and the plots.
    """

    out_dir: Path
    rows: list[dict]
    records: list[dict]
    trained: int
    skipped: int
    paths: dict[str, Path] = field(default_factory=dict)


def _open_out_dir(out_dir: Path, settings: Settings) -> None:
    """Create ``out_dir`` or check that it holds an ablation with the same settings."""
    manifest = out_dir / "ablation.json"
    wanted = dataclasses.asdict(settings)
    if manifest.is_file():
        try:
            saved = read_json(manifest)["settings"]
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"{manifest} is not an ablation manifest senet wrote") from None
        differ = {k: (saved.get(k), v) for k, v in wanted.items() if saved.get(k) != v}
        if differ:
            said = ", ".join(f"{k} {new!r} (it has {old!r})" for k, (old, new) in differ.items())
            raise ValueError(
                f"{out_dir} holds an ablation with other settings: {said}; rerun with its "
                "settings to resume it, or choose another output directory"
            )
        return
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ValueError(
            f"{out_dir} is not empty and holds no ablation (no ablation.json); choose a new "
            "or empty directory"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(manifest, json.dumps({"settings": wanted}, indent=2) + "\n")


def _finished(out_dir: Path, cell: Cell, seed: int, settings: Settings) -> bool:
    path = _cell_path(out_dir, cell, seed)
    if not path.is_file():
        return False
    try:
        record = read_json(path)
        return record["config"] == cell_config(cell, seed, settings).to_dict()
    except (ValueError, KeyError, TypeError):
        return False


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def run_ablation(
    out_dir: str | os.PathLike,
    *,
    models: Sequence[str] | str = ("emotion_cnn",),
    attentions: Sequence[str] | str = ("se",),
    reductions: Sequence[float] | float = (8,),
    squeezes: Sequence[str] | str = ("avg",),
    gates: Sequence[str] | str = ("sigmoid",),
    placements: Sequence[str] | str = ("standard",),
    stages: Sequence | str = ("all",),
    seeds: int | Sequence[int] = 3,
    data: str | os.PathLike = "synthetic",
    difficulty: str = "easy",
    synthetic_size: int = 7000,
    image_size: int = 48,
    channels: int = 1,
    epochs: int = 10,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    optimizer: str = "adam",
    lr_schedule: str = "constant",
    augment: bool = True,
    split_seed: int = 0,
    latency_batch: int = 1,
    latency_rounds: int = 10,
    jobs: int = 1,
    command: str | None = None,
    progress: bool | Callable[[str], None] = False,
) -> AblationResult:
    """Train and measure every cell of a grid over seeds; write the tables and plots.

    The grid is :func:`make_grid`'s (each model's no-attention baseline included); each
    cell is trained once per seed (:func:`run_cell`) unless its record is on disk already.

    Args:
        out_dir: Output directory: new, empty, or an ablation with the same settings
            (resumed: finished cell-seeds are kept).
        models, attentions, reductions, squeezes, gates, placements, stages: The grid's
            values (see :func:`make_grid`); the first of each is the base setting.
        seeds: A number of seeds (``0 .. n-1``) or the seeds themselves.
        data, difficulty, synthetic_size, image_size, channels, epochs, batch_size,
            learning_rate, optimizer, lr_schedule, augment, split_seed: Training settings
            shared by every cell (see :class:`senet.train.TrainConfig`); ``difficulty``
            (``"easy"``/``"hard"``) chooses the synthetic faces' preset.
        latency_batch, latency_rounds: Batch size and timed calls of each cell's latency.
        jobs: Cells trained at once, in separate processes (spawned, each with
            ``cores // jobs`` TensorFlow threads); capped at the number of cores.
        command: The command line, printed in the report.
        progress: ``True`` prints a line per finished cell-seed to stderr (cells done /
            total, an estimate of the time left); a callable receives the lines instead.

    Returns:
        An :class:`AblationResult`.

    Example:
        >>> result = run_ablation("abl", reductions=(4, 16), seeds=3, epochs=5,
        ...                       progress=True)  # doctest: +SKIP
        >>> [row["verdict"] for row in result.rows]  # doctest: +SKIP
        ['baseline', 'within noise', 'better']
    """
    out_dir = Path(out_dir)
    cells = make_grid(
        models=models, attentions=attentions, reductions=reductions, squeezes=squeezes,
        gates=gates, placements=placements, stages=stages,
    )  # fmt: skip
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = list(range(check_positive("seeds", seeds, integer=True)))
    seeds = sorted({check_number("seeds", s, integer=True, minimum=0) for s in seeds})
    if not seeds:
        raise fail("seeds", "a positive number or a non-empty list of seeds", seeds)
    jobs = check_positive("jobs", jobs, integer=True)
    settings = Settings(
        data=data, difficulty=difficulty, synthetic_size=synthetic_size,
        image_size=image_size, channels=channels, epochs=epochs, batch_size=batch_size,
        learning_rate=learning_rate, optimizer=optimizer, lr_schedule=lr_schedule,
        augment=augment, split_seed=split_seed, latency_batch=latency_batch,
        latency_rounds=latency_rounds,
    )  # fmt: skip
    for cell in cells:  # every config is checked before anything trains
        cell_config(cell, seeds[0], settings)
    _open_out_dir(out_dir, settings)

    tasks = [(cell, seed) for cell in cells for seed in seeds]
    todo = [(c, s) for c, s in tasks if not _finished(out_dir, c, s, settings)]
    report = Progress(progress) if progress else None
    skipped = len(tasks) - len(todo)
    if report:
        report(
            f"{len(cells)} cells x {len(seeds)} seeds = {len(tasks)} runs; {skipped} finished "
            f"before, {len(todo)} to train"
        )
    _train_all(out_dir, todo, settings, jobs, report, done=skipped, total=len(tasks))

    records = [
        r
        for r in load_records(out_dir)
        if r["seed"] in seeds and r["cell"]["name"] in {c.name for c in cells}
    ]
    rows = summarize(records, cells)
    paths = _write_outputs(out_dir, rows, records, cells, settings, command)
    return AblationResult(out_dir, rows, records, len(todo), skipped, paths)


def _train_all(out_dir, todo, settings, jobs, report, *, done: int, total: int) -> None:
    """Train the cell-seeds in ``todo`` (in-process, or in ``jobs`` worker processes)."""
    if not todo:
        return
    started = time.perf_counter()
    processes, threads = worker_layout(jobs, len(todo), stacklevel=3)
    finished = 0

    def announce(cell: Cell, seed: int, record: dict) -> None:
        nonlocal finished
        finished += 1
        if report is None:
            return
        elapsed = time.perf_counter() - started
        left = elapsed / finished * (len(todo) - finished)
        report(
            f"[{done + finished}/{total}] {cell.name} seed {seed}: accuracy "
            f"{record['accuracy']:.4f}; {_duration(elapsed)} elapsed, ~{_duration(left)} left"
        )

    if processes == 1:
        for cell, seed in todo:
            announce(cell, seed, run_cell(out_dir, cell, seed, settings))
        return
    from concurrent.futures import as_completed

    # an error, Ctrl-C or SIGTERM here stops the workers (and frees their run locks)
    with WorkerPool(processes, threads) as pool:
        futures = {
            pool.submit(
                _cell_task, os.fspath(out_dir), cell.to_dict(), seed, dataclasses.asdict(settings)
            ): (cell, seed)
            for cell, seed in todo
        }
        for future in as_completed(futures):
            cell, seed = futures[future]
            announce(cell, seed, future.result())


def _write_outputs(out_dir, rows, records, cells, settings, command) -> dict[str, Path]:
    from senet.report import write_report

    paths = {"csv": out_dir / "results.csv", "seeds_csv": out_dir / "seeds.csv"}
    atomic_write_text(paths["csv"], _csv(rows, _CSV_COLUMNS))
    seed_rows = [{**r, "name": r["cell"]["name"]} for r in records]
    atomic_write_text(paths["seeds_csv"], _csv(seed_rows, _SEED_COLUMNS))
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
