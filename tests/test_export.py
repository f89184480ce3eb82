"""senet.export: SavedModel / TFLite / ONNX round trips checked against the Keras model, int8
(calibrated) with top-1 agreement, fused and insert_attention models, every attention kind,
and one-line errors (unsupported format, missing optional dependency, not a model, parity).

Reference outputs are the Keras models' own, computed here; the exported files are run with
``load_exported`` (TensorFlow, LiteRT, onnxruntime).
"""

import importlib.util
import os
import re
import sys

import keras
import numpy as np
import pytest

from senet import cli, export
from senet.data import synthetic_expressions
from senet.export import (
    EXTRA_HINT,
    ExportError,
    MissingDependencyError,
    ParityError,
    Tolerance,
    export_model,
    load_exported,
    parity,
    sample_inputs,
)
from senet.layers import SqueezeExcite
from senet.models import emotion_cnn, insert_attention, unet

OUT = {"savedmodel": "model", "tflite": "model.tflite", "onnx": "model.onnx"}
# ONNX needs the optional export extra; without it those tests say so instead of failing
needs_onnx = pytest.mark.skipif(
    not all(importlib.util.find_spec(name) for name in ("tf2onnx", "onnx", "onnxruntime")),
    reason=f"ONNX export needs the optional dependencies: {EXTRA_HINT}",
)
FORMATS = ["savedmodel", "tflite", pytest.param("onnx", marks=needs_onnx)]


def _reference(model, x):
    return np.asarray(model(x, training=False))


def _assert_round_trip(model, out, format, x, **options):
    result = export_model(model, out, format=format, samples=16, **options)
    assert result.path == str(out) and os.path.exists(out)
    assert result.format == format and result.quantize is None
    assert result.size_bytes > 0 and result.samples == 16
    assert result.max_abs_diff < 1e-4 and result.top1_agreement == 1.0
    exported = load_exported(out, allow_savedmodel=True)  # a file this test wrote
    assert exported.format == format
    assert exported.input_shape == (None, *model.input_shape[1:])
    # a dynamic batch: one sample, then several, against the Keras model directly
    for batch in (x[:1], x):
        np.testing.assert_allclose(exported(batch), _reference(model, batch), atol=1e-4)
    return result


@pytest.fixture(scope="module")
def se_cnn():
    keras.utils.set_random_seed(1)
    return emotion_cnn((32, 32, 1), widths=(8, 16), attention="se")


@pytest.fixture(scope="module")
def faces():
    return synthetic_expressions(5, image_size=32, seed=9)[0]


@pytest.mark.parametrize("format", FORMATS)
def test_se_emotion_cnn_round_trip(se_cnn, faces, tmp_path, format):
    _assert_round_trip(se_cnn, tmp_path / OUT[format], format, faces)
    assert [p.name for p in tmp_path.iterdir()] == [OUT[format]]  # no temporary left


@pytest.mark.slow
@pytest.mark.parametrize("format", FORMATS)
def test_scse_unet_round_trip(tmp_path, format):
    keras.utils.set_random_seed(2)
    model = unet((32, 32, 1), num_classes=3, attention="scse", depth=2, base_filters=4)
    x = np.random.default_rng(0).random((3, 32, 32, 1), dtype=np.float32)
    result = _assert_round_trip(model, tmp_path / OUT[format], format, x)
    exported = load_exported(tmp_path / OUT[format], allow_savedmodel=True)
    assert exported.output_shape == (None, 32, 32, 3)
    assert result.fused is False


