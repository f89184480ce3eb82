"""Emotion models users already have: a Keras 2 style .h5 classifier with compile arguments
Keras 3 refuses, the options that say what senet cannot read from a foreign file
(--class-names, --input-range, --grey/--rgb), the record of what a senet model was trained on
(and the warning for synthetic-trained models on photos), and `senet train --init-from`.

The photo is drawn (a synthetic face upscaled on a grey canvas, as in tests/test_predict.py,
whose helper is repeated here) and OpenCV's Haar cascade finds it; nothing downloads.
"""

import json

import cv2
import h5py
import keras
import numpy as np
import pytest

from photos import face_photo
from senet import predict
from senet.cli import main
from senet.data import EMOTIONS, synthetic_expressions
from senet.layers import ModelLoadError, load_model, training_info
from senet.models import insert_attention
from senet.train import train


def small_classifier(channels: int = 1, classes: int = 7) -> keras.Model:
    """A plain Keras CNN, as a user would have built it (no senet layers)."""
    inputs = keras.Input((48, 48, channels))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs)


def keras2_config(node):
    """A Keras 3 model config as Keras 2 wrote it: ``Model``, ``batch_input_shape``, dtype
    strings, ``[[name, node, tensor, {}]]`` inbound nodes, no ``module``/``registered_name``
    (nor the arguments Keras 2 did not have)."""
    if isinstance(node, list):
        return [keras2_config(value) for value in node]
    if not isinstance(node, dict):
        return node
    dropped = {"module", "registered_name", "build_config", "compile_config"}
    dropped |= {"input_axes", "output_axes", "optional", "ragged"}
    converted = {}
    for key, value in node.items():
        if key in dropped:
            continue
        if key == "inbound_nodes":
            converted[key] = [
                [[*arg["config"]["keras_history"], {}] for arg in call["args"]] for call in value
            ]
            continue
        if key == "dtype" and isinstance(value, dict):
            value = value["config"]["name"]
        converted["batch_input_shape" if key == "batch_shape" else key] = keras2_config(value)
    if converted.get("class_name") == "Functional":
        converted["class_name"] = "Model"
    return converted


def save_keras2_h5(model: keras.Model, path) -> None:
    """Save as legacy .h5, as Keras 2 wrote it, with Keras 2's compile arguments (``lr``)."""
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    model.save(path)
    with h5py.File(path, "r+") as file:
        training = json.loads(file.attrs["training_config"])
        training["optimizer_config"] = {
            "class_name": "Adam",
            "config": {"name": "Adam", "lr": 0.001, "decay": 0.0, "beta_1": 0.9},
        }
        file.attrs["training_config"] = json.dumps(training)
        file.attrs["model_config"] = json.dumps(
            keras2_config(json.loads(file.attrs["model_config"]))
        )
        file.attrs["keras_version"] = "2.2.4"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("foreign")
    keras.utils.set_random_seed(0)
    model = small_classifier()
    save_keras2_h5(model, root / "fer_model.hdf5")
    cv2.imwrite(str(root / "photo.png"), face_photo())
    return {"root": root, "model": model, "h5": root / "fer_model.hdf5"}


def test_the_keras2_file_is_one_keras3_refuses_to_compile(files):
    # the hostile part of the file is real: restoring its training configuration fails
    with (
        pytest.warns(UserWarning, match="safe mode"),
        pytest.raises(ModelLoadError, match="lr"),
    ):
        load_model(files["h5"], allow_h5=True, compile=True)


def test_predict_runs_a_keras2_h5_classifier_with_allow_h5(files, capsys):
    photo = str(files["root"] / "photo.png")
    assert main(["predict", str(files["h5"]), photo, "--json", "--allow-h5"]) == 0
    captured = capsys.readouterr()
    (line,) = captured.out.strip().splitlines()
    (face,) = json.loads(line)["faces"]
    assert list(face["probabilities"]) == list(EMOTIONS)  # FER2013's names for 7 outputs
    # the same probabilities as the model itself on the same crop
    image = cv2.imread(photo)
    (box,) = predict.detect_faces(image)
    expected = files["model"].predict(predict.crop_inputs(image, [box], 48, 1), verbose=0)[0]
    got = np.asarray([face["probabilities"][name] for name in EMOTIONS])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert "trained on synthetic" not in captured.err  # nothing says what it was trained on


