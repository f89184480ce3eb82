"""Ablations: a grid of attention settings x seeds, trained, measured and tabled beside the
paper's numbers.

:func:`run_ablation` trains every cell of a grid (model x attention kind x reduction x squeeze
x gate x placement x stages) once per seed with :func:`senet.train.train`, measures each
(its task's test score, accuracy for classification; parameters, FLOPs, seconds per
training epoch, inference latency) and writes::

    OUT/ablation.json            the settings every cell shares (a rerun must ask the same)
    OUT/cells/<cell>/seed<k>.json   one finished cell-seed, written atomically
    OUT/runs/<cell>-seed<k>/     the run directory train() wrote (model.keras, history, ...)
    OUT/results.csv              one row per cell: mean, std, paired difference to baseline
    OUT/seeds.csv                one row per finished cell-seed
    OUT/ablation.md, .html       tables laid out like the paper's, with its numbers beside
    OUT/<score>_vs_reduction.png (accuracy_vs_reduction.png), OUT/options_<axis>.png

Resuming: a cell-seed whose JSON exists is not trained again, so a rerun of the same command
after a kill loses at most the cells that were running (and train() resumes those from their
last finished epoch). More seeds or cells can be added to a finished grid the same way.

Statistics: for every cell the mean and sample standard deviation (n - 1) of the test score
over seeds; the difference to the same model's no-attention cell is paired by seed (both
cells see the same data split, and seed ``k`` seeds both): the mean of the per-seed
differences with a 95% Student-t interval, ``mean +- t(0.975, n - 1) * sd / sqrt(n)``. An
interval that holds zero is "within noise"; with one common seed there is no interval (n/a).

Latency is the median of a few calls of each trained model alone, at the end of its cell: a
rough figure, noisy across cells (and more so with ``jobs > 1``); ``senet bench`` times
models interleaved for an A/B comparison you can trust.

The parts: the grid, its cells and the settings they share in :mod:`senet.ablate.grid`, the
results' rows, files, tables and figures in :mod:`senet.ablate.tables`; this module trains
and measures the cells (in worker processes with ``jobs > 1``) and resumes a grid.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from senet._files import atomic_write_text, read_json
from senet._tf import WorkerPool, worker_layout
from senet.ablate.grid import AXES, SCHEMA, Cell, Settings, cell_config, make_grid
from senet.ablate.tables import PAPER_TOP1_ERROR, score_of, summarize, write_outputs
from senet.checks import check_number, check_positive, fail
from senet.progress import Progress
from senet.tasks import get_task

# senet.ablate imports Keras/TensorFlow lazily (inside functions): a worker process of
# `jobs > 1` must limit TensorFlow's threads before TensorFlow starts.

__all__ = [
    "AXES",
    "PAPER_TOP1_ERROR",
    "AblationResult",
    "Cell",
    "Settings",
    "cell_config",
    "load_records",
    "make_grid",
    "run_ablation",
    "run_cell",
    "summarize",
]


# --------------------------------------------------------------------------- one cell


def _cell_path(out_dir: Path, cell: Cell, seed: int) -> Path:
    return out_dir / "cells" / cell.name / f"seed{seed}.json"


def _measure(result, cell: Cell, seed: int, settings: Settings) -> dict[str, Any]:
    """The cell-seed's record: its task's score (``"score"`` names it; classification:
    ``"accuracy"``), parameters, FLOPs, seconds per epoch, latency."""
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
    score = get_task(result.config.task).score
    split = "test" if f"test_{score}" in metrics else "val"
    seconds = [row["seconds"] for row in result.history if "seconds" in row]
    return {
        "schema": SCHEMA,
        "cell": cell.to_dict(),
        "seed": seed,
        "config": result.config.to_dict(),
        "score": score,
        score: float(metrics[f"{split}_{score}"]),
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


def load_records(out_dir: str | os.PathLike) -> list[dict]:
    """Every finished cell-seed record under ``OUT/cells``, sorted by cell and seed."""
    records = []
    for path in sorted(Path(out_dir).glob("cells/*/seed*.json")):
        with contextlib.suppress(ValueError, OSError):  # a file senet did not write
            records.append(read_json(path))
    return sorted(records, key=lambda r: (r["cell"]["name"], r["seed"]))


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


#: Each setting's default, for a manifest written before the setting existed (``task``).
_SETTING_DEFAULTS = {
    f.name: f.default_factory() if f.default is dataclasses.MISSING else f.default
    for f in dataclasses.fields(Settings)
}


def _open_out_dir(out_dir: Path, settings: Settings) -> None:
    """Create ``out_dir`` or check that it holds an ablation with the same settings."""
    manifest = out_dir / "ablation.json"
    wanted = dataclasses.asdict(settings)
    if manifest.is_file():
        try:
            saved = read_json(manifest)["settings"]
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"{manifest} is not an ablation manifest senet wrote") from None
        # a setting added since the manifest was written has its default there
        saved = {**_SETTING_DEFAULTS, **saved}
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
    settings: Settings | None = None,
    jobs: int = 1,
    command: str | None = None,
    progress: bool | Callable[[str], None] = False,
    **shared: Any,
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
        settings: What every cell shares (:class:`senet.ablate.grid.Settings`: the task,
            data, budget and optimizer, a view of :class:`senet.config.TrainConfig`, and
            the latency measurement's batch and rounds); or give its fields as keywords
            (``shared``: ``task``, ``data``, ``difficulty`` (``"easy"``/``"hard"``, the
            synthetic faces' preset), ``synthetic_size``, ``image_size``, ``channels``,
            ``epochs``, ``batch_size``, ``learning_rate``, ``optimizer``,
            ``lr_schedule``, ``augment``, ``split_seed``, ``latency_batch``,
            ``latency_rounds``); a field not given has TrainConfig's default.
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
    settings = _shared_settings(settings, shared)
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
    paths = write_outputs(out_dir, rows, records, cells, settings, command)
    return AblationResult(out_dir, rows, records, len(todo), skipped, paths)


def _shared_settings(settings: Settings | None, shared: dict[str, Any]) -> Settings:
    """``settings``, or a :class:`Settings` of the keywords given (not both)."""
    if settings is not None:
        if shared:
            raise ValueError(f"give `settings` or its fields ({sorted(shared)}), not both")
        if not isinstance(settings, Settings):
            raise fail("settings", "a senet.ablate.Settings", settings)
        return settings
    unknown = sorted(set(shared) - set(_SETTING_DEFAULTS))
    if unknown:
        raise TypeError(
            f"run_ablation() got unexpected keyword(s) {unknown}; the shared settings are "
            f"{sorted(_SETTING_DEFAULTS)}"
        )
    return Settings(**shared)


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
        score = score_of([record])
        if report is None:
            return
        elapsed = time.perf_counter() - started
        left = elapsed / finished * (len(todo) - finished)
        report(
            f"[{done + finished}/{total}] {cell.name} seed {seed}: {score} "
            f"{record[score]:.4f}; {_duration(elapsed)} elapsed, ~{_duration(left)} left"
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