def _small_se_resnet() -> keras.Model:
    """Two residual units with SE in the standard placement, BN statistics made non-trivial."""
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    for unit in range(2):
        h = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(x)
        h = keras.layers.ReLU()(keras.layers.BatchNormalization()(h))
        h = keras.layers.Conv2D(8, 3 if unit else 1, padding="same", use_bias=False)(h)
        h = keras.layers.BatchNormalization()(h)
        h = SqueezeExcite(reduction=4, name=f"unit{unit}_se")(h)
        x = keras.layers.ReLU()(keras.layers.Add()([x, h]))
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(5, activation="softmax")(x))
    rng = np.random.default_rng(3)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            channels = layer.moving_mean.shape
            layer.moving_mean.assign(rng.normal(0, 0.2, channels).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, channels).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.2, channels).astype("float32"))
    return model


@pytest.mark.parametrize("format", FORMATS)
def test_fused_model_round_trip(tmp_path, format):
    keras.utils.set_random_seed(3)
    model = _small_se_resnet()
    x = sample_inputs(model.input_shape, 4, seed=5)
    # fuse=True (the default) exports fuse_se(model); parity is against the unfused model
    result = _assert_round_trip(model, tmp_path / OUT[format], format, x)
    assert result.fused is True


@needs_onnx
def test_fuse_false_exports_the_model_as_it_is(tmp_path):
    model = _small_se_resnet()
    result = export_model(model, tmp_path / "m.onnx", format="onnx", fuse=False, samples=4)
    assert result.fused is False and result.max_abs_diff < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["eca", "sse", "cbam", "insert_attention"])
def test_every_attention_kind_and_insert_attention_to_tflite(tmp_path, faces, kind):
    keras.utils.set_random_seed(4)
    if kind == "insert_attention":
        model = insert_attention(emotion_cnn((32, 32, 1), widths=(8, 16), attention=None), "se")
        assert any(isinstance(layer, SqueezeExcite) for layer in model.layers)
    else:
        model = emotion_cnn((32, 32, 1), widths=(8, 16), attention=kind)
    # TFLite with built-in ops only is the strictest of the three formats
    _assert_round_trip(model, tmp_path / "m.tflite", "tflite", faces)


@pytest.fixture(scope="module")
def trained_se():
    """An SE CNN (hard-sigmoid gate) trained a few epochs to tell apart three brightness
    terciles of synthetic faces: confident, varied predictions, as a deployed model gives."""
    keras.utils.set_random_seed(0)
    x, _, _ = synthetic_expressions(300, image_size=32, seed=3)
    brightness = x.mean(axis=(1, 2, 3))
    y = np.digitize(brightness, np.quantile(brightness, [1 / 3, 2 / 3]))
    model = emotion_cnn(
        (32, 32, 1),
        num_classes=3,
        widths=(8, 16),
        attention="se",
        dropout=0,
        attention_options={"gate": "hard_sigmoid"},
    )
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=6, batch_size=16, verbose=0)
    return model, x


@pytest.mark.slow
def test_int8_quantisation_keeps_top1(trained_se, tmp_path):
    model, x = trained_se
    predicted = _reference(model, x).argmax(-1)
    assert len(np.unique(predicted)) == 3  # not all one class
    result = export_model(
        model, tmp_path / "int8.tflite", format="tflite", quantize="int8", calibration=x
    )
    assert result.quantize == "int8" and result.tolerance == {"min_agreement": 0.95}
    # held out: the last 100 of the 300 inputs; calibration on the first 200
    assert result.samples == 100 and result.top1_agreement >= 0.95
    exported = load_exported(tmp_path / "int8.tflite")
    agreement = np.mean(exported(x[-100:]).argmax(-1) == predicted[-100:])
    assert agreement == pytest.approx(result.top1_agreement)
    # the file is integer: only its input and output are float32 (no float islands)
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    details = Interpreter(model_path=str(tmp_path / "int8.tflite")).get_tensor_details()
    assert sum(detail["dtype"] == np.float32 for detail in details) == 2
    assert sum(detail["dtype"] == np.int8 for detail in details) > 20


