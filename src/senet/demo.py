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
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from senet import runs
from senet._files import atomic_write_text
from senet._tf import WorkerPool, worker_layout
from senet.bench import count_params, machine_info
from senet.checks import check_choice, check_number
from senet.data import ImageSet
from senet.data.synthetic import DIFFICULTIES
from senet.explain import (
    METHODS,
    class_profiles,
    class_specificity,
    focus_score,
    grad_cam,
    heatmap_grid,
    image_blind_map,
    pick_depths,
    pick_explanation,
    profile_figure,
    score_explanations,
)
from senet.explain.faithfulness import probabilities
from senet.layers import load_model
from senet.progress import Progress
from senet.report import Image, Section, Table, plot_confusion, plot_curves, write_report
from senet.stats import NOISE_ALPHA, mcnemar_test, wilson_interval
from senet.train import TrainConfig, load_run_data, train

__all__ = [
    "CANDIDATE_LAYERS",
    "CANDIDATE_METHODS",
    "FOCUS_STEPS",
    "PARTS",
    "accuracy_comparison",
    "run_demo",
]

#: The masks whose union is "the parts" in the focus score.
PARTS = ("eyes", "brows", "mouth")
#: The heatmap methods and layers the demo chooses from (senet.explain.choose_explanation,
#: on validation images): every method senet has, at the last ReLU of blocks 2-4 (24x24,
#: 12x12 and 6x6 maps; block 1's 48x48 map is left out for time).
CANDIDATE_METHODS = METHODS
CANDIDATE_LAYERS = ("block2_relu2", "block3_relu2", "block4_relu2")
#: Integration steps of "intgrad" and deletion steps of the faithfulness curve.
FOCUS_STEPS = 8

# Budgets: the full demo's target is under 3 minutes on 2 CPU cores (measured on a 2-core Zen 3
# with oneDNN on: 2 min 56 s with both models training at once, 126 and 131 s of it training;
# 5 min 23 s one after the other); quick is a smoke run.
# selection_images: validation faces the method and layer are chosen on.
# layers: the candidate layers of the heatmap choice (quick: the last only, so that a smoke
# run scores 4 candidates, not 12; each is scored op by op on both models and their copies).
_BUDGETS = {
    False: {
        "synthetic_size": 5000,
        "epochs": 8,
        "grid_images": 7,
        "selection_images": 48,
        "layers": CANDIDATE_LAYERS,
    },
    True: {
        "synthetic_size": 280,
        "epochs": 1,
        "grid_images": 3,
        "selection_images": 7,
        "layers": CANDIDATE_LAYERS[-1:],
    },
}
_BATCH_SIZE = 64
_MODELS = {"baseline": None, "se": "se"}
_TITLES = {"baseline": "plain CNN (baseline)", "se": "SE CNN"}


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


@dataclass
class _Trained:
    """One model of the demo and its run: metrics.json, history rows and how it was had."""

    model: keras.Model
    metrics: dict[str, Any]
    history: list[dict[str, float]]
    how: str


@dataclass
class _Focus:
    """The heatmaps of both models on the test split and their focus scores."""

    heatmaps: dict[str, np.ndarray]  # baseline, se: (N, H, W)
    parts: np.ndarray  # the test images' part masks, (N, H, W) bool
    scores: dict[str, dict]  # baseline, se, image_blind: focus_score(...)
    gradxact: dict[str, dict]  # baseline, se: focus_score of gradient x activation
    per_part: dict[str, dict[str, float]]  # name -> part -> energy inside that part alone


@dataclass
class _Gates:
    """The SE model's mean gates per class at an early, a middle and the last SE block."""

    depths: dict[str, str]  # depth -> SE layer
    profiles: dict[str, np.ndarray]  # SE layer -> (classes, channels)
    specificity: dict[str, float]  # SE layer -> class specificity


def _fmt(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}"