def test_h5_needs_the_explicit_option(files, capsys):
    assert main(["predict", str(files["h5"]), str(files["root"] / "photo.png")]) != 0
    assert "--allow-h5" in capsys.readouterr().err


def test_insert_attention_on_a_loaded_h5_keeps_its_outputs(files, rng):
    with pytest.warns(UserWarning, match="safe mode"):
        model = load_model(files["h5"], allow_h5=True, compile=False)
    attended = insert_attention(model, "se", init="identity")
    assert len(attended.layers) > len(model.layers)
    x = rng.random((4, 48, 48, 1)).astype(np.float32)
    np.testing.assert_allclose(
        attended.predict(x, verbose=0), files["model"].predict(x, verbose=0), atol=1e-3
    )  # identity init: each gate starts at 0.999, so outputs move by ~1e-5


def test_class_names_option_names_the_outputs(files, tmp_path, capsys):
    keras.utils.set_random_seed(1)
    path = tmp_path / "three.keras"
    small_classifier(classes=3).save(path)
    photo = str(files["root"] / "photo.png")
    assert main(["predict", str(path), photo, "--json", "--class-names", "calm,joy,anger"]) == 0
    (face,) = json.loads(capsys.readouterr().out.strip())["faces"]
    assert list(face["probabilities"]) == ["calm", "joy", "anger"]
    assert face["label"] in ("calm", "joy", "anger")
    with pytest.raises(SystemExit):
        main(["predict", str(path), photo, "--class-names", "a,,b"])


def mean_input_model(channels: int) -> keras.Model:
    """Outputs (mean of its input, 1 - mean): shows the value range it was fed."""
    inputs = keras.Input((48, 48, channels))
    mean = keras.layers.GlobalAveragePooling2D()(inputs)
    mean = keras.layers.Dense(1, use_bias=False, kernel_initializer="ones", trainable=False)(mean)
    mean = keras.layers.Rescaling(1.0 / channels)(mean)
    outputs = keras.layers.Concatenate()([mean, keras.layers.Rescaling(-1.0, offset=1.0)(mean)])
    return keras.Model(inputs, outputs)


def test_input_range_maps_inputs_to_minus_one_one(files, tmp_path, capsys):
    path = tmp_path / "mean.keras"
    mean_input_model(1).save(path)
    photo = str(files["root"] / "photo.png")
    image = cv2.imread(photo)
    (box,) = predict.detect_faces(image)
    reference = float(predict.crop_inputs(image, [box], 48, 1).mean())  # in [0, 1]
    means = {}
    for option in ("0,1", "-1,1"):
        assert main(["predict", str(path), photo, "--json", f"--input-range={option}"]) == 0
        (face,) = json.loads(capsys.readouterr().out.strip())["faces"]
        means[option] = face["probabilities"]["class_0"]
    assert means["0,1"] == pytest.approx(reference, abs=1e-5)
    assert means["-1,1"] == pytest.approx(2 * reference - 1, abs=1e-5)


def test_grey_feeds_a_colour_model_the_grey_image(files, tmp_path, capsys):
    path = tmp_path / "mean_rgb.keras"
    mean_input_model(3).save(path)
    photo = str(files["root"] / "photo.png")
    image = cv2.imread(photo)
    (box,) = predict.detect_faces(image)
    grey = predict.crop_inputs(image, [box], 48, 3, grey=True)
    assert np.array_equal(grey[..., 0], grey[..., 2])
    np.testing.assert_allclose(grey[..., :1], predict.crop_inputs(image, [box], 48, 1))
    assert main(["predict", str(path), photo, "--json", "--grey"]) == 0
    (face,) = json.loads(capsys.readouterr().out.strip())["faces"]
    assert face["probabilities"]["class_0"] == pytest.approx(float(grey.mean()), abs=1e-5)
    # a grey model cannot be fed colour
    with pytest.raises(ValueError, match="colour"):
        predict.input_format(small_classifier(), colour="rgb")


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("synthetic_run") / "run"
    config = {
        "data": "synthetic",
        "synthetic_size": 70,
        "image_size": 48,
        "epochs": 1,
        "batch_size": 32,
        "model_options": {"widths": [4, 8]},
    }
    return train(config, run_dir, verbose=0)