@pytest.mark.slow
def test_int8_calibrates_on_a_data_source_and_other_quantisations(trained_se, tmp_path):
    model, _ = trained_se
    result = export_model(
        model,
        tmp_path / "int8.tflite",
        format="tflite",
        quantize="int8",
        calibration="synthetic",
        samples=40,
        calibration_size=60,
    )
    assert result.samples == 40 and result.top1_agreement >= 0.95
    float16 = export_model(model, tmp_path / "f16.tflite", format="tflite", quantize="float16")
    assert float16.max_abs_diff <= 5e-3 and float16.tolerance == {"max_abs_diff": 5e-3}
    dynamic = export_model(model, tmp_path / "dyn.tflite", format="tflite", quantize="dynamic")
    assert dynamic.top1_agreement >= 0.95
    float32 = export_model(model, tmp_path / "f32.tflite", format="tflite")
    assert dynamic.size_bytes < float32.size_bytes and float16.size_bytes < float32.size_bytes


def _dead_bottleneck_se() -> keras.Model:
    """A small SE CNN whose bottleneck ReLU is zero on every input (bias -100): int8
    calibration gives that tensor a range of zero, which XNNPACK cannot requantize."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    se = SqueezeExcite(reduction=2, name="se")
    x = se(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    reduce = next(w for w in se.weights if "bias" in w.path and w.shape == (4,))
    reduce.assign(np.full(4, -100.0, np.float32))
    return model


def test_int8_file_xnnpack_refuses_runs_with_reference_kernels(tmp_path):
    model = _dead_bottleneck_se()
    x = np.random.default_rng(0).random((40, 16, 16, 1), dtype=np.float32)
    export_model(
        model, tmp_path / "int8.tflite", format="tflite", quantize="int8", calibration=x,
        check=False,
    )  # fmt: skip
    with pytest.warns(UserWarning, match="XNNPACK delegate cannot run this model"):
        exported = load_exported(tmp_path / "int8.tflite")
    out = exported(x[:5])
    assert out.shape == (5, 3)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=0.02)
    # the gate is sigmoid(expand bias) for every image: the model's own answer, quantised
    np.testing.assert_allclose(out, _reference(model, x[:5]), atol=0.02)


@pytest.mark.parametrize("kind", ["se", "cbam"])
def test_attention_cnn_is_one_xnnpack_partition_in_tflite(tmp_path, kind):
    """The gate's broadcast is one RESHAPE, which XNNPACK takes: the whole float model runs
    as one delegated partition, as the plain CNN does (an EXPAND_DIMS per spatial axis is
    not delegated and split the graph at every attention block)."""
    from senet.inference import _tflite_interpreter

    partitions = {}
    for attention in (None, kind):
        keras.utils.set_random_seed(0)
        model = emotion_cnn((32, 32, 1), widths=(8, 16), attention=attention)
        path = tmp_path / f"{attention}.tflite"
        export_model(model, path, format="tflite", check=False)
        # the interpreter's node list after delegation (LiteRT has no public one)
        names = [op["op_name"] for op in _tflite_interpreter(str(path))._get_ops_details()]
        assert "EXPAND_DIMS" not in names
        partitions[attention] = names.count("DELEGATE")
    assert partitions == {None: 1, kind: 1}


def test_parity_beyond_tolerance_writes_nothing(se_cnn, tmp_path, monkeypatch):
    monkeypatch.setitem(export.TOLERANCES, None, Tolerance(max_abs_diff=-1.0))
    with pytest.raises(ParityError, match=r"max abs diff .* > -1; nothing written") as caught:
        export_model(se_cnn, tmp_path / "m.tflite", format="tflite", samples=4)
    assert caught.value.result.samples == 4 and caught.value.result.max_abs_diff < 1e-4
    assert list(tmp_path.iterdir()) == []
    assert "\n" not in str(caught.value)


def test_unsupported_format_and_bad_arguments(se_cnn, tmp_path):
    with pytest.raises(ValueError, match=r"`format` must be one of \('savedmodel'"):
        export_model(se_cnn, tmp_path / "m.mlmodel", format="coreml")
    with pytest.raises(ValueError, match=r"`quantize` must be one of"):
        export_model(se_cnn, tmp_path / "m.tflite", format="tflite", quantize="int4")
    with pytest.raises(ValueError, match=r"`quantize` must be None for format 'onnx'"):
        export_model(se_cnn, tmp_path / "m.onnx", format="onnx", quantize="int8")
    with pytest.raises(ValueError, match=r"`out` must be a path ending in \.tflite"):
        export_model(se_cnn, tmp_path / "m.onnx", format="tflite")
    with pytest.raises(ValueError, match=r"`samples` must be a positive integer"):
        export_model(se_cnn, tmp_path / "m.onnx", format="onnx", samples=0)
    with pytest.raises(ExportError, match=r"calibration inputs have shape \(4, 8, 8, 1\)"):
        export_model(
            se_cnn,
            tmp_path / "m.tflite",
            format="tflite",
            quantize="int8",
            calibration=np.zeros((4, 8, 8, 1)),
        )
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_kept_unless_overwrite(se_cnn, tmp_path):
    out = tmp_path / "m.tflite"
    out.write_bytes(b"keep me")
    with pytest.raises(ExportError, match="exists; pass overwrite=True"):
        export_model(se_cnn, out, format="tflite")
    assert out.read_bytes() == b"keep me"
    export_model(se_cnn, out, format="tflite", overwrite=True, samples=2)
    assert load_exported(out).format == "tflite"
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "todo.txt").write_text("mine")
    with pytest.raises(ExportError, match="is not a SavedModel; not replacing it"):
        export_model(se_cnn, folder, format="savedmodel", overwrite=True)
    assert (folder / "todo.txt").read_text() == "mine"


def test_saved_model_overwrite_replaces_the_directory(se_cnn, tmp_path):
    out = tmp_path / "saved"
    export_model(se_cnn, out, samples=2)
    export_model(se_cnn, out, samples=2, overwrite=True)
    assert (out / "saved_model.pb").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved"]


@needs_onnx
@pytest.mark.parametrize(
    ("module", "format"), [("tf2onnx", "onnx"), ("onnx", "onnx"), ("onnxruntime", "onnx")]
)
def test_missing_optional_dependency_names_the_extra(se_cnn, tmp_path, monkeypatch, module, format):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    with pytest.raises(MissingDependencyError) as caught:
        export_model(se_cnn, tmp_path / OUT[format], format=format)
    message = str(caught.value)
    assert module in message and EXTRA_HINT in message and "\n" not in message
    assert isinstance(caught.value, ImportError) and isinstance(caught.value, ValueError)
    assert list(tmp_path.iterdir()) == []


@needs_onnx
def test_onnx_export_without_runtime_is_fine_when_not_checked(se_cnn, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    result = export_model(se_cnn, tmp_path / "m.onnx", format="onnx", check=False)
    assert result.max_abs_diff is None and result.samples == 0
    with pytest.raises(MissingDependencyError, match="onnxruntime"):
        load_exported(tmp_path / "m.onnx")


def test_tflite_runs_with_tf_lite_when_litert_is_missing(se_cnn, faces, tmp_path, monkeypatch):
    export_model(se_cnn, tmp_path / "m.tflite", format="tflite", check=False)
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    exported = load_exported(tmp_path / "m.tflite")
    np.testing.assert_allclose(exported(faces), _reference(se_cnn, faces), atol=1e-4)


@pytest.mark.parametrize(
    "name", ["bad.keras", "bad.tflite", pytest.param("bad.onnx", marks=needs_onnx)]
)
def test_a_file_that_is_not_a_model(tmp_path, name):
    path = tmp_path / name
    path.write_text("this is not a model")
    with pytest.raises(
        ExportError, match=rf"cannot load (model )?{re.escape(str(path))}"
    ) as caught:
        load_exported(path)
    assert "\n" not in str(caught.value)
    if name.endswith(".keras"):
        with pytest.raises(ExportError, match=rf"cannot load model {re.escape(str(path))}"):
            export_model(path, tmp_path / "out.tflite", format="tflite")


def test_load_exported_refuses_unknown_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model file"):
        load_exported(tmp_path / "missing.tflite")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match="a directory without saved_model.pb"):
        load_exported(tmp_path / "empty")
    (tmp_path / "model.txt").write_text("x")
    with pytest.raises(ExportError, match=r"expected a \.keras, \.tflite or \.onnx file"):
        load_exported(tmp_path / "model.txt")


def test_load_exported_of_a_keras_file_and_shape_check(se_cnn, faces, tmp_path):
    se_cnn.save(tmp_path / "m.keras")
    exported = load_exported(tmp_path / "m.keras")
    assert exported.format == "keras" and exported.input_shape == (None, 32, 32, 1)
    np.testing.assert_allclose(exported(faces), _reference(se_cnn, faces), atol=1e-6)
    with pytest.raises(ExportError, match=r"expects inputs of shape \(None, 32, 32, 1\)"):
        exported(np.zeros((1, 16, 16, 1), "float32"))


def test_parity_and_sample_inputs():
    assert parity(np.array([[0.2, 0.8], [0.6, 0.4]]), np.array([[0.3, 0.7], [0.4, 0.6]])) == (
        pytest.approx(0.2),
        0.5,
    )
    # one output channel: top-1 is p > 0.5
    assert parity(np.array([[0.9], [0.1]]), np.array([[0.6], [0.6]]))[1] == 0.5
    faces = sample_inputs((None, 32, 32, 3), 3, seed=0)
    gray = synthetic_expressions(3, image_size=32, seed=0)[0]
    np.testing.assert_array_equal(faces, np.repeat(gray, 3, axis=-1))
    noise = sample_inputs((None, 8, 8, 8, 2), 2)
    assert noise.shape == (2, 8, 8, 8, 2) and noise.dtype == np.float32
    assert noise.min() >= 0 and noise.max() <= 1
    assert sample_inputs((None, None, None, 1), 1).shape == (1, 48, 48, 1)


# --------------------------------------------------------------------------- the command


def test_cli_choices_agree_with_the_library():
    assert cli.models.EXPORT_FORMAT_CHOICES == export.FORMATS
    assert cli.models.QUANTIZE_CHOICES == export.QUANTIZATIONS


def test_cli_export_writes_and_reports(se_cnn, tmp_path, capsys):
    se_cnn.save(tmp_path / "m.keras")
    out = tmp_path / "m.tflite"
    argv = ["export", str(tmp_path / "m.keras"), "--format", "tflite", "--out", str(out)]
    assert cli.main([*argv, "--samples", "8"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "top-1 agreement 100.0%" in printed
    assert load_exported(out).format == "tflite"
    assert cli.main(argv) == 2  # exists: refused, one line
    error = capsys.readouterr().err.strip()
    assert error.startswith("senet export: error:") and "--overwrite" in error
    assert "\n" not in error


def test_cli_export_errors_are_one_line(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "bad.keras"
    bad.write_text("not a model")
    out = str(tmp_path / "m.onnx")
    assert cli.main(["export", str(bad), "--format", "tflite", "--out", out + ".tflite"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"senet export: error: cannot load model {bad}") and "\n" not in error
    # the missing dependency is reported before the model is even read
    monkeypatch.setitem(sys.modules, "tf2onnx", None)
    assert cli.main(["export", str(bad), "--format", "onnx", "--out", out]) == 2
    error = capsys.readouterr().err.strip()
    assert EXTRA_HINT in error and "\n" not in error
    with pytest.raises(SystemExit) as caught:
        cli.main(["export", str(bad), "--format", "coreml", "--out", out])
    assert caught.value.code == 2
