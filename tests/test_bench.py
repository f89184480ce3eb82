"""senet.bench: analytic FLOPs against hand counts, parameter counts, latency result structure,
and the JSON schema of `senet bench`."""

import importlib.util
import json
import math

import keras
import numpy as np
import pytest

from senet.bench import (
    count_flops,
    count_params,
    latency_ab,
    latency_interleaved,
    machine_info,
    time_interleaved,
)
from senet.layers import SqueezeExcite


def _tiny_model():
    """8x8x3 -> conv3x3(4, bias) -> BN -> ReLU -> +conv1x1(4, no bias) -> maxpool2 -> SE(r=2)
    -> GAP -> Dense(5)."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    y = keras.layers.Conv2D(4, 1, use_bias=False, name="pointwise")(x)
    x = keras.layers.Add(name="add")([x, y])
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = SqueezeExcite(reduction=2, name="se")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(5, name="dense")(x)
    return keras.Model(inputs, outputs)


# Hand counts for one sample (a multiply-add is 2 FLOPs, other element ops 1).
_HAND = {
    "conv": 2 * (8 * 8 * 4) * (3 * 3 * 3) + 8 * 8 * 4,  # MACs x2 + bias
    "bn": 2 * 8 * 8 * 4,
    "relu": 8 * 8 * 4,
    "pointwise": 2 * (8 * 8 * 4) * 4,
    "add": 8 * 8 * 4,
    "pool": (4 * 4 * 4) * 4,  # 2x2 window per output
    # pool 64 + MLP 2*(4*2 + 2*4) + biases (2 + 4) + activations (2 + 4) + scale 64
    "se": 64 + 32 + 6 + 6 + 64,
    "gap": 4 * 4 * 4,
    "dense": 2 * 4 * 5 + 5,
}
_HAND_MACS = (8 * 8 * 4) * 27 + (8 * 8 * 4) * 4 + (4 * 2 + 2 * 4) + 4 * 5


def test_count_flops_matches_hand_count_per_layer():
    model = _tiny_model()
    by_layer = count_flops(model, by_layer=True)
    assert {k: v for k, v in by_layer.items() if v} == _HAND
    assert count_flops(model) == sum(_HAND.values())


def test_count_flops_scales_with_batch_and_counts_macs():
    model = _tiny_model()
    assert count_flops(model, batch=3) == 3 * sum(_HAND.values())
    assert count_flops(model, macs_only=True) == _HAND_MACS
    assert count_flops(model, batch=2, macs_only=True) == 2 * _HAND_MACS


@pytest.mark.slow  # ResNet-50 graphs and timed runs
def test_count_flops_se_resnet50_adds_the_excitation_macs():
    from senet.models import resnet

    plain = resnet(50)
    se = resnet(50, attention="se", reduction=16)
    # torchvision lists ResNet-50 (v1.5) at 4.09 GFLOPS (multiply-adds).
    assert count_flops(plain, macs_only=True) == pytest.approx(4.09e9, rel=2e-3)
    # Each unit's MLP: 2 * C * C/16 multiply-adds, C = 256 (x3), 512 (x4), 1024 (x6), 2048 (x3).
    extra = sum(n * 2 * c * (c // 16) for c, n in ((256, 3), (512, 4), (1024, 6), (2048, 3)))
    assert count_flops(se, macs_only=True) - count_flops(plain, macs_only=True) == extra


# --------------------------------------------------------------------------- every kind


def _reference_graph(kind: str, shape, channels: int, hidden: int, kernel: int):
    """The computation of an attention ``kind`` (channels_last, 2-D) written with plain Keras
    layers, which count_flops counts on its own: an independent count for each kind."""
    h, w, c = shape
    inputs = keras.Input(shape)
    layers = keras.layers

    def se(x, pools=("avg",)):
        reduce, expand = layers.Dense(hidden, activation="relu"), layers.Dense(c)
        pooled = {"avg": layers.GlobalAveragePooling2D(), "max": layers.GlobalMaxPooling2D()}
        logits = [expand(reduce(pooled[mode](x))) for mode in pools]
        logits = logits[0] if len(logits) == 1 else layers.Add()(logits)
        gate = layers.Reshape((1, 1, c))(layers.Activation("sigmoid")(logits))
        return layers.Multiply()([x, gate])

    def sse(x):
        gate = layers.Activation("sigmoid")(layers.Conv2D(1, 1)(x))
        return layers.Multiply()([x, gate])

    def across_channels(x, pool):  # (B, H, W, C) -> the mean or max over C, (B, H, W, 1)
        flat = layers.Reshape((h * w, c))(x)
        return layers.Reshape((h, w, 1))(pool(data_format="channels_first")(flat))

    if kind == "se":
        outputs = se(inputs)
    elif kind == "eca":
        z = layers.Reshape((c, 1))(layers.GlobalAveragePooling2D()(inputs))
        z = layers.Conv1D(1, kernel, padding="same", use_bias=False)(z)
        gate = layers.Reshape((1, 1, c))(layers.Activation("sigmoid")(z))
        outputs = layers.Multiply()([inputs, gate])
    elif kind == "sse":
        outputs = sse(inputs)
    elif kind == "scse":
        outputs = layers.Add()([se(inputs), sse(inputs)])
    else:  # cbam
        refined = se(inputs, pools=("avg", "max"))
        pooled = [
            across_channels(refined, pool)
            for pool in (layers.GlobalAveragePooling1D, layers.GlobalMaxPooling1D)
        ]
        descriptor = layers.Concatenate()(pooled)
        gate = layers.Activation("sigmoid")(layers.Conv2D(1, kernel, padding="same")(descriptor))
        outputs = layers.Multiply()([refined, gate])
    return keras.Model(inputs, outputs)


# Hand counts for one (6, 5, 16) sample: 480 elements, C = 16 channels, P = 30 positions,
# h = 4 hidden units; a multiply-add is 2 FLOPs, every other element op 1.
_SE_HAND = 480 + (2 * 2 * 16 * 4 + 4 + 4 + 16 + 16) + 480  # pool, MLP+biases+ReLU+gate, scale
_SSE_HAND = 2 * 30 * 16 + 30 + 30 + 480  # 1x1 conv to one channel, bias, gate, scale
_KIND_HAND = {
    "se": _SE_HAND,
    "eca": 480 + 2 * 16 * 5 + 16 + 480,  # pool, k=5 conv across channels, gate, scale
    "sse": _SSE_HAND,
    "scse": _SE_HAND + _SSE_HAND + 480,  # both branches and their sum
    # channel gate: two pools, the MLP on both (+ biases, ReLU), their sum, gate, scale;
    # spatial gate: mean and max across channels, 3x3 conv of 2 channels to 1, bias, gate,
    # scale
    "cbam": (2 * 480 + 2 * (2 * 2 * 16 * 4 + 4 + 4 + 16) + 16 + 16 + 480)
    + (2 * 480 + 30 * (2 * 2 * 9) + 30 + 30 + 480),
}


@pytest.mark.parametrize(
    "kind,options,hidden,kernel",
    [
        ("se", {"reduction": 4}, 4, None),
        ("eca", {"kernel_size": 5}, None, 5),
        ("sse", {}, None, None),
        ("scse", {"reduction": 4}, 4, None),
        ("cbam", {"reduction": 4, "kernel_size": 3}, 4, 3),
    ],
)
def test_every_kind_counts_its_flops_like_its_plain_keras_graph(kind, options, hidden, kernel):
    from senet.layers import attention

    shape, channels = (6, 5, 16), 16
    inputs = keras.Input(shape)
    model = keras.Model(inputs, attention(kind, name="attn", **options)(inputs))
    reference = _reference_graph(kind, shape, channels, hidden, kernel)
    assert count_flops(model, by_layer=True)["attn"] == _KIND_HAND[kind]
    for batch in (1, 3):
        for macs_only in (False, True):
            counted = count_flops(model, batch, macs_only=macs_only, by_layer=True)["attn"]
            assert counted == count_flops(reference, batch, macs_only=macs_only) > 0
    # the same count with channels first
    first = keras.Input((channels, *shape[:2]))
    layer = attention(kind, data_format="channels_first", **options)
    assert count_flops(keras.Model(first, layer(first))) == count_flops(model)


def test_count_flops_warns_about_unknown_layers_and_needs_fixed_shapes():
    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda t: t * 2, name="double")(inputs)
    with pytest.warns(UserWarning, match="double"):
        assert count_flops(keras.Model(inputs, outputs)) == 0

    inputs = keras.Input((None, None, 3))
    outputs = keras.layers.Conv2D(2, 1)(inputs)
    with pytest.raises(ValueError, match="fully defined"):
        count_flops(keras.Model(inputs, outputs))
    with pytest.raises(ValueError, match="batch"):
        count_flops(_tiny_model(), batch=0)


def test_count_flops_sequential_and_nested():
    inner = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, name="d1")], name="inner")
    inputs = keras.Input((6,))
    outputs = keras.layers.Dense(2, name="d2")(inner(inputs))
    outer = keras.Model(inputs, outputs)
    assert count_flops(inner) == 2 * 6 * 3 + 3
    assert count_flops(outer) == (2 * 6 * 3 + 3) + (2 * 3 * 2 + 2)


def test_count_params_counts_every_weight():
    model = _tiny_model()
    expected = sum(math.prod(w.shape) for w in model.get_weights())
    assert count_params(model) == expected == model.count_params()


def _dense_model(units):
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(units)])


def test_latency_ab_structure():
    lines = []
    result = latency_ab(
        _dense_model(2),
        _dense_model(8),
        np.zeros((2, 4), "float32"),
        rounds=4,
        warmup=1,
        progress=lines.append,
    )
    assert len(result["a_times_ms"]) == len(result["b_times_ms"]) == 4
    assert all(t > 0 for t in result["a_times_ms"] + result["b_times_ms"])
    assert result["a_ms"] == pytest.approx(np.median(result["a_times_ms"]))
    assert result["b_ms"] == pytest.approx(np.median(result["b_times_ms"]))
    assert result["ratio"] == pytest.approx(result["b_ms"] / result["a_ms"])
    assert result["overhead_pct"] == pytest.approx(100 * (result["ratio"] - 1))
    paired = np.median(np.asarray(result["b_times_ms"]) / np.asarray(result["a_times_ms"]))
    assert result["paired_ratio"] == pytest.approx(paired)
    q1, q3 = result["a_iqr_ms"]
    assert q1 <= result["a_ms"] <= q3
    assert (result["batch"], result["rounds"], result["backend"]) == (2, 4, "tensorflow")
    assert lines and lines[-1].startswith("round 4/4")


def test_latency_interleaved_reference_and_validation():
    models = {"small": _dense_model(2), "mid": _dense_model(4), "big": _dense_model(8)}
    result = latency_interleaved(models, np.zeros((1, 4), "float32"), rounds=3, warmup=0)
    assert list(result) == ["small", "mid", "big"]
    assert result["small"]["ratio"] == pytest.approx(1.0)
    assert result["small"]["paired_ratio"] == pytest.approx(1.0)
    assert all(len(r["times_ms"]) == 3 for r in result.values())
    with pytest.raises(ValueError, match="rounds"):
        latency_interleaved(models, np.zeros((1, 4), "float32"), rounds=0)
    with pytest.raises(ValueError, match="models"):
        latency_interleaved({}, np.zeros((1, 4), "float32"))


def test_time_interleaved_rotates_the_start_and_counts_every_call():
    order = []
    runs = {name: (lambda name=name: order.append(name)) for name in "abc"}
    result = time_interleaved(runs, rounds=4, warmup=1, number=2)
    # warm-up a, b, c; then round i starts with name i mod 3, each timed sample 2 calls
    rounds = ["abc", "bca", "cab", "abc"]
    assert "".join(order) == "abc" + "".join(r[0] * 2 + r[1] * 2 + r[2] * 2 for r in rounds)
    assert list(result) == ["a", "b", "c"]
    assert all(len(r["times_ms"]) == 4 for r in result.values())
    for r in result.values():
        assert r["ms"] == pytest.approx(float(np.median(r["times_ms"])))
        assert r["iqr_ms"][0] <= r["ms"] <= r["iqr_ms"][1]
    with pytest.raises(ValueError, match="runs"):
        time_interleaved({})
    with pytest.raises(ValueError, match="number"):
        time_interleaved(runs, number=0)


def test_machine_info_fields():
    info = machine_info()
    assert {"cpu", "cores", "date", "keras", "backend", "tensorflow"} <= set(info)
    assert info["cores"] >= 1


# --------------------------------------------------------------------------- senet bench


def _check_timing(timing, batch):
    assert set(timing) == {"batch", "plain", "attention", "ratio", "paired_ratio", "overhead_pct"}
    assert timing["batch"] == batch
    for side in ("plain", "attention"):
        t = timing[side]
        assert set(t) == {"median_ms", "min_ms", "max_ms", "iqr_ms"}
        assert 0 < t["min_ms"] <= t["median_ms"] <= t["max_ms"] and len(t["iqr_ms"]) == 2
    ratio = timing["attention"]["median_ms"] / timing["plain"]["median_ms"]
    assert timing["ratio"] == pytest.approx(ratio)
    assert timing["overhead_pct"] == pytest.approx(100 * (ratio - 1))
    assert timing["paired_ratio"] > 0


def _check_bench_schema(result, batch_sizes, train_batch):
    """The documented schema of run_bench / `senet bench --json` (senet.bench/2)."""
    assert set(result) == {
        "schema", "model", "task", "attention", "reduction", "input_shape", "settings", "machine",
        "params", "flops", "inference", "inference_path", "train_step",
    }  # fmt: skip
    assert set(result["inference_path"]) == {"plain", "attention"}
    assert set(result["inference_path"].values()) <= {"fused", "as built"}
    assert result["schema"] == "senet.bench/2"
    assert set(result["settings"]) == {"rounds", "warmup", "batch_sizes", "train_batch_size"}
    assert result["settings"]["batch_sizes"] == list(batch_sizes)
    assert {"cpu", "cores", "date", "backend"} <= set(result["machine"])
    for key in ("params", "flops"):
        part = result[key]
        assert set(part) == {"plain", "attention", "overhead_pct"}
        assert isinstance(part["plain"], int) and isinstance(part["attention"], int)
        assert part["overhead_pct"] == pytest.approx(100 * (part["attention"] / part["plain"] - 1))
    assert [t["batch"] for t in result["inference"]] == list(batch_sizes)
    for timing, batch in zip(result["inference"], batch_sizes, strict=True):
        _check_timing(timing, batch)
    if train_batch is None:
        assert result["train_step"] is None
    else:
        _check_timing(result["train_step"], train_batch)


def _tiny_cnn_file(tmp_path, attention):
    from senet.models import emotion_cnn

    path = tmp_path / f"tiny_{attention}.keras"
    emotion_cnn((16, 16, 1), 3, attention=attention, widths=(4, 8)).save(path)
    return path


@pytest.mark.slow  # ResNet-50 graphs and timed runs
def test_senet_bench_json_schema_plain_file_gets_attention_inserted(tmp_path, capsys):
    from senet import cli

    model = _tiny_cnn_file(tmp_path, None)
    out = tmp_path / "bench.json"
    args = ["bench", str(model), "--batch-sizes", "1", "2", "--train-batch", "2"]
    args += ["--rounds", "2", "--warmup", "1", "--quiet", "--json", str(out)]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "parameters" in printed and "inference b=2" in printed and "train step b=2" in printed
    result = json.loads(out.read_text())
    _check_bench_schema(result, (1, 2), 2)
    plain = keras.saving.load_model(model)
    assert result["params"]["plain"] == count_params(plain)
    assert result["flops"]["plain"] == count_flops(plain)
    assert result["params"]["attention"] > result["params"]["plain"]
    assert result["input_shape"] == [16, 16, 1]
    # an existing file is refused in one line unless --overwrite
    assert cli.main(args) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_run_bench_file_with_attention_is_compared_without_it(tmp_path):
    from senet.bench import format_bench, run_bench
    from senet.models import emotion_cnn

    model = _tiny_cnn_file(tmp_path, "se")
    result = run_bench(model, batch_sizes=(1,), train_batch_size=None, rounds=1, warmup=0)
    _check_bench_schema(result, (1,), None)
    plain = emotion_cnn((16, 16, 1), 3, attention=None, widths=(4, 8))
    assert result["params"]["plain"] == count_params(plain)
    assert result["flops"]["plain"] == count_flops(plain)
    assert result["attention"] == "SqueezeExcite"
    assert "train step" not in format_bench(result)
    with pytest.raises(ValueError, match="`model` must be"):
        run_bench(str(tmp_path / "missing.keras"))


@pytest.mark.slow  # ResNet-50 graphs and timed runs
def test_run_bench_times_the_fused_path_like_for_like(monkeypatch):
    from senet.bench import format_bench, run_bench
    from senet.models import fused

    calls = []
    original = fused.fuse_for_inference

    def spy(model, **options):
        result = original(model, **options)
        calls.append((options, result[1]))
        return result

    monkeypatch.setattr(fused, "fuse_for_inference", spy)
    options = {"batch_sizes": (1,), "train_batch_size": None, "rounds": 1, "warmup": 0}
    result = run_bench("resnet20", **options)
    _check_bench_schema(result, (1,), None)
    # both models fused, the plain one's tails folded the same way
    assert calls == [({"fold_plain": True}, True)] * 2
    assert result["inference_path"] == {"plain": "fused", "attention": "fused"}
    assert "inference path: plain fused, se fused" in format_bench(result)
    calls.clear()
    as_built = run_bench("resnet20", fused=False, **options)
    assert calls == [] and as_built["inference_path"] == {
        "plain": "as built",
        "attention": "as built",
    }


def test_a_registered_kind_in_a_model_is_found_and_dropped(monkeypatch):
    """bench finds a model's attention layers by every registered kind's class (a
    package's too), not by a list of the built-in ones."""
    from senet.bench import _with_and_without
    from senet.layers import registry

    class Halve(keras.layers.Layer):
        def call(self, x):
            return x * 0.5

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    registry.register("halve", Halve)
    inputs = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(2, 3, padding="same")(inputs)
    outputs = keras.layers.GlobalAveragePooling2D()(Halve(name="block_halve")(x))
    model = keras.Model(inputs, outputs)
    plain, attended, found = _with_and_without(model, "se", {})
    assert found == "Halve" and attended is model
    assert not any(isinstance(layer, Halve) for layer in plain.layers)
    image = np.ones((1, 8, 8, 2), np.float32)
    np.testing.assert_allclose(plain(image), 2 * model(image), rtol=1e-6)


@pytest.mark.skipif(
    importlib.util.find_spec("keras_hub") is None, reason="keras-hub is not installed"
)
@pytest.mark.slow  # builds, times and trains two RetinaNets
def test_run_bench_takes_detectors_at_a_given_size():
    from senet.bench import run_bench
    from senet.models import resnet

    result = run_bench(
        "retinanet",
        task="detection",
        image_size=64,
        batch_sizes=(1,),
        train_batch_size=2,
        rounds=1,
        warmup=0,
    )
    assert result["task"] == "detection" and result["input_shape"] == [64, 64, 3]
    # SE adds its layers' parameters to the backbone and nothing else
    added = count_params(resnet(18, (64, 64, 3), include_top=False, attention="se"))
    added -= count_params(resnet(18, (64, 64, 3), include_top=False))
    assert result["params"]["attention"] - result["params"]["plain"] == added
    assert result["train_step"]["plain"]["median_ms"] > 0
    with pytest.raises(ValueError, match="image_size"):
        run_bench("retinanet", task="detection", image_size=8)
