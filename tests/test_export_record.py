"""An exported file (.tflite, .onnx, SavedModel) carries the training record of the Keras
model it came from, and `senet predict`/`evaluate` read it there: the model's own class
names, its input range and the synthetic-data warning, away from its run directory. A
malformed record is a one-line error naming the file.

The model is a tiny untrained SE emotion CNN on 24x24 grey images (what it predicts does
not matter here, only which names, which inputs and which warning); the photo is the drawn
face of tests/photos.py, which OpenCV's Haar cascade finds.
"""

import importlib.util
import json
import shutil
import warnings

import cv2
import keras
import numpy as np
import pytest

from photos import face_photo
from senet.cli import main
from senet.data import EMOTIONS, synthetic_expressions
from senet.export import EXTRA_HINT, ExportError, export_model, load_exported
from senet.inference import MAX_RECORD_BYTES, model_record
from senet.layers.info import check_record, with_training_info, without_training_info
from senet.models import emotion_cnn

pytestmark = pytest.mark.skipif(
    not all(importlib.util.find_spec(name) for name in ("tf2onnx", "onnx", "onnxruntime")),
    reason=f"ONNX export needs the optional dependencies: {EXTRA_HINT}",
)

# not FER2013's names, and an input range that is not the default: both must come from the file
RECORD = {
    "task": "classification",
    "dataset": "synthetic",
    "image_size": 24,
    "channels": 1,
    "input_range": [-1, 1],
    "class_names": ["calm", "cross", "glad", "grim", "sly", "shy", "wary"],
}
NAMES = {"tflite": "model.tflite", "onnx": "model.onnx", "savedmodel": "savedmodel"}
TRUSTED = "--allow-savedmodel"  # the SavedModels are the ones this module wrote


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The model's three exports with its record, two without one, a photo, an .npz set."""
    root = tmp_path_factory.mktemp("record")
    keras.utils.set_random_seed(0)
    plain = emotion_cnn((24, 24, 1), widths=(4, 8), dropout=0.0)
    model = with_training_info(plain, RECORD)  # the same layers and weights, plus the record
    for format, name in NAMES.items():
        export_model(model, root / name, format=format, samples=4)
    for format in ("tflite", "onnx"):
        export_model(plain, root / f"plain.{format}", format=format, samples=4)
    photo = root / "face.png"
    cv2.imwrite(str(photo), face_photo())
    images, labels, _ = synthetic_expressions(24, image_size=24, seed=1)
    data = root / "faces.npz"
    np.savez(data, x=np.rint(images[..., 0] * 255).astype(np.uint8), y=labels)
    return {"root": root, "model": model, "photo": photo, "data": data}


