"""run_demo end to end (quick mode): metrics.json against independent recomputation, the
report's self-containment and links, and the reuse of finished runs."""

import base64
import json
import math
import re
from pathlib import Path

import keras
import numpy as np
import pytest

from senet.bench import count_params
from senet.data import load_dataset
from senet.demo import CANDIDATE_LAYERS, CANDIDATE_METHODS, PARTS, run_demo
from senet.explain import grad_cam
from senet.layers import load_model
from senet.train import TrainConfig

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    metrics = run_demo(out, quick=True, seed=0, verbose=False)
    return out, metrics


@pytest.fixture(scope="module")
def splits(demo):
    out, _ = demo
    config = TrainConfig.from_dict(json.loads((out / "runs/se/config.json").read_text()))
    return load_dataset(
        "synthetic",
        image_size=config.image_size,
        val_fraction=config.val_fraction,
        test_fraction=config.test_fraction,
        seed=config.split_seed,
        synthetic_size=config.synthetic_size,
    )


def _parts(masks) -> np.ndarray:
    return masks["eyes"] | masks["brows"] | masks["mouth"]


def test_metrics_json_schema_and_types(demo):
    out, metrics = demo
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    assert set(saved["models"]) == {"baseline", "se"}
    for entry in saved["models"].values():
        assert type(entry["test_accuracy"]) is float and 0.0 <= entry["test_accuracy"] <= 1.0
        assert type(entry["params"]) is int and entry["params"] > 0
    assert set(saved["focus"]) == {"baseline", "se", "image_blind"}
    for entry in saved["focus"].values():
        for key in ("energy_in_parts", "area_fraction"):
            assert type(entry[key]) is float and 0.0 <= entry[key] <= 1.0
    assert saved["setup"]["quick"] is True
    for name in ("report.html", "report.md", "metrics.json"):
        assert (out / name).is_file()