# --------------------------------------------------------------------------- the job


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

    validation = _selection_images(sets["val"], _BUDGETS[quick])
    layers = _BUDGETS[quick]["layers"]
    trained, scores = _train_models(configs, root, validation, layers, seed, jobs, progress)
    models = {name: run.model for name, run in trained.items()}
    selection = _choose_explanation(scores, len(validation[0]), progress)
    focus = _explain_focus(models, sets, selection, progress)
    gates = _excitation_profiles(models["se"], sets["test"], len(class_names), progress)

    progress("figures")
    paths = _training_figures(trained, class_names, figures)
    paths["heatmaps"] = _heatmap_figure(
        models, sets["test"], focus, selection, _BUDGETS[quick]["grid_images"], figures
    )
    paths["profiles"] = _profile_figure(gates, class_names, figures)

    test_set = sets["test"]
    correct = {
        name: probabilities(model, test_set.x).argmax(axis=1) == test_set.y
        for name, model in models.items()
    }
    metrics = {
        "models": _model_metrics(trained, correct),
        "comparison": accuracy_comparison(correct["baseline"], correct["se"]),
        **_focus_metrics(focus, selection, len(test_set)),
        "excitation": {
            depth: {"layer": layer, "class_specificity": float(gates.specificity[layer])}
            for depth, layer in gates.depths.items()
        },
        "setup": _setup_metrics(
            first, sets, trained, quick, seed, difficulty, progress.elapsed(), jobs
        ),
    }
    write_report(
        root, "senet demo: plain vs Squeeze-and-Excitation CNN", _report_sections(metrics, paths)
    )
    atomic_write_text(root / "metrics.json", json.dumps(metrics, indent=2))
    progress(f"done: wrote {root / 'report.html'}, {root / 'report.md'}, {root / 'metrics.json'}")
    return metrics


# --------------------------------------------------------------------------- training


def _configs(quick: bool, seed: int, difficulty: str = "easy") -> dict[str, TrainConfig]:
    budget = _BUDGETS[quick]
    return {
        name: TrainConfig(
            data="synthetic",
            model="emotion_cnn",
            attention="none" if kind is None else kind,
            epochs=budget["epochs"],
            batch_size=_BATCH_SIZE,
            seed=seed,
            split_seed=seed,
            synthetic_size=budget["synthetic_size"],
            synthetic_difficulty=difficulty,
            augment=True,
        )
        for name, kind in _MODELS.items()
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
    if not runs.has_final_files(run_dir):
        return False
    return runs.read_metrics(run_dir).get("epochs_run") == config.epochs


def _train_or_reuse(name: str, config: TrainConfig, run_dir: Path, progress: Progress) -> _Trained:
    """A finished run is loaded, any other (re)trained."""
    if _finished_run(run_dir, config):
        progress(f"{name}: reusing the finished run in {run_dir}")
        return _Trained(
            model=load_model(run_dir / runs.MODEL_FILE),
            metrics=runs.read_metrics(run_dir),
            history=runs.read_history_csv(run_dir / runs.HISTORY_FILE),
            how="reused",
        )
    resume = (run_dir / runs.CONFIG_FILE).is_file()
    progress(
        f"{name}: {'resuming' if resume else 'training'} {_TITLES[name]} for "
        f"{config.epochs} epoch{'s' if config.epochs > 1 else ''} in {run_dir}"
    )
    lines = _EpochLines(name, config.epochs, progress)
    result = train(config, run_dir, resume=resume, callbacks=[lines], verbose=0)
    how = f"resumed after epoch {result.resumed_from}" if resume else "trained"
    return _Trained(result.model, result.metrics, result.history, how)


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
) -> tuple[dict[str, _Trained], dict[str, list[dict]]]:
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
        name: _Trained(model=load_model(run_dirs[name] / runs.MODEL_FILE), **record)
        for name, record in records.items()
    }
    return trained, scores


