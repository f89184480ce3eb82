"""The demo's report: its figures, ``metrics.json`` and the prose that reads the numbers
(accuracy with intervals and the McNemar test, where the models look, the SE gates per
class), said plainly whichever way they come out.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import keras
import numpy as np

from senet.bench import count_params, machine_info
from senet.data import ImageSet
from senet.demo.common import FOCUS_STEPS, PARTS, TITLES, Focus, Gates, Trained, fmt
from senet.explain import (
    heatmap_grid,
    profile_figure,
)
from senet.report import Image, Section, Table, plot_confusion, plot_curves
from senet.stats import NOISE_ALPHA, mcnemar_test, wilson_interval
from senet.train import TrainConfig


def training_figures(
    trained: dict[str, Trained], class_names: list[str], figures: Path
) -> dict[str, Path]:
    """Training curves and test confusion matrix of each model."""
    paths: dict[str, Path] = {}
    for name, run in trained.items():
        paths[f"curves_{name}"] = figures / f"curves_{name}.png"
        plot_curves(
            run.history,
            paths[f"curves_{name}"],
            title=f"Training curves: {TITLES[name]} ({len(run.history)} epochs)",
        )
        paths[f"confusion_{name}"] = figures / f"confusion_{name}.png"
        plot_confusion(
            run.metrics["confusion_matrix"],
            class_names,
            paths[f"confusion_{name}"],
            title=(
                f"{TITLES[name]}: test confusion matrix "
                f"(accuracy {run.metrics['test_accuracy']:.3f})"
            ),
        )
    return paths


def _grid_indices(labels: np.ndarray, count: int) -> np.ndarray:
    """The first test image of each class, in class order, up to ``count`` images."""
    picks = [int(np.flatnonzero(labels == k)[0]) for k in np.unique(labels)]
    return np.asarray(picks[:count], dtype=np.int64)


def heatmap_figure(
    models: dict[str, keras.Model],
    test_set: ImageSet,
    focus: Focus,
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


def gates_figure(gates: Gates, class_names: list[str], figures: Path) -> Path:
    path = figures / "se_profiles.png"
    # panel titles: "early (block1_se): mean excitation per class (specificity ...)"
    panels = {f"{depth} ({layer})": gates.profiles[layer] for depth, layer in gates.depths.items()}
    profile_figure(panels, class_names, list(panels), path)
    return path


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


def model_metrics(trained: dict[str, Trained], correct: dict[str, np.ndarray]) -> dict:
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


def focus_metrics(focus: Focus, selection: dict[str, Any], test_images: int) -> dict:
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


def setup_metrics(
    config: TrainConfig,
    sets: dict[str, ImageSet],
    trained: dict[str, Trained],
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


def report_sections(metrics: dict[str, Any], paths: dict[str, Path]) -> list[Section]:
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
        f"{TITLES[name]} {models[name]['test_accuracy']:.3f} "
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
            TITLES[name],
            fmt(models[name]["test_accuracy"], 4),
            "{:.3f}-{:.3f}".format(*models[name]["test_accuracy_ci95"]),
            fmt(models[name]["macro_f1"], 4),
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
        ("baseline", TITLES["baseline"]),
        ("se", TITLES["se"]),
        ("image_blind", "image-blind (mean part mask of the training set)"),
    ):
        score = focus[name]
        rows.append(
            [
                label,
                fmt(score["energy_in_parts"]),
                fmt(score["area_fraction"]),
                f"{score['ratio']:.2f}x",
                *(fmt(score["energy_by_part"][part]) for part in PARTS),
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
        [depth, f"`{entry['layer']}`", fmt(entry["class_specificity"])]
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
