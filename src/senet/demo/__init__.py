"""The main job: synthetic faces -> a plain and an SE emotion CNN -> explanations -> a report.

:func:`run_demo` needs no data and no network. It draws the synthetic expression set
(:func:`senet.data.synthetic_expressions`: the class lives only in the eyes, brows and
mouth, and every image comes with masks of those parts), trains a plain and an SE
:func:`senet.models.emotion_cnn` on the same data with the same seed and budget, evaluates
both on the test split, explains both (heatmaps, how much of their energy falls on the
parts, and the SE gates per class) and writes::

    OUT/report.html        self-contained (figures embedded)
    OUT/report.md          the same report, figures linked from OUT/figures/
    OUT/metrics.json       {"models": {...}, "focus": {...}, ...} (see run_demo)
    OUT/figures/*.png
    OUT/runs/baseline/     the plain model's run directory (senet.train.train)
    OUT/runs/se/           the SE model's run directory

Both training runs are ordinary resumable run directories: running :func:`run_demo`
again on the same ``OUT`` reuses a finished run as it is and resumes an interrupted one
from its last finished epoch.

The parts: this module runs the job (the two models trained side by side in worker
processes, the heatmap method and layer chosen, the focus scores and gates computed);
:mod:`senet.demo.report` writes the figures, ``metrics.json`` and the report's prose;
:mod:`senet.demo.common` holds what both read (the parts, the budgets, the records).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from senet import runs
from senet._files import atomic_write_text
from senet._tf import WorkerPool, worker_layout
from senet.checks import check_choice, check_number
from senet.data import ImageSet
from senet.data.synthetic import DIFFICULTIES
from senet.demo.common import (
    BATCH_SIZE,
    BUDGETS,
    CANDIDATE_LAYERS,
    CANDIDATE_METHODS,
    FOCUS_STEPS,
    MODELS,
    PARTS,
    TITLES,
    Focus,
    Gates,
    Trained,
)
from senet.demo.report import (
    accuracy_comparison,
    focus_metrics,
    gates_figure,
    heatmap_figure,
    model_metrics,
    report_sections,
    setup_metrics,
    training_figures,
)
from senet.explain import (
    class_profiles,
    class_specificity,
    focus_score,
    grad_cam,
    image_blind_map,
    pick_depths,
    pick_explanation,
    score_explanations,
)
from senet.explain.faithfulness import probabilities
from senet.layers import load_model
from senet.progress import Progress
from senet.report import write_report
from senet.tasks import get_task
from senet.train import TrainConfig, load_run_data, train

__all__ = [
    "CANDIDATE_LAYERS",
    "CANDIDATE_METHODS",
    "FOCUS_STEPS",
    "PARTS",
    "accuracy_comparison",
    "run_demo",
]


class _EpochLines(keras.callbacks.Callback):
    """One progress line per finished epoch of one model (both may train at once)."""

    def __init__(self, name: str, epochs: int, progress: Progress):
        super().__init__()
        self.name, self.epochs, self.progress = name, epochs, progress

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        shown = ", ".join(
            f"{key} {logs[key]:.4f}" for key in ("accuracy", "val_accuracy") if key in logs
        )
        self.progress(
            f"{self.name}: epoch {epoch + 1}/{self.epochs}" + (f", {shown}" if shown else "")
        )


#: What the demo writes into its directory; a directory holding only these (or nothing) is
#: the demo's own, which a rerun continues.
OWN_FILES = ("runs", "figures", "report.html", "report.md", "metrics.json")


def _check_out_dir(root: Path, overwrite: bool) -> None:
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"{root} is a file; the demo's output (`out_dir`) is a folder")
    if overwrite or not root.exists():
        return
    others = sorted(path.name for path in root.iterdir() if path.name not in OWN_FILES)
    if others:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise FileExistsError(
            f"{root} holds files the demo did not write ({shown}); choose another folder, "
            "or give --overwrite (overwrite=True) to write beside them"
        )


def run_demo(
    out_dir: str | os.PathLike,
    *,
    quick: bool = False,
    seed: int = 0,
    difficulty: str = "easy",
    verbose: bool = True,
    jobs: int | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train a plain and an SE emotion CNN on synthetic faces, explain both, write a report.

    Args:
        out_dir: Output directory (created). Running again on the same directory reuses
            the finished training runs in ``out_dir/runs`` and resumes unfinished ones; a
            directory holding anything but what the demo writes (:data:`OWN_FILES`) is
            refused unless ``overwrite``.
        quick: A tiny, fast smoke run (a few hundred images, one epoch); its numbers mean
            nothing.
        seed: Seeds the synthetic data, the split, the weights and the data order (the
            same for both models).
        difficulty: ``"easy"`` (default; both models near 98%) or ``"hard"`` synthetic
            faces (:func:`senet.data.synthetic_expressions`), which leave headroom.
        verbose: Print one line per stage and per epoch of each model.
        overwrite: Write into a directory that holds other files too (they are left alone;
            the demo's own files are replaced).
        jobs: Models trained at once. Default: both at once, each in its own spawned
            process with half the cores' threads, when there are 2 or more cores (on
            2 cores: 1 thread each; training took 131 s against 248 s one after the
            other with 2 threads);
            1 trains them one after the other in this process. Then each process scores
            one model's explanation candidates. Seeded results repeat on the same
            machine (on a 2-core Zen 3, ``jobs`` 1 and 2 gave the same numbers).

    Returns:
        The contents of ``out_dir/metrics.json``::

            {"models": {"baseline": {"test_accuracy", "params", "test_accuracy_ci95",
                                     ...}, "se": {...}},
             "comparison": {"test": "mcnemar_exact", "p_value", "within_noise", ...},
             "focus": {"baseline": {"energy_in_parts", "area_fraction", "ratio", ...},
                       "se": {...}, "image_blind": {...}},
             "explain": {...}, "excitation": {...}, "setup": {...}}

    Example:
        >>> metrics = run_demo("demo_out", quick=True, verbose=False)  # doctest: +SKIP
        >>> sorted(metrics["focus"])  # doctest: +SKIP
        ['baseline', 'image_blind', 'se']
    """
    seed = check_number("seed", seed, integer=True, minimum=0)
    difficulty = check_choice("difficulty", difficulty, DIFFICULTIES)
    quick = bool(quick)
    jobs = 2 if jobs is None else check_number("jobs", jobs, integer=True, minimum=1)
    progress = Progress(verbose, label="demo", stream=sys.stdout)
    root = Path(out_dir)
    _check_out_dir(root, overwrite)
    figures = root / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    configs = _configs(quick, seed, difficulty)

    # the images each run saw (both configs differ only in attention)
    first = configs["baseline"]
    progress(f"data: drawing {first.synthetic_size} {difficulty} synthetic faces (seed {seed})")
    sets = load_run_data(first)
    class_names = list(sets["test"].class_names)

    validation = _selection_images(sets["val"], BUDGETS[quick])
    layers = BUDGETS[quick]["layers"]
    trained, scores = _train_models(configs, root, validation, layers, seed, jobs, progress)
    models = {name: run.model for name, run in trained.items()}
    selection = _choose_explanation(scores, len(validation[0]), progress)
    focus = _explain_focus(models, sets, selection, progress)
    gates = _excitation_profiles(models["se"], sets["test"], len(class_names), progress)

    progress("figures")
    paths = training_figures(trained, class_names, figures)
    paths["heatmaps"] = heatmap_figure(
        models, sets["test"], focus, selection, BUDGETS[quick]["grid_images"], figures
    )
    paths["profiles"] = gates_figure(gates, class_names, figures)

    test_set = sets["test"]
    correct = {
        name: probabilities(model, test_set.x).argmax(axis=1) == test_set.y
        for name, model in models.items()
    }
    metrics = {
        "models": model_metrics(trained, correct),
        "comparison": accuracy_comparison(correct["baseline"], correct["se"]),
        **focus_metrics(focus, selection, len(test_set)),
        "excitation": {
            depth: {"layer": layer, "class_specificity": float(gates.specificity[layer])}
            for depth, layer in gates.depths.items()
        },
        "setup": setup_metrics(
            first, sets, trained, quick, seed, difficulty, progress.elapsed(), jobs
        ),
    }
    write_report(
        root, "senet demo: plain vs Squeeze-and-Excitation CNN", report_sections(metrics, paths)
    )
    atomic_write_text(root / "metrics.json", json.dumps(metrics, indent=2))
    progress(f"done: wrote {root / 'report.html'}, {root / 'report.md'}, {root / 'metrics.json'}")
    return metrics