# --------------------------------------------------------------------------- explanations


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
) -> _Focus:
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
    return _Focus(heatmaps, parts, scores, gradxact, per_part)


def _excitation_profiles(
    se_model: keras.Model, test_set: ImageSet, num_classes: int, progress: Progress
) -> _Gates:
    progress("explain: SE excitation profiles per class")
    profiles_all = class_profiles(se_model, test_set.x, test_set.y, num_classes, batch_size=256)
    depths = pick_depths(list(profiles_all))
    profiles = {layer: profiles_all[layer] for layer in depths.values()}
    return _Gates(depths, profiles, class_specificity(profiles))


# --------------------------------------------------------------------------- figures


def _training_figures(
    trained: dict[str, _Trained], class_names: list[str], figures: Path
) -> dict[str, Path]:
    """Training curves and test confusion matrix of each model."""
    paths: dict[str, Path] = {}
    for name, run in trained.items():
        paths[f"curves_{name}"] = figures / f"curves_{name}.png"
        plot_curves(
            run.history,
            paths[f"curves_{name}"],
            title=f"Training curves: {_TITLES[name]} ({len(run.history)} epochs)",
        )
        paths[f"confusion_{name}"] = figures / f"confusion_{name}.png"
        plot_confusion(
            run.metrics["confusion_matrix"],
            class_names,
            paths[f"confusion_{name}"],
            title=(
                f"{_TITLES[name]}: test confusion matrix "
                f"(accuracy {run.metrics['test_accuracy']:.3f})"
            ),
        )
    return paths


def _grid_indices(labels: np.ndarray, count: int) -> np.ndarray:
    """The first test image of each class, in class order, up to ``count`` images."""
    picks = [int(np.flatnonzero(labels == k)[0]) for k in np.unique(labels)]
    return np.asarray(picks[:count], dtype=np.int64)


def _heatmap_figure(
    models: dict[str, keras.Model],
    test_set: ImageSet,
    focus: _Focus,
    selection: dict[str, Any],
    count: int,
    figures: Path,
) -> Path:
    """One test face per class with both models' heatmaps and the part masks."""
    picks = _grid_indices(test_set.y, count)
    # a direct call: predict() would build a tf.data pipeline for a handful of images
    predictions = {
        name: keras.ops.convert_to_numpy(model(test_set.x[picks], training=False)).argmax(axis=1)
        for name, model in models.items()
    }
    path = figures / "heatmaps.png"
    heatmap_grid(
        test_set.x[picks],
        {
            "plain": focus.heatmaps["baseline"][picks],
            "SE": focus.heatmaps["se"][picks],
            "part masks": focus.parts[picks].astype(np.float32),
        },
        labels=test_set.y[picks],
        preds_by_model={"plain": predictions["baseline"], "SE": predictions["se"]},
        class_names=list(test_set.class_names),
        path=path,
        title=(
            f"Where each model's evidence lies: {selection['method']} at {selection['layer']}, "
            "one test face per class"
        ),
    )
    return path


def _profile_figure(gates: _Gates, class_names: list[str], figures: Path) -> Path:
    path = figures / "se_profiles.png"
    # panel titles: "early (block1_se): mean excitation per class (specificity ...)"
    panels = {f"{depth} ({layer})": gates.profiles[layer] for depth, layer in gates.depths.items()}
    profile_figure(panels, class_names, list(panels), path)
    return path


# --------------------------------------------------------------------------- metrics.json


