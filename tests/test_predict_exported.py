"""`senet predict` and `senet evaluate` on exported models (.tflite, .onnx, SavedModel) give
what they give on the .keras file the export came from; `senet explain` refuses them.

The model is a small SE emotion CNN trained for a few steps on synthetic faces, so its labels
differ across faces; the photos are synthetic faces that OpenCV's Haar cascade finds (as in
test_predict.py). References: the Keras model itself, called directly on the same inputs.
"""

import importlib.util
import json
import shutil
import subprocess
import sys

import cv2
import keras
import numpy as np
import pytest

from senet.cli import main
from senet.data import EMOTIONS, load_dataset, synthetic_expressions
from senet.export import EXTRA_HINT, export_model
from senet.models import emotion_cnn

pytestmark = [
    pytest.mark.skipif(
        not all(importlib.util.find_spec(name) for name in ("tf2onnx", "onnx", "onnxruntime")),
        reason=f"ONNX export needs the optional dependencies: {EXTRA_HINT}",
    ),
    pytest.mark.slow,  # trains a tiny model and exports it to every format
]

# synthetic faces (seed 0) that the Haar cascade finds on a grey canvas, and their labels differ
DETECTED_FACES = (2, 4, 6, 7, 11)
FORMATS = ("keras", "tflite", "onnx", "savedmodel")
NAMES = {
    "keras": "model.keras",
    "tflite": "model.tflite",
    "onnx": "model.onnx",
    "savedmodel": "savedmodel",
}


def _photo(face: np.ndarray) -> np.ndarray:
    """A 640x480 BGR photo with ``face`` (48x48 grey in [0, 1]) upscaled to 240 pixels."""
    canvas = np.full((480, 640), 128, np.uint8)
    canvas[120:360, 200:440] = cv2.resize(np.rint(face[..., 0] * 255).astype(np.uint8), (240, 240))
    return cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The trained .keras model, its three exports, face photos and an .npz data set."""
    root = tmp_path_factory.mktemp("exported")
    keras.utils.set_random_seed(3)
    images, labels, _ = synthetic_expressions(640, image_size=48, seed=5)
    model = emotion_cnn(widths=(8, 16), attention="se", dropout=0.0)
    for layer in model.layers:
        # moving statistics that follow a few dozen steps (at the default 0.99 they stay
        # near their initial values, and inference gives every face the same label)
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.5
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(images, labels, batch_size=32, epochs=3, verbose=0)
    model.save(root / NAMES["keras"])
    for format in FORMATS[1:]:
        export_model(root / NAMES["keras"], root / NAMES[format], format=format, samples=8)
    faces, _, _ = synthetic_expressions(14, image_size=48, seed=0)
    photos = []
    for index in DETECTED_FACES:
        photos.append(root / f"face{index}.png")
        cv2.imwrite(str(photos[-1]), _photo(faces[index]))
    test_images, test_labels, _ = synthetic_expressions(60, image_size=48, seed=11)
    data = root / "faces.npz"
    np.savez(
        data,
        x=np.rint(test_images[..., 0] * 255).astype(np.uint8),
        y=test_labels,
        class_names=np.array(EMOTIONS),
    )
    return {"root": root, "model": model, "photos": photos, "data": data}


# the SavedModels are the ones this module wrote: trusted
TRUSTED = "--allow-savedmodel"


def _predict(model_path, photos, capsys) -> list[dict]:
    assert main(["predict", str(model_path), *map(str, photos), "--json", TRUSTED]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_predict_gives_the_same_labels_for_every_format(files, capsys):
    root, photos = files["root"], files["photos"]
    results = {format: _predict(root / NAMES[format], photos, capsys) for format in FORMATS}
    keras_faces = [result["faces"] for result in results["keras"]]
    assert all(len(faces) == 1 for faces in keras_faces)  # the cascade found every face
    labels = [faces[0]["label"] for faces in keras_faces]
    assert len(set(labels)) > 1, "the model gives every face the same label: a weak check"
    assert set(keras_faces[0][0]["probabilities"]) == set(EMOTIONS)  # no run: FER2013 names
    for format in FORMATS[1:]:
        for expected, got in zip(results["keras"], results[format], strict=True):
            assert got["path"] == expected["path"]
            ((face,), (reference,)) = got["faces"], expected["faces"]
            assert face["box"] == reference["box"] and face["label"] == reference["label"]
            for name, probability in reference["probabilities"].items():
                assert face["probabilities"][name] == pytest.approx(probability, abs=1e-4)


def test_predict_probabilities_are_the_keras_models_own(files, capsys):
    """The .tflite file's probabilities against the Keras model called on the same crop."""
    from senet.predict import crop_inputs, detect_faces

    photo = files["photos"][0]
    (result,) = _predict(files["root"] / NAMES["tflite"], [photo], capsys)
    image = cv2.imread(str(photo))
    (box,) = detect_faces(image)
    reference = np.asarray(files["model"](crop_inputs(image, [box], 48, 1), training=False))[0]
    got = [result["faces"][0]["probabilities"][name] for name in EMOTIONS]
    np.testing.assert_allclose(got, reference, atol=1e-4)