def _configs(quick: bool, seed: int, difficulty: str = "easy") -> dict[str, TrainConfig]:
    budget = BUDGETS[quick]
    return {
        name: TrainConfig(
            data="synthetic",
            model="emotion_cnn",
            attention="none" if kind is None else kind,
            epochs=budget["epochs"],
            batch_size=BATCH_SIZE,
            seed=seed,
            split_seed=seed,
            synthetic_size=budget["synthetic_size"],
            synthetic_difficulty=difficulty,
            augment=True,
        )
        for name, kind in MODELS.items()
    }


def _finished_run(run_dir: Path, config: TrainConfig) -> bool:
    """Whether ``run_dir`` holds a finished run of ``config`` with all its final files."""
    if not (run_dir / runs.CONFIG_FILE).is_file():
        return False
    saved = TrainConfig.from_dict(runs.read_config(run_dir))
    if saved != config:
        raise ValueError(
            f"{run_dir} holds a run with another configuration than this demo's "
            f"({saved.to_dict()} != {config.to_dict()}); choose another `out_dir` or remove it"
        )
    if not runs.has_final_files(run_dir, also=get_task("classification").report_files):
        return False
    return runs.read_metrics(run_dir).get("epochs_run") == config.epochs


def _train_or_reuse(name: str, config: TrainConfig, run_dir: Path, progress: Progress) -> Trained:
    """A finished run is loaded, any other (re)trained."""
    if _finished_run(run_dir, config):
        progress(f"{name}: reusing the finished run in {run_dir}")
        return Trained(
            model=load_model(run_dir / runs.MODEL_FILE),
            metrics=runs.read_metrics(run_dir),
            history=runs.read_history_csv(run_dir / runs.HISTORY_FILE),
            how="reused",
        )
    resume = (run_dir / runs.CONFIG_FILE).is_file()
    progress(
        f"{name}: {'resuming' if resume else 'training'} {TITLES[name]} for "
        f"{config.epochs} epoch{'s' if config.epochs > 1 else ''} in {run_dir}"
    )
    lines = _EpochLines(name, config.epochs, progress)
    result = train(config, run_dir, resume=resume, callbacks=[lines], verbose=0)
    how = f"resumed after epoch {result.resumed_from}" if resume else "trained"
    return Trained(result.model, result.metrics, result.history, how)