def accuracy_comparison(correct_baseline, correct_se, *, alpha: float = NOISE_ALPHA) -> dict:
    """Is the SE model's test accuracy different from the plain one's beyond noise?

    The rule: the exact McNemar test on the same test images (only the images exactly
    one model gets right count; see :func:`senet.stats.mcnemar_test`). The difference is
    "within noise" when its two-sided p-value is at least ``alpha`` (0.05).

    Args:
        correct_baseline: One boolean per test image: the plain model is right.
        correct_se: The same for the SE model.
        alpha: Significance level.

    Returns:
        ``{"test": "mcnemar_exact", "alpha", "se_minus_baseline", "only_baseline",
        "only_se", "p_value", "within_noise", "verdict"}``.
    """
    test = mcnemar_test(correct_baseline, correct_se)
    delta = (test["only_b"] - test["only_a"]) / test["n"]
    within = test["p_value"] >= alpha
    direction = "more" if delta > 0 else "less"
    if within:
        verdict = (
            f"SE - plain = {delta * 100:+.1f} points: within noise (exact McNemar test on "
            f"the same {test['n']} test images, p = {test['p_value']:.3g} >= {alpha})."
        )
    else:
        verdict = (
            f"The SE model is {abs(delta) * 100:.1f} points {direction} accurate than the "
            f"plain one, beyond noise (exact McNemar test on the same {test['n']} test "
            f"images, p = {test['p_value']:.3g} < {alpha})."
        )
    return {
        "test": "mcnemar_exact",
        "alpha": float(alpha),
        "se_minus_baseline": float(delta),
        "only_baseline": test["only_a"],
        "only_se": test["only_b"],
        "p_value": test["p_value"],
        "within_noise": bool(within),
        "verdict": verdict,
    }


def _model_metrics(trained: dict[str, _Trained], correct: dict[str, np.ndarray]) -> dict:
    return {
        name: {
            "test_accuracy": float(run.metrics["test_accuracy"]),
            "test_accuracy_ci95": list(
                wilson_interval(int(correct[name].sum()), len(correct[name]))
            ),
            "test_images": len(correct[name]),
            "params": count_params(run.model),
            "macro_f1": float(run.metrics["macro_f1"]),
            "epochs": int(run.metrics["epochs_run"]),
            "train_seconds": float(run.metrics.get("train_seconds", 0.0)),
            "run_dir": os.fspath(Path("runs") / name),
        }
        for name, run in trained.items()
    }


def _focus_metrics(focus: _Focus, selection: dict[str, Any], test_images: int) -> dict:
    """metrics.json's ``focus``, ``focus_gradxact`` and ``explain`` entries."""
    return {
        "focus": {
            name: {
                "energy_in_parts": float(score["energy_in_parts"]),
                "area_fraction": float(score["area_fraction"]),
                "ratio": float(score["ratio"]),
                "energy_by_part": {part: float(v) for part, v in focus.per_part[name].items()},
            }
            for name, score in focus.scores.items()
        },
        "focus_gradxact": {
            name: {key: float(score[key]) for key in ("energy_in_parts", "area_fraction", "ratio")}
            for name, score in focus.gradxact.items()
        },
        "explain": {
            "method": selection["method"],
            "layer": selection["layer"],
            "steps": FOCUS_STEPS,
            "selection": selection,
            "parts": list(PARTS),
            "test_images": test_images,
        },
    }


def _setup_metrics(
    config: TrainConfig,
    sets: dict[str, ImageSet],
    trained: dict[str, _Trained],
    quick: bool,
    seed: int,
    difficulty: str,
    seconds: float,
    jobs: int,
) -> dict[str, Any]:
    return {
        "quick": quick,
        "seed": seed,
        "difficulty": difficulty,
        "synthetic_size": config.synthetic_size,
        "splits": {split: len(sets[split]) for split in ("train", "val", "test")},
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "learning_rate": config.learning_rate,
        "optimizer": config.optimizer,
        "augment": config.augment,
        "runs": {name: run.how for name, run in trained.items()},
        "jobs": jobs,
        "seconds": round(seconds, 1),
        "machine": machine_info(),
    }


# --------------------------------------------------------------------------- report


