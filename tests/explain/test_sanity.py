"""Model-randomisation sanity check, deletion curves and the method-choosing rule, on a tiny
model trained in the test where one small square decides the class."""

import keras
import numpy as np
import pytest

from senet.explain import (
    cascade_layers,
    choose_explanation,
    deletion_auc,
    deletion_curve,
    focus_score,
    grad_cam,
    pick_explanation,
    randomize_model,
    sanity_check,
)

SIZE = 16


def _squares(n, seed):
    """Noise images with one 4x4 square: white for class 1, black for class 0."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.3, 0.7, (n, SIZE, SIZE, 1)).astype("float32")
    y = rng.integers(0, 2, n)
    masks = np.zeros((n, SIZE, SIZE), bool)
    for i in range(n):
        row, col = rng.integers(0, SIZE - 4, 2)
        masks[i, row : row + 4, col : col + 4] = True
        x[i, row : row + 4, col : col + 4, 0] = float(y[i])
    return x, y, masks


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(0)
    x, y, masks = _squares(560, seed=0)
    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 1)),
            layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1"),
            layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2"),
            layers.GlobalAveragePooling2D(name="pool"),
            layers.Dense(2, activation="softmax", name="predictions"),
        ]
    )
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(x[:500], y[:500], epochs=10, batch_size=32, verbose=0)
    held_out = (x[500:], y[500:], masks[500:])
    accuracy = float((model.predict(held_out[0], verbose=0).argmax(1) == held_out[1]).mean())
    assert accuracy > 0.9, accuracy  # the test needs a model that learned the square
    return model, held_out


@pytest.mark.parametrize("method", ["gradcam", "intgrad"])
def test_randomised_model_loses_the_focus(trained, method):
    """Acceptance: the randomised model's maps point at the square clearly less."""
    model, (x, _, masks) = trained
    result = sanity_check(model, x, masks, method=method, layer="conv2", steps=4)
    trained_energy = result["trained"]["energy_in_parts"]
    random_energy = result["randomized"]["energy_in_parts"]
    chance = result["trained"]["area_fraction"]
    assert trained_energy > 2 * chance, result
    assert random_energy < trained_energy - 0.5 * (trained_energy - chance), result
    assert result["passes"] is True
    assert result["drop"] == pytest.approx(trained_energy - random_energy)
    # the scores are focus_score of the maps, independently recomputed
    classes = model.predict(x, verbose=0).argmax(1)
    maps = grad_cam(model, x, layer="conv2", method=method, class_index=classes, steps=4)
    assert focus_score(maps, masks)["energy_in_parts"] == pytest.approx(trained_energy)