@pytest.mark.slow  # trains a tiny run
def test_a_senet_model_records_what_it_was_trained_on(synthetic_run, tmp_path):
    copied = tmp_path / "elsewhere.keras"  # out of its run directory
    copied.write_bytes((synthetic_run.out_dir / "model.keras").read_bytes())
    record = training_info(load_model(copied))
    assert record["dataset"] == "synthetic"
    assert (record["image_size"], record["channels"]) == (48, 1)
    assert record["input_range"] == [0, 1]
    assert record["class_names"] == list(EMOTIONS)
    assert record["init_from"] is None


@pytest.mark.slow  # trains a tiny run
def test_a_synthetic_trained_model_warns_on_a_photo(synthetic_run, files, tmp_path, capsys):
    copied = tmp_path / "elsewhere.keras"
    copied.write_bytes((synthetic_run.out_dir / "model.keras").read_bytes())
    photo = str(files["root"] / "photo.png")
    assert main(["predict", str(copied), photo]) == 0
    err = capsys.readouterr().err
    warned = [line for line in err.splitlines() if "synthetic cartoon faces" in line]
    assert len(warned) == 1
    assert "train on FER2013 or start from an imported network" in warned[0]
    assert main(["explain", str(copied), photo, "--out", str(tmp_path / "explained")]) == 0
    assert "synthetic cartoon faces" in capsys.readouterr().err


@pytest.mark.slow  # trains a tiny run
def test_init_from_starts_from_the_files_weights(synthetic_run, files, tmp_path):
    keras.utils.set_random_seed(3)
    start = insert_attention(small_classifier(), "se", init="identity")
    start_file = tmp_path / "start.keras"
    start.save(start_file)
    seen = {}

    class FirstWeights(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen["weights"] = [np.array(w) for w in self.model.get_weights()]

    config = {
        "data": "synthetic",
        "synthetic_size": 70,
        "epochs": 1,
        "batch_size": 32,
        "init_from": str(start_file),
    }
    result = train(config, tmp_path / "run", callbacks=[FirstWeights()], verbose=0)
    expected = start.get_weights()
    assert len(seen["weights"]) == len(expected)
    for got, want in zip(seen["weights"], expected, strict=True):
        np.testing.assert_array_equal(got, want)
    record = training_info(load_model(tmp_path / "run" / "model.keras"))
    assert record["init_from"] == "start.keras" and record["dataset"] == "synthetic"
    assert (
        sum(isinstance(layer, type(result.model.layers[-1])) for layer in result.model.layers) == 1
    )
    assert json.loads((tmp_path / "run" / "config.json").read_text())["init_from"] == str(
        start_file
    )


def test_init_from_refuses_a_model_that_does_not_fit_the_run(files, tmp_path):
    wrong = tmp_path / "three.keras"
    small_classifier(classes=3).save(wrong)
    config = {"data": "synthetic", "synthetic_size": 70, "epochs": 1, "init_from": str(wrong)}
    with pytest.raises(ValueError, match="3 outputs"):
        train(config, tmp_path / "run", verbose=0)
    assert not (tmp_path / "run").exists()
    with pytest.raises(FileNotFoundError, match="no such file"):
        train({**config, "init_from": str(tmp_path / "missing.keras")}, tmp_path / "r2")
    assert not (tmp_path / "r2").exists()


def test_evaluate_options_scale_the_inputs_and_check_the_class_names(files, tmp_path, rng):
    from senet.data import load_dataset
    from senet.evaluation import evaluate
    from senet.metrics import classification_metrics

    data = tmp_path / "faces.npz"
    images, labels, _ = synthetic_expressions(28, image_size=48, seed=1)
    np.savez(data, x=np.rint(images[..., 0] * 255).astype(np.uint8), y=labels)
    with pytest.warns(UserWarning, match="safe mode"):
        metrics = evaluate(files["h5"], data, split="all", allow_h5=True, input_range="-1,1")
    sets = load_dataset(data, image_size=48, channels=1)
    x = np.concatenate([sets[name].x for name in ("train", "val", "test")])
    y = np.concatenate([sets[name].y for name in ("train", "val", "test")])
    expected = classification_metrics(
        y, files["model"].predict(2 * x - 1, verbose=0), sets["train"].class_names
    )
    assert metrics["accuracy"] == pytest.approx(expected["accuracy"])
    assert metrics["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    names = list(sets["train"].class_names)
    with pytest.warns(UserWarning, match="safe mode"):
        same = evaluate(files["h5"], data, split="all", allow_h5=True, class_names=names)
    assert same["class_names"] == names
    with (
        pytest.warns(UserWarning, match="safe mode"),
        pytest.raises(ValueError, match="would not line up"),
    ):
        evaluate(files["h5"], data, allow_h5=True, class_names=names[::-1])


def test_an_exported_or_older_model_reads_its_record_from_the_run(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"data": "synthetic", "channels": 1}))
    (run_dir / "metrics.json").write_text(json.dumps({"class_names": ["a", "b", "c"]}))
    model = small_classifier(classes=3)  # no TrainingInfo layer, as an exported model
    record = predict.model_record(model, run_dir / "model.tflite")
    assert record["dataset"] == "synthetic" and record["class_names"] == ["a", "b", "c"]
    assert predict.model_record(model, tmp_path / "alone.keras") is None
    with pytest.warns(UserWarning, match="synthetic cartoon faces"):
        predict.warn_if_synthetic(record, "model.tflite")