def _report_sections(metrics: dict[str, Any], paths: dict[str, Path]) -> list[Section]:
    """The report's sections, from metrics.json's content and the figure paths."""
    return [
        Section("Setup", _setup_blocks(metrics["setup"])),
        Section("Accuracy and cost", _accuracy_blocks(metrics, paths)),
        Section("Where the models look", _focus_blocks(metrics, paths)),
        Section("SE gates per class", _excitation_blocks(metrics["excitation"], paths)),
    ]


def _setup_blocks(setup: dict[str, Any]) -> list:
    machine, splits = setup["machine"], setup["splits"]
    runs_done = ", ".join(f"{name} {how}" for name, how in setup["runs"].items())
    blocks: list = [
        f"Synthetic grey 48x48 cartoon faces ({setup.get('difficulty', 'easy')} setting) in "
        "FER2013's seven classes; the class is drawn "
        "only into the eyes, brows and mouth, everything else (position, scale, tilt, skin, "
        "hair, clutter, lighting, noise"
        + (", occluders" if setup.get("difficulty") == "hard" else "")
        + ") is random. A plain emotion CNN and the same CNN with "
        "an SE block after each of its four conv blocks were trained with the same seed, "
        "data, order and budget (Adam, constant learning rate, random flips, shifts and "
        "brightness/contrast changes), each as a "
        "resumable run directory under `runs/`.",
        Table(
            ["setting", "value"],
            [
                [
                    "images (train / val / test)",
                    f"{splits['train']} / {splits['val']} / {splits['test']}",
                ],
                ["epochs, batch size", f"{setup['epochs']}, {setup['batch_size']}"],
                ["optimizer, learning rate", f"{setup['optimizer']}, {setup['learning_rate']}"],
                ["seed (data, split, weights, order)", str(setup["seed"])],
                ["runs", runs_done],
                [
                    "machine",
                    f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores "
                    f"(load average at the end: {machine.get('load_average', '?')})",
                ],
                [
                    "software",
                    f"Python {machine.get('python', '?')}, Keras {machine.get('keras', '?')} "
                    f"({machine.get('backend', '?')})",
                ],
                ["date", str(machine.get("date", "?"))],
                ["time taken (whole demo)", f"{setup['seconds']:.0f} s"],
            ],
        ),
    ]
    if setup["quick"]:
        blocks.insert(
            0,
            "**Quick smoke run**: too little data and training for its numbers to mean anything.",
        )
    return blocks


def _accuracy_verdict(metrics: dict[str, Any]) -> str:
    models, comparison = metrics["models"], metrics["comparison"]
    base, se = models["baseline"], models["se"]
    intervals = " and ".join(
        f"{_TITLES[name]} {models[name]['test_accuracy']:.3f} "
        f"(95% CI {models[name]['test_accuracy_ci95'][0]:.3f}-"
        f"{models[name]['test_accuracy_ci95'][1]:.3f})"
        for name in ("baseline", "se")
    )
    return (
        f"Test accuracy: {intervals}, Wilson intervals over the {base['test_images']} test "
        f"images. {comparison['verdict']} Rule: a difference counts only when the exact "
        f"McNemar test on the images exactly one model gets right ({comparison['only_baseline']}"
        f" only plain, {comparison['only_se']} only SE) gives p < {comparison['alpha']}. "
        f"The SE model has {se['params'] - base['params']:,} more parameters. One seed: the "
        "interval covers test-set sampling, not training randomness. The numbers are "
        "reported as measured, not tuned."
    )