def _load(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the SavedModel's trust warning
        return load_exported(path, allow_savedmodel=True)


@pytest.mark.parametrize("format", list(NAMES))
def test_the_record_reads_back_from_every_format(files, format):
    path = files["root"] / NAMES[format]
    loaded = _load(path)
    assert loaded.record == check_record(RECORD, path) == RECORD
    assert model_record(loaded, path) == RECORD


def test_the_tflite_file_runs_in_both_interpreters(files):
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter
    from tensorflow.lite.python import schema_py_generated as schema

    path = files["root"] / NAMES["tflite"]
    content = path.read_bytes()
    flatbuffer = schema.Model.GetRootAs(content, 0)
    entries = [flatbuffer.Metadata(i).Name() for i in range(flatbuffer.MetadataLength())]
    assert b"senet_record" in entries and b"min_runtime_version" in entries  # the converter's kept
    x = np.random.default_rng(0).random((1, 24, 24, 1), dtype=np.float32)
    reference = np.asarray(files["model"](x, training=False))
    for interpreter_class in (Interpreter, tf.lite.Interpreter):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter is deprecated
            interpreter = interpreter_class(model_content=content)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        np.testing.assert_allclose(got, reference, atol=1e-5)


@pytest.mark.parametrize("format", list(NAMES))
def test_predict_uses_the_files_class_names_input_range_and_warning(files, format, capsys):
    from senet.faces import crop_inputs, detect_faces

    path, photo = files["root"] / NAMES[format], files["photo"]
    assert main(["predict", str(path), str(photo), "--json", TRUSTED]) == 0
    captured = capsys.readouterr()
    ((face,),) = [json.loads(line)["faces"] for line in captured.out.splitlines()]
    assert list(face["probabilities"]) == RECORD["class_names"]
    assert [line for line in captured.err.splitlines() if "synthetic cartoon faces" in line]
    # the record's input range: the crop in [0, 1] mapped to [-1, 1]
    image = cv2.imread(str(photo))
    crop = crop_inputs(image, [detect_faces(image)[0]], 24, 1) * 2 - 1
    reference = np.asarray(files["model"](crop, training=False))[0]
    got = [face["probabilities"][name] for name in RECORD["class_names"]]
    np.testing.assert_allclose(got, reference, atol=1e-4)


def test_evaluate_uses_the_files_input_range(files, capsys):
    root, data = files["root"], str(files["data"])

    def loss(model, *options):
        command = ["evaluate", str(root / model), "--data", data, "--split", "all", "--json"]
        assert main([*command, *options]) == 0
        return json.loads(capsys.readouterr().out)["loss"]

    recorded = loss(NAMES["tflite"])
    assert recorded == pytest.approx(loss("plain.tflite", "--input-range=-1,1"), abs=1e-6)
    assert abs(recorded - loss("plain.tflite")) > 1e-4  # the range makes a difference


@pytest.mark.parametrize("format", ["tflite", "onnx"])
def test_a_file_exported_without_a_record_has_none(files, format, capsys):
    path = files["root"] / f"plain.{format}"
    loaded = _load(path)
    assert loaded.record is None and model_record(loaded, path) is None
    assert main(["predict", str(path), str(files["photo"]), "--json"]) == 0
    captured = capsys.readouterr()
    assert list(json.loads(captured.out)["faces"][0]["probabilities"]) == list(EMOTIONS)
    assert "synthetic cartoon faces" not in captured.err


def test_a_saved_model_without_the_record_file_has_none(files, tmp_path):
    copy = tmp_path / "savedmodel"
    shutil.copytree(files["root"] / NAMES["savedmodel"], copy)
    (copy / "assets" / "senet_record.json").unlink()
    assert _load(copy).record is None


def _tamper(files, tmp_path, format: str, text: str):
    """A copy of the format's export whose record is ``text``."""
    from senet.export import _write_onnx_record, _write_tflite_record

    name = NAMES[format]
    copy = tmp_path / name
    if format == "savedmodel":
        shutil.copytree(files["root"] / name, copy)
        (copy / "assets" / "senet_record.json").write_text(text)
    else:
        shutil.copy(files["root"] / name, copy)
        {"tflite": _write_tflite_record, "onnx": _write_onnx_record}[format](copy, text)
    return copy


BAD_RECORDS = {
    "class names not strings": ('{"class_names": [1, 2]}', "class_names must be a list"),
    "not an object": ("[1, 2]", "must be a JSON object"),
    "null": ("null", "must be a JSON object"),
    "not JSON": ("{'class_names': ", "is not JSON text"),
    "over the cap": (
        json.dumps({"note": "x" * MAX_RECORD_BYTES}),
        f"over {MAX_RECORD_BYTES:,} bytes",
    ),
}


@pytest.mark.parametrize("format", list(NAMES))
@pytest.mark.parametrize("bad", list(BAD_RECORDS))
def test_a_tampered_record_is_one_line_naming_the_file(files, tmp_path, format, bad):
    text, expected = BAD_RECORDS[bad]
    copy = _tamper(files, tmp_path, format, text)
    with pytest.raises(ExportError) as raised:
        _load(copy)
    message = str(raised.value)
    assert message.startswith(f"{copy}: its training record") and "\n" not in message
    assert expected in message


@pytest.mark.parametrize("format", ["tflite", "onnx"])
def test_predict_on_a_tampered_record_is_one_line(files, tmp_path, format, capsys):
    copy = _tamper(files, tmp_path, format, '{"class_names": "glad"}')
    assert main(["predict", str(copy), str(files["photo"])]) == 2
    captured = capsys.readouterr()
    error = captured.err.strip()
    assert error.startswith("senet predict: error:") and "\n" not in error
    assert str(copy) in error and "class_names" in error and captured.out == ""


def test_a_keras_file_in_a_run_exports_the_runs_record(files, tmp_path):
    plain = without_training_info(files["model"])  # the same network, no record
    run = tmp_path / "run"
    run.mkdir()
    plain.save(run / "model.keras")
    (run / "config.json").write_text(json.dumps({"data": "synthetic", "image_size": 24}))
    (run / "metrics.json").write_text(json.dumps({"class_names": RECORD["class_names"]}))
    out = tmp_path / "away.tflite"  # out of the run: only the file says
    export_model(run / "model.keras", out, format="tflite", samples=4)
    record = load_exported(out).record
    assert record["dataset"] == "synthetic" and record["image_size"] == 24
    assert record["class_names"] == RECORD["class_names"]


def test_the_record_keyword_overrides_and_is_checked(files, tmp_path):
    out = tmp_path / "given.onnx"
    given = {"dataset": "fer2013", "class_names": list("abcdefg")}
    export_model(files["model"], out, format="onnx", samples=4, record=given)
    assert load_exported(out).record == given
    bad = tmp_path / "bad.onnx"
    with pytest.raises(ExportError, match="^record: its training record's channels must be 1 or 3"):
        export_model(files["model"], bad, format="onnx", check=False, record={"channels": 2})
    assert not bad.exists()