@pytest.mark.slow  # trains a tiny run
def test_train_init_from_an_h5_needs_allow_h5_and_records_it(files, tmp_path, capsys):
    argv = ["train", "--data", "synthetic", "--synthetic-size", "70", "--epochs", "1"]
    argv += ["--init-from", str(files["h5"]), "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "refused")]) != 0
    assert "--allow-h5" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()  # refused before anything was made
    assert main([*argv, "--allow-h5", "--out", str(tmp_path / "run")]) == 0
    record = training_info(load_model(tmp_path / "run" / "model.keras"))
    assert record["init_from"] == "fer_model.hdf5"
    assert [layer.name for layer in load_model(tmp_path / "run" / "model.keras").layers][1:3] == [
        "conv1",
        "conv2",
    ]


def test_explain_runs_a_keras2_h5_classifier_with_its_options(files, tmp_path, capsys):
    out = tmp_path / "explained"
    photo = str(files["root"] / "photo.png")
    argv = ["explain", str(files["h5"]), photo, "--out", str(out), "--allow-h5"]
    assert main([*argv, "--input-range=-1,1", "--class-names", ",".join(EMOTIONS)]) == 0
    printed = capsys.readouterr()
    assert "face 1:" in printed.out and "synthetic cartoon faces" not in printed.err
    assert len(list(out.glob("photo_face1_gradcam_*.png"))) == 1
    assert main([*argv, "--rgb"]) != 0  # a grey model cannot take colour
    assert "colour" in capsys.readouterr().err


def test_a_recorded_model_takes_a_bare_array_without_a_keras_warning():
    # with_training_info once rebuilt the model with a one-element input list, so every call
    # on a plain array made Keras warn "The structure of `inputs` doesn't match".
    import warnings

    from senet.layers.info import with_training_info
    from senet.models import emotion_cnn

    model = with_training_info(emotion_cnn(), {"dataset": "synthetic"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model(np.zeros((2, 48, 48, 1), "float32"))
    assert not [w for w in caught if "structure" in str(w.message)]