def _accuracy_blocks(metrics: dict[str, Any], paths: dict[str, Path]) -> list:
    models = metrics["models"]
    base, se = models["baseline"], models["se"]
    rows = [
        [
            _TITLES[name],
            _fmt(models[name]["test_accuracy"], 4),
            "{:.3f}-{:.3f}".format(*models[name]["test_accuracy_ci95"]),
            _fmt(models[name]["macro_f1"], 4),
            f"{models[name]['params']:,}",
            f"{models[name]['train_seconds']:.0f} s",
        ]
        for name in ("baseline", "se")
    ]
    rows.append(
        [
            "SE - plain",
            f"{se['test_accuracy'] - base['test_accuracy']:+.4f}",
            f"McNemar p = {metrics['comparison']['p_value']:.3g}",
            f"{se['macro_f1'] - base['macro_f1']:+.4f}",
            f"{se['params'] - base['params']:+,}",
            "",
        ]
    )
    return [
        Table(
            [
                "model",
                "test accuracy",
                "95% CI",
                "macro F1",
                "parameters",
                "training time (epochs)",
            ],
            rows,
            caption=(
                "Parameters count every weight (BatchNorm statistics included). Training "
                "times are wall-clock on a CPU shared with other work: not a speed comparison."
            ),
        ),
        _accuracy_verdict(metrics),
        Image(paths["curves_baseline"], "Training curves of the plain CNN."),
        Image(paths["curves_se"], "Training curves of the SE CNN."),
        Image(paths["confusion_baseline"], "Test confusion matrix of the plain CNN."),
        Image(paths["confusion_se"], "Test confusion matrix of the SE CNN."),
    ]


def _focus_rows(focus: dict[str, dict]) -> list[list[str]]:
    rows = []
    for name, label in (
        ("baseline", _TITLES["baseline"]),
        ("se", _TITLES["se"]),
        ("image_blind", "image-blind (mean part mask of the training set)"),
    ):
        score = focus[name]
        rows.append(
            [
                label,
                _fmt(score["energy_in_parts"]),
                _fmt(score["area_fraction"]),
                f"{score['ratio']:.2f}x",
                *(_fmt(score["energy_by_part"][part]) for part in PARTS),
            ]
        )
    return rows


def _focus_interpretation(focus: dict[str, dict]) -> str:
    se_focus, blind, base = focus["se"], focus["image_blind"], focus["baseline"]
    blind_ratio = se_focus["energy_in_parts"] / blind["energy_in_parts"]
    base_blind = base["energy_in_parts"] / blind["energy_in_parts"]
    text = (
        f"The parts cover {se_focus['area_fraction']:.1%} of each image on average, so a map "
        f"spread evenly would put {se_focus['area_fraction']:.1%} of its energy on them. "
        f"The SE model puts {se_focus['energy_in_parts']:.1%} there, {se_focus['ratio']:.1f}x "
        f"chance and {blind_ratio:.2f}x the image-blind map, which knows where parts usually "
        f"are but not where they are in this image ({blind['energy_in_parts']:.1%}); the plain "
        f"model puts {base['energy_in_parts']:.1%} ({base_blind:.2f}x the "
        "image-blind map). "
    )
    gap = se_focus["energy_in_parts"] - base["energy_in_parts"]
    if abs(gap) < 0.02:
        text += (
            f"SE and plain maps are about equally focused ({gap * 100:+.1f} points for SE): "
            "with one seed this is no evidence that SE looks better. "
        )
    else:
        text += (
            f"The SE model's maps put {abs(gap) * 100:.1f} points "
            f"{'more' if gap > 0 else 'less'} energy on the parts than the plain model's "
            "(one seed). "
        )
    if se_focus["ratio"] >= 3 and blind_ratio >= 2:
        return text + (
            "The SE model's evidence follows the parts of each face, not just the average face."
        )
    return text + (
        "The SE model does **not** reach the acceptance bar here (3x chance and 2x the "
        "image-blind map)."
    )


def _selection_rows(selection: dict[str, Any]) -> list[list[str]]:
    rows = []
    for candidate in selection["candidates"]:
        scores = candidate["models"]
        chosen = (candidate["method"], candidate["layer"]) == (
            selection["method"],
            selection["layer"],
        )
        rows.append(
            [
                f"**{candidate['method']}**" if chosen else candidate["method"],
                candidate["layer"],
                *(
                    f"{scores[name]['trained']:.3f} ({scores[name]['randomized']:.3f})"
                    for name in ("baseline", "se")
                ),
                "pass" if candidate["passes"] else "fail",
                f"{candidate['deletion_auc']:.3f}",
            ]
        )
    return rows