def test_params_are_those_of_the_saved_models(demo):
    out, metrics = demo
    for name in ("baseline", "se"):
        model = load_model(out / "runs" / name / "model.keras")
        assert metrics["models"][name]["params"] == count_params(model)
    # the SE blocks alone: 2*C*h + h + C per block, h = C // 8, C in (16, 32, 64, 128)
    extra = sum(2 * c * (c // 8) + c // 8 + c for c in (16, 32, 64, 128))
    assert metrics["models"]["se"]["params"] - metrics["models"]["baseline"]["params"] == extra


def test_accuracies_match_a_reevaluation_on_the_regenerated_test_split(demo, splits):
    out, metrics = demo
    test = splits["test"]
    for name in ("baseline", "se"):
        model = load_model(out / "runs" / name / "model.keras")
        probabilities = keras.ops.convert_to_numpy(model(test.x, training=False))
        accuracy = float(np.mean(probabilities.argmax(axis=1) == test.y))
        assert metrics["models"][name]["test_accuracy"] == pytest.approx(accuracy, abs=1e-9)


def _energy(heatmaps, masks):
    """Mean over images of sum(heatmap * mask) / sum(heatmap); an all-zero map counts at
    its mask's area share (chance)."""
    heatmaps = np.broadcast_to(heatmaps, masks.shape).astype(np.float64)
    inside = (heatmaps * masks).sum(axis=(1, 2))
    total = heatmaps.sum(axis=(1, 2))
    return float(
        np.mean(np.where(total > 0, inside / np.maximum(total, 1e-30), masks.mean((1, 2))))
    )


def test_focus_scores_against_numpy(demo, splits):
    out, metrics = demo
    test = splits["test"]
    test_parts = _parts(test.masks)
    area = float(test_parts.mean())
    # image-blind: the training set's mean part mask as every test image's heatmap
    blind = _parts(splits["train"].masks).mean(axis=0)
    # the models' heatmaps with the method, layer and steps the report names
    explain = metrics["explain"]
    assert explain["test_images"] == len(test)
    heatmaps = {"image_blind": blind}
    for name in ("baseline", "se"):
        model = load_model(out / "runs" / name / "model.keras")
        heatmaps[name] = grad_cam(
            model, test.x, layer=explain["layer"], method=explain["method"], steps=explain["steps"]
        )
        assert heatmaps[name].max() > 0  # a real map, not an all-zero one scored at chance
    for name, maps in heatmaps.items():
        focus = metrics["focus"][name]
        energy = _energy(maps, test_parts)
        assert focus["area_fraction"] == pytest.approx(area, rel=1e-9)
        assert focus["energy_in_parts"] == pytest.approx(energy, rel=1e-4), name
        assert focus["ratio"] == pytest.approx(energy / area, rel=1e-4), name
        # each part alone, against its own mask
        assert set(focus["energy_by_part"]) == set(PARTS)
        for part in PARTS:
            expected = _energy(maps, test.masks[part])
            assert focus["energy_by_part"][part] == pytest.approx(expected, rel=1e-4), (name, part)
        # the union's energy is at most the sum of its parts' (heatmaps are non-negative)
        assert focus["energy_in_parts"] <= sum(focus["energy_by_part"].values()) + 1e-9
    # the one-step comparison method at the same layer
    for name in ("baseline", "se"):
        model = load_model(out / "runs" / name / "model.keras")
        local = grad_cam(model, test.x, layer=explain["layer"], method="gradxact")
        expected = _energy(local, test_parts)
        assert metrics["focus_gradxact"][name]["energy_in_parts"] == pytest.approx(
            expected, rel=1e-4
        )


def test_intervals_and_the_noise_verdict_against_recomputation(demo, splits):
    out, metrics = demo
    test = splits["test"]
    correct = {}
    for name in ("baseline", "se"):
        model = load_model(out / "runs" / name / "model.keras")
        predicted = keras.ops.convert_to_numpy(model(test.x, training=False)).argmax(axis=1)
        correct[name] = predicted == test.y
        # Wilson 95% interval of the accuracy on the test images, by hand
        n, p, z = len(test), correct[name].mean(), 1.959963984540054
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        low, high = metrics["models"][name]["test_accuracy_ci95"]
        assert low == pytest.approx(max(0.0, centre - half), abs=1e-9)
        assert high == pytest.approx(min(1.0, centre + half), abs=1e-9)
        assert metrics["models"][name]["test_images"] == n
    comparison = metrics["comparison"]
    only_base = int(np.sum(correct["baseline"] & ~correct["se"]))
    only_se = int(np.sum(~correct["baseline"] & correct["se"]))
    assert (comparison["only_baseline"], comparison["only_se"]) == (only_base, only_se)
    discordant = only_base + only_se
    tail = sum(math.comb(discordant, k) for k in range(min(only_base, only_se) + 1))
    p_value = min(1.0, 2 * tail / 2**discordant) if discordant else 1.0
    assert comparison["p_value"] == pytest.approx(p_value)
    assert comparison["within_noise"] is (p_value >= 0.05)
    assert comparison["se_minus_baseline"] == pytest.approx(
        metrics["models"]["se"]["test_accuracy"] - metrics["models"]["baseline"]["test_accuracy"]
    )
    assert comparison["verdict"] in (out / "report.md").read_text(encoding="utf-8")


def test_method_and_layer_follow_the_selection_rule(demo):
    _, metrics = demo
    explain = metrics["explain"]
    selection = explain["selection"]
    candidates = selection["candidates"]
    # every method at the last candidate layer (the full demo: x every candidate layer)
    assert [(c["method"], c["layer"]) for c in candidates] == [
        (method, CANDIDATE_LAYERS[-1]) for method in CANDIDATE_METHODS
    ]
    assert len(CANDIDATE_METHODS) == 4 and len(CANDIDATE_LAYERS) == 3
    passing = [c for c in candidates if c["passes"]]
    assert selection["passed"] is bool(passing)
    best = min(passing or candidates, key=lambda c: c["deletion_auc"])
    assert (explain["method"], explain["layer"]) == (best["method"], best["layer"])
    for candidate in candidates:
        assert set(candidate["models"]) == {"baseline", "se"}
        assert candidate["passes"] is all(m["passes"] for m in candidate["models"].values())
        assert candidate["deletion_auc"] == pytest.approx(
            np.mean([m["deletion_auc"] for m in candidate["models"].values()])
        )
    assert 0 < selection["validation_images"] <= metrics["setup"]["splits"]["val"]


def test_report_html_is_self_contained_and_embeds_every_figure(demo):
    out, _ = demo
    page = (out / "report.html").read_text(encoding="utf-8")
    links = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", page, flags=re.IGNORECASE)
    assert links, "expected embedded images"
    assert all(link.startswith("data:") for link in links), [link[:40] for link in links]
    assert "<script" not in page.lower() and "@import" not in page
    figures = sorted((out / "figures").glob("*.png"))
    assert len(figures) >= 6
    for figure in figures:
        encoded = base64.b64encode(figure.read_bytes()).decode("ascii")
        assert f"data:image/png;base64,{encoded}" in page, figure.name
    for heading in ("Setup", "Accuracy and cost", "Where the models look", "SE gates per class"):
        assert f"<h2>{heading}</h2>" in page


def test_report_md_references_existing_files(demo):
    out, metrics = demo
    text = (out / "report.md").read_text(encoding="utf-8")
    targets = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert {Path(target).name for target in targets} == {
        path.name for path in (out / "figures").glob("*.png")
    }
    for target in targets:
        assert not Path(target).is_absolute()
        assert (out / target).is_file(), target
    assert f"{metrics['models']['se']['test_accuracy']:.4f}" in text
    assert metrics["explain"]["layer"] in text and metrics["explain"]["method"] in text


def test_figures_are_readable_pngs(demo):
    out, _ = demo
    for figure in (out / "figures").glob("*.png"):
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert figure.stat().st_size > 10_000, figure.name


def test_rerun_reuses_finished_runs_and_resumes_an_unfinished_one(demo):
    out, metrics = demo
    models = {name: out / "runs" / name / "model.keras" for name in ("baseline", "se")}
    before = {name: path.stat().st_mtime_ns for name, path in models.items()}

    # One rerun shows both cases: the baseline run is finished and reused as it is; the SE
    # run was killed after its last epoch but before its final files, and is resumed, not
    # redone. The fixture ran both models in worker processes; this rerun works in this one.
    (out / "runs/se/metrics.json").unlink()
    again = run_demo(out, quick=True, seed=0, verbose=False, jobs=1)
    assert again["setup"]["jobs"] == 1
    assert models["baseline"].stat().st_mtime_ns == before["baseline"]
    assert again["setup"]["runs"]["baseline"] == "reused"
    assert again["models"]["baseline"] == metrics["models"]["baseline"]
    assert again["setup"]["runs"]["se"].startswith("resumed after epoch")
    assert again["models"]["se"]["test_accuracy"] == metrics["models"]["se"]["test_accuracy"]
    # the same models give the same heatmap choice and the same focus scores, up to the
    # float rounding of one TensorFlow thread (the workers) against two (this process)
    for key in ("method", "layer", "steps"):
        assert again["explain"][key] == metrics["explain"][key]
    assert again["focus"].keys() == metrics["focus"].keys()
    for name, focus in metrics["focus"].items():
        assert again["focus"][name]["energy_in_parts"] == pytest.approx(
            focus["energy_in_parts"], rel=1e-5
        )


def test_rejects_a_run_dir_of_another_configuration(tmp_path, demo):
    out, _ = demo
    config = json.loads((out / "runs/baseline/config.json").read_text())
    config["epochs"] += 5
    target = tmp_path / "runs" / "baseline"
    target.mkdir(parents=True)
    (target / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="another configuration"):
        run_demo(tmp_path, quick=True, verbose=False)


def test_rejects_a_bad_seed(tmp_path):
    with pytest.raises(ValueError, match="seed"):
        run_demo(tmp_path, seed=-1, verbose=False)


def test_rejects_a_bad_jobs_count(tmp_path):
    with pytest.raises(ValueError, match="jobs"):
        run_demo(tmp_path, jobs=0, verbose=False)