def _train_task(name: str, config: dict[str, Any], run_dir: str, verbose: bool, started: float):
    """:func:`_train_or_reuse` from plain values (what a worker process runs first)."""
    progress = Progress(verbose, label="demo", stream=sys.stdout, started=started)
    began = time.perf_counter()
    trained = _train_or_reuse(name, TrainConfig.from_dict(config), Path(run_dir), progress)
    progress(
        f"{name}: test accuracy {trained.metrics['test_accuracy']:.4f} "
        f"({trained.how}, {time.perf_counter() - began:.1f}s)"
    )
    return trained


def _worker_train(*args) -> dict[str, Any]:
    """:func:`_train_task` in a worker process; the model stays in its run directory."""
    trained = _train_task(*args)
    return {"metrics": trained.metrics, "history": trained.history, "how": trained.how}


def _score(
    model: keras.Model, validation: tuple[np.ndarray, np.ndarray], layers: tuple, seed: int
) -> list:
    """:func:`senet.explain.score_explanations` of every method at ``layers`` on
    ``(images, masks)``."""
    x, masks = validation
    return score_explanations(
        model,
        x,
        masks,
        methods=CANDIDATE_METHODS,
        layers=layers,
        steps=FOCUS_STEPS,
        seed=seed,
    )


def _worker_score(
    run_dir: str, validation: tuple[np.ndarray, np.ndarray], layers: tuple, seed: int
) -> list:
    """:func:`_score` of the model in ``run_dir`` (what a worker process runs second)."""
    return _score(load_model(Path(run_dir) / runs.MODEL_FILE), validation, layers, seed)


def _train_models(
    configs: dict[str, TrainConfig],
    root: Path,
    validation: tuple[np.ndarray, np.ndarray],
    layers: tuple,
    seed: int,
    jobs: int,
    progress: Progress,
) -> tuple[dict[str, Trained], dict[str, list[dict]]]:
    """Both models trained (or reused) in ``root/runs/<name>``, then their candidate scores.

    With ``jobs`` 2 and 2 or more cores, each model trains in its own spawned process with
    an equal share of the cores' threads (:func:`senet._tf.limit_threads`), and once both
    are done each process scores one model's explanation candidates; else all runs here,
    one model after the other.
    """
    run_dirs = {name: root / "runs" / name for name in configs}
    for name, config in configs.items():
        _finished_run(run_dirs[name], config)  # refuses another configuration before any work
    processes, threads = worker_layout(jobs, len(configs), stacklevel=4)
    count = len(CANDIDATE_METHODS) * len(layers)

    def task(name: str) -> tuple:
        config = configs[name].to_dict()
        return (name, config, os.fspath(run_dirs[name]), progress.verbose, progress.started)

    if processes == 1:
        trained = {name: _train_task(*task(name)) for name in configs}
        progress(f"explain: scoring {count} explanation candidates of each model")
        return trained, {
            name: _score(run.model, validation, layers, seed) for name, run in trained.items()
        }

    progress(
        f"training both models at once: {processes} processes, {threads} "
        f"thread{'s' if threads > 1 else ''} each"
    )
    with WorkerPool(processes, threads) as pool:
        futures = {name: pool.submit(_worker_train, *task(name)) for name in configs}
        records = {name: future.result() for name, future in futures.items()}
        progress(f"explain: scoring {count} explanation candidates of each model, at once")
        futures = {
            name: pool.submit(_worker_score, os.fspath(run_dirs[name]), validation, layers, seed)
            for name in configs
        }
        scores = {name: future.result() for name, future in futures.items()}
    trained = {
        name: Trained(model=load_model(run_dirs[name] / runs.MODEL_FILE), **record)
        for name, record in records.items()
    }
    return trained, scores