def test_evaluate_gives_the_same_accuracy_for_every_format(files, capsys):
    root, data = files["root"], files["data"]
    metrics = {}
    for format in FORMATS:
        command = ["evaluate", str(root / NAMES[format]), "--data", str(data), "--split", "all"]
        assert main([*command, "--json", TRUSTED]) == 0
        metrics[format] = json.loads(capsys.readouterr().out)
        assert metrics[format]["format"] == format
    # reference: the Keras model on every image of the data, as load_dataset reads it
    sets = load_dataset(data, image_size=48, channels=1)
    x = np.concatenate([sets[split].x for split in ("train", "val", "test")])
    y = np.concatenate([sets[split].y for split in ("train", "val", "test")])
    accuracy = float(np.mean(np.asarray(files["model"](x, training=False)).argmax(1) == y))
    for format in FORMATS:
        assert metrics[format]["num_examples"] == len(y) == 60
        assert metrics[format]["accuracy"] == pytest.approx(accuracy, abs=1e-12)
        assert metrics[format]["confusion_matrix"] == metrics["keras"]["confusion_matrix"]
        assert metrics[format]["loss"] == pytest.approx(metrics["keras"]["loss"], abs=1e-4)
    assert "params" in metrics["keras"] and "params" not in metrics["onnx"]


def test_an_exported_file_in_a_run_directory_takes_the_runs_class_names(files, tmp_path, capsys):
    names = ["anger", "disgust", "fear", "joy", "sorrow", "surprise", "calm"]
    (tmp_path / "metrics.json").write_text(json.dumps({"class_names": names}))
    shutil.copy(files["root"] / NAMES["onnx"], tmp_path / NAMES["onnx"])
    shutil.copytree(files["root"] / NAMES["savedmodel"], tmp_path / NAMES["savedmodel"])
    for model in (tmp_path / NAMES["onnx"], tmp_path / NAMES["savedmodel"]):
        (result,) = _predict(model, files["photos"][:1], capsys)
        assert list(result["faces"][0]["probabilities"]) == names
    # evaluate checks the run's classes against the data's (FER2013's names here)
    (tmp_path / "config.json").write_text("{}")
    model = str(tmp_path / NAMES["onnx"])
    assert main(["evaluate", model, "--data", str(files["data"])]) == 2
    error = capsys.readouterr().err
    assert "was trained on the classes" in error and "'joy'" in error


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_missing_onnx_runtime_is_one_line_naming_the_extra(files, monkeypatch, capsys, command):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now fails
    model = str(files["root"] / NAMES["onnx"])
    extra = [str(files["photos"][0])] if command == "predict" else ["--data", str(files["data"])]
    assert main([command, model, *extra]) == 2
    captured = capsys.readouterr()
    error = captured.err.strip()
    assert error.startswith(f"senet {command}: error:") and "\n" not in error
    assert "onnxruntime" in error and EXTRA_HINT in error and captured.out == ""


def test_a_directory_that_is_not_a_saved_model_is_one_line(files, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(tmp_path / "empty"), str(files["photos"][0])]) == 2
    error = capsys.readouterr().err.strip()
    assert "without saved_model.pb" in error and "\n" not in error


@pytest.mark.parametrize("format", ["tflite", "onnx", "savedmodel"])
def test_explain_refuses_an_exported_model_in_one_line(files, tmp_path, capsys, format):
    model = str(files["root"] / NAMES[format])
    out = tmp_path / "out"
    assert main(["explain", model, str(files["photos"][0]), "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert error == (
        f"senet explain: error: senet explain needs a .keras model (explanations need "
        f"gradients); {model} is an exported model: explain the .keras file it was exported "
        "from"
    )
    assert not out.exists()


def test_senet_export_is_a_lazy_submodule():
    code = "import sys, senet; assert 'senet.export' not in sys.modules; senet.export.load_exported"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