def test_randomize_model_copies_and_leaves_the_original_alone(trained):
    model, (x, _, _) = trained
    before = [w.copy() for w in model.get_weights()]
    random = randomize_model(model, seed=1)
    assert random is not model
    assert [layer.name for layer in random.layers] == [layer.name for layer in model.layers]
    for old, new in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)
    kernels = [(model.get_layer(n).kernel, random.get_layer(n).kernel) for n in ("conv1", "conv2")]
    for old, new in kernels:
        assert not np.allclose(keras.ops.convert_to_numpy(old), keras.ops.convert_to_numpy(new))
    # the same seed draws the same random model
    again = randomize_model(model, seed=1)
    for a, b in zip(random.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_cascading_randomisation_keeps_the_layers_below(trained):
    model, _ = trained
    assert cascade_layers(model) == ["predictions", "conv2", "conv1"]
    random = randomize_model(model, from_layer="conv2", seed=2)
    for a, b in zip(
        model.get_layer("conv1").get_weights(), random.get_layer("conv1").get_weights(), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    for name in ("conv2", "predictions"):
        old = model.get_layer(name).get_weights()[0]
        assert not np.allclose(old, random.get_layer(name).get_weights()[0]), name
    with pytest.raises(ValueError, match="`from_layer` must be"):
        randomize_model(model, from_layer="nope")


def _naive_deletion(model, x, heatmaps, classes, steps, seed):
    """Pixel-by-pixel reference: sort each map (random tie order), blank the top share."""
    count, height, width = heatmaps.shape
    ties = np.random.default_rng(seed).random((count, height * width))
    curve = []
    for step in range(steps + 1):
        k = int(round(step / steps * height * width))
        batch = x.copy()
        for i in range(count):
            keys = sorted(range(height * width), key=lambda p: (-heatmaps[i].flat[p], ties[i, p]))
            for p in keys[:k]:
                batch[i, p // width, p % width, :] = x[i].mean()
        probabilities = keras.ops.convert_to_numpy(model(batch, training=False))
        curve.append(probabilities[np.arange(count), classes].mean())
    return np.asarray(curve)


def test_deletion_curve_against_a_naive_reference(trained):
    model, (x, _, masks) = trained
    x = x[:6]
    rng = np.random.default_rng(3)
    heatmaps = np.round(rng.random((6, SIZE, SIZE)), 1)  # many ties
    classes = np.array([0, 1, 1, 0, 1, 0])
    fractions, curve = deletion_curve(model, x, heatmaps, class_index=classes, steps=4, seed=5)
    np.testing.assert_allclose(fractions, [0, 0.25, 0.5, 0.75, 1.0])
    expected = _naive_deletion(model, x, heatmaps, classes, 4, 5)
    np.testing.assert_allclose(curve, expected, rtol=1e-5, atol=1e-6)
    auc = deletion_auc(model, x, heatmaps, class_index=classes, steps=4, seed=5)
    assert auc == pytest.approx(np.trapezoid(expected, fractions), rel=1e-6)


def test_a_map_on_the_evidence_deletes_faster_than_its_opposite(trained):
    model, (x, _, masks) = trained
    on_square = masks.astype(float)
    off_square = 1.0 - on_square
    assert deletion_auc(model, x, on_square) < deletion_auc(model, x, off_square)


def test_choose_explanation_follows_its_rule(trained):
    model, (x, _, masks) = trained
    choice = choose_explanation(
        {"tiny": model},
        x[:24],
        masks[:24],
        methods=("gradcam", "intgrad"),
        layers=("conv1", "conv2"),
        steps=4,
    )
    candidates = choice["candidates"]
    assert [(c["method"], c["layer"]) for c in candidates] == [
        ("gradcam", "conv1"),
        ("gradcam", "conv2"),
        ("intgrad", "conv1"),
        ("intgrad", "conv2"),
    ]
    passing = [c for c in candidates if c["passes"]]
    assert choice["passed"] is bool(passing)
    pool = passing or candidates
    best = min(pool, key=lambda c: c["deletion_auc"])
    assert (choice["method"], choice["layer"]) == (best["method"], best["layer"])
    for c in candidates:
        entry = c["models"]["tiny"]
        chance = entry["area_fraction"]
        excess = entry["trained"] - chance
        assert entry["passes"] == (
            excess > 0 and entry["trained"] - entry["randomized"] >= 0.25 * excess
        )
    with pytest.raises(ValueError, match="at least one candidate"):
        choose_explanation({"tiny": model}, x, masks, methods=(), layers=("conv2",))


def _entry(method, layer, auc, passes):
    return {
        "method": method,
        "layer": layer,
        "trained": 0.5,
        "randomized": 0.1 if passes else 0.5,
        "area_fraction": 0.2,
        "passes": passes,
        "deletion_auc": auc,
    }


def test_pick_explanation_applies_the_rule_to_numbers_from_each_model():
    # a: passes for both, mean AUC 0.30; b: lower mean AUC 0.20 but fails for "se";
    # c: passes, mean AUC 0.30 (a tie with a: the earlier candidate wins)
    scores = {
        "baseline": [_entry("m", "a", 0.2, True), _entry("m", "b", 0.1, True)]
        + [_entry("m", "c", 0.4, True)],
        "se": [_entry("m", "a", 0.4, True), _entry("m", "b", 0.3, False)]
        + [_entry("m", "c", 0.2, True)],
    }
    choice = pick_explanation(scores)
    assert (choice["method"], choice["layer"], choice["passed"]) == ("m", "a", True)
    by_layer = {c["layer"]: c for c in choice["candidates"]}
    assert by_layer["b"]["passes"] is False
    assert by_layer["b"]["deletion_auc"] == pytest.approx(0.2)
    assert by_layer["a"]["models"]["se"]["deletion_auc"] == 0.4

    # nothing passes: the lowest mean AUC among all, and it says so
    failing = {name: [dict(e, passes=False) for e in entries] for name, entries in scores.items()}
    choice = pick_explanation(failing)
    assert (choice["layer"], choice["passed"]) == ("b", False)

    with pytest.raises(ValueError, match="same"):
        pick_explanation({"baseline": scores["baseline"], "se": scores["se"][::-1]})
    with pytest.raises(ValueError, match="at least one model"):
        pick_explanation({})