def _focus_blocks(metrics: dict[str, Any], paths: dict[str, Path]) -> list:
    explain, gradxact = metrics["explain"], metrics["focus_gradxact"]
    selection = explain["selection"]
    return [
        f"Heatmaps: `{explain['method']}` at layer `{explain['layer']}`, the same method and "
        "layer for both models, chosen by a rule fixed before any number was seen "
        "(`senet.explain.choose_explanation`), on "
        f"{selection['validation_images']} validation faces, never the test split: "
        f"{selection['rule']}. "
        + (
            "Every candidate is in the table below."
            if selection["passed"]
            else "**No candidate passed the sanity check**: the chosen maps may measure the "
            "image rather than the model."
        ),
        Table(
            [
                "method",
                "layer",
                "focus plain (random)",
                "focus SE (random)",
                "sanity",
                "deletion AUC",
            ],
            _selection_rows(selection),
            caption=(
                "focus: share of heatmap energy on the parts on validation faces, trained "
                "model and (in brackets) the same model with re-initialised weights; a "
                "method whose focus survives random weights measures the image, not the "
                "model (Adebayo et al., 2018). Deletion AUC: mean class probability as the "
                "most-attributed pixels are removed, lower is more faithful."
            ),
        ),
        Image(
            paths["heatmaps"],
            "One test face per class: the image with its true class, then per model the "
            "heatmap (title: predicted class, green when right, red when wrong) and its "
            "overlay on the face; last, the part masks the focus score counts as the target.",
        ),
        "Focus: the share of each heatmap's energy inside the part masks (eyes, brows and "
        f"mouth as drawn), averaged over the {explain['test_images']} test images.",
        Table(
            ["heatmap", "energy in parts", "area fraction", "ratio", *PARTS],
            _focus_rows(metrics["focus"]),
            caption=(
                "energy in parts: mean of sum(heatmap x mask) / sum(heatmap); area fraction: "
                "mean share of the image the parts cover (chance level); ratio: their quotient; "
                "eyes / brows / mouth: energy inside each part alone."
            ),
        ),
        _focus_interpretation(metrics["focus"]),
        (
            f"With plain gradient x activation at the same layer the shares are "
            f"{gradxact['baseline']['energy_in_parts']:.1%} (plain) and "
            f"{gradxact['se']['energy_in_parts']:.1%} (SE): the single-step "
            "gradient is noisier (one slope at the image instead of the path's average)."
        ),
    ]


def _excitation_blocks(excitation: dict[str, dict], paths: dict[str, Path]) -> list:
    depth_rows = [
        [depth, f"`{entry['layer']}`", _fmt(entry["class_specificity"])]
        for depth, entry in excitation.items()
    ]
    blocks: list = [
        "The SE model's gates (excitations, one per channel) averaged over the test images "
        "of each class, at an early, a middle and the last SE block, as in figure 6 of the "
        "SENet paper. Class specificity: the root-mean-square gate difference between two "
        "classes' profiles, averaged over all pairs (0: every class gets the same gates).",
        Table(["depth", "SE layer", "class specificity"], depth_rows),
        Image(paths["profiles"], "Mean excitation per class and channel of the SE model."),
    ]
    specificities = [entry["class_specificity"] for entry in excitation.values()]
    if len(specificities) > 1 and specificities[-1] > specificities[0]:
        blocks.append(
            "As in the paper, the gates grow more class-specific with depth: early blocks "
            "recalibrate channels much the same way for every class."
        )
    elif len(specificities) > 1:
        blocks.append(
            "Unlike the paper's ImageNet models, the gates do not grow more class-specific "
            "with depth here."
        )
    return blocks