def _parts_mask(images: ImageSet) -> np.ndarray:
    return np.logical_or.reduce([images.masks[part] for part in PARTS])


def _selection_images(val_set: ImageSet, budget: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """The first ``selection_images`` validation faces and their part masks."""
    chosen = val_set.subset(np.arange(min(budget["selection_images"], len(val_set))))
    return chosen.x, _parts_mask(chosen)


def _choose_explanation(
    scores: dict[str, list[dict]], count: int, progress: Progress
) -> dict[str, Any]:
    """The method and layer, by :func:`senet.explain.choose_explanation`'s rule.

    The rule (fixed before any number is seen): on the first ``selection_images``
    VALIDATION faces, drop every (method, layer) of :data:`CANDIDATE_METHODS` x
    :data:`CANDIDATE_LAYERS` (quick: the last layer only) whose focus on the parts does not clearly drop on a copy of
    either model with re-initialised weights (the sanity check), then take the one with
    the lowest deletion AUC (the class probability falls fastest as its top pixels are
    removed), averaged over both models. The test split is not looked at. ``scores``:
    each model's :func:`senet.explain.score_explanations` on those ``count`` faces.
    """
    selection = pick_explanation(scores)
    selection["validation_images"] = count
    layers = {candidate["layer"] for candidate in selection["candidates"]}
    progress(
        f"explain: chose {selection['method']} at {selection['layer']} on {count} validation "
        f"faces ({len(CANDIDATE_METHODS)} methods x {len(layers)} layers)"
        + ("" if selection["passed"] else " (no candidate passed the sanity check)")
    )
    return selection


def _explain_focus(
    models: dict[str, keras.Model],
    sets: dict[str, ImageSet],
    selection: dict[str, Any],
    progress: Progress,
) -> Focus:
    """Heatmaps of both models on the test split, and how much of them falls on the parts."""
    test_set = sets["test"]
    method, layer = selection["method"], selection["layer"]
    progress(f"explain: {method} heatmaps at {layer} on {len(test_set)} test faces")
    parts = _parts_mask(test_set)
    heatmaps, scores, gradxact = {}, {}, {}
    for name, model in models.items():
        heatmaps[name] = grad_cam(
            model, test_set.x, layer=layer, method=method, batch_size=128, steps=FOCUS_STEPS
        )
        scores[name] = focus_score(heatmaps[name], parts)
        # the one-step method at the same layer, for comparison in the report
        local = (
            heatmaps[name]
            if method == "gradxact"
            else grad_cam(model, test_set.x, layer=layer, method="gradxact", batch_size=128)
        )
        gradxact[name] = focus_score(local, parts)
    blind = image_blind_map(_parts_mask(sets["train"]))
    scores["image_blind"] = focus_score(blind, parts)
    sources = {**heatmaps, "image_blind": blind}
    per_part = {
        name: {part: focus_score(maps, test_set.masks[part])["energy_in_parts"] for part in PARTS}
        for name, maps in sources.items()
    }
    return Focus(heatmaps, parts, scores, gradxact, per_part)


def _excitation_profiles(
    se_model: keras.Model, test_set: ImageSet, num_classes: int, progress: Progress
) -> Gates:
    progress("explain: SE excitation profiles per class")
    profiles_all = class_profiles(se_model, test_set.x, test_set.y, num_classes, batch_size=256)
    depths = pick_depths(list(profiles_all))
    profiles = {layer: profiles_all[layer] for layer in depths.values()}
    return Gates(depths, profiles, class_specificity(profiles))


# --------------------------------------------------------------------------- metrics.json
