"""Segmentation end to end on the synthetic face parts: train (the run machinery, resume,
mixed precision), evaluate, predict (palette masks, overlays), explain (gates) and export,
each checked against the model's own predictions and NumPy."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from senet.cli import main
from senet.config import TrainConfig
from senet.data.masks import load_masks, resize_labels
from senet.data.synthetic import FACE_PARTS, synthetic_face_parts
from senet.train import train

# every test here trains or reads a trained run: the quick lane leaves them out
pytestmark = pytest.mark.slow

SIDE = 32
OPTIONS = {"depth": 2, "base_filters": 4}


def _config(**changes):
    values = dict(
        task="segmentation",
        model="unet",
        attention="scse",
        reduction=2,
        data="synthetic",
        synthetic_size=60,
        image_size=SIDE,
        epochs=2,
        batch_size=16,
        learning_rate=0.01,
        model_options=OPTIONS,
    )
    return TrainConfig(**{**values, **changes})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("seg") / "run"
    argv = ["train", "--task", "segmentation", "--model", "unet", "--attention", "scse"]
    argv += ["--reduction", "2", "--synthetic-size", "60", "--image-size", str(SIDE)]
    argv += ["--epochs", "2", "--batch-size", "16", "--lr", "0.01", "--quiet"]
    argv += ["--model-options", json.dumps(OPTIONS), "--out", str(out)]
    assert main(argv) == 0
    return out


def _dice_per_case(pred, target, k):
    p, t = pred == k, target == k
    keep = t.any(axis=(1, 2))
    overlap = (p & t).sum(axis=(1, 2))[keep]
    return 2 * overlap / (p.sum(axis=(1, 2))[keep] + t.sum(axis=(1, 2))[keep])


def test_a_segmentation_run_scores_its_own_predictions(run):
    from senet.layers import load_model, training_info

    for name in ("config.json", "metrics.json", "model.keras", "dice.png", "curves.png"):
        assert (run / name).is_file(), name
    assert not (run / "confusion.png").exists()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["test_dice"] == metrics["dice"]
    assert list(metrics["per_class"]) == list(FACE_PARTS[1:])
    history = (run / "history.csv").read_text().splitlines()[0].split(",")
    assert {"dice", "val_dice", "loss", "val_loss"} <= set(history)
    # the metrics are NumPy's on the model's own predictions of the test split
    model = load_model(run / "model.keras", compile=False)
    test = load_masks("synthetic", synthetic_size=60, image_size=SIDE)["test"]
    predicted = np.argmax(np.asarray(model.predict(test.x, verbose=0)), axis=-1)
    for k, name in enumerate(FACE_PARTS[1:], start=1):
        expected = _dice_per_case(predicted, test.y, k)
        assert metrics["per_class"][name]["dice"]["mean"] == pytest.approx(expected.mean())
        assert metrics["per_class"][name]["dice"]["n"] == len(expected)
    assert training_info(model)["task"] == "segmentation"
    assert training_info(model)["class_names"] == list(FACE_PARTS)


@pytest.mark.filterwarnings("ignore:resuming .* epochs 1 -> 2")
def test_a_segmentation_run_resumes_to_the_uninterrupted_weights(tmp_path):
    whole = train(_config(), tmp_path / "whole", verbose=0)
    train(_config(epochs=1), tmp_path / "parts", verbose=0)
    resumed = train({"epochs": 2}, tmp_path / "parts", resume=True, verbose=0)
    assert resumed.resumed_from == 1
    for a, b in zip(whole.model.get_weights(), resumed.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_mixed_precision_trains_with_float32_probabilities(tmp_path):
    result = train(_config(epochs=1, mixed_precision=True), tmp_path / "mixed", verbose=0)
    assert result.model.outputs[0].dtype == "float32"
    assert np.isfinite(result.history[-1]["loss"])
    assert any("bfloat16" in str(layer.compute_dtype) for layer in result.model.layers)


def test_evaluate_gives_the_runs_test_metrics(run, tmp_path, capsys):
    status = main(
        ["evaluate", str(run / "model.keras"), "--data", "synthetic", "--out", str(tmp_path)]
    )
    assert status == 0
    said = capsys.readouterr().out
    assert "mean Dice" in said and "brows" in said
    evaluated = json.loads((tmp_path / "metrics.json").read_text())
    trained = json.loads((run / "metrics.json").read_text())
    assert evaluated["dice"] == pytest.approx(trained["test_dice"])
    assert evaluated["task"] == "segmentation" and (tmp_path / "dice.png").is_file()


def test_predict_writes_palette_masks_at_the_photos_size(run, tmp_path, capsys):
    from senet.layers import load_model

    images, _ = synthetic_face_parts(2, image_size=80, seed=4)
    paths = []
    for i, image in enumerate(images):
        paths.append(tmp_path / f"face{i}.png")
        cv2.imwrite(str(paths[-1]), (image[..., 0] * 255).round().astype(np.uint8))
    out = tmp_path / "masks"
    argv = ["predict", str(run / "model.keras"), *map(str, paths), "--annotate", str(out)]
    assert main([*argv, "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    model = load_model(run / "model.keras", compile=False)
    for path, said in zip(paths, lines, strict=True):
        mask = Image.open(out / f"{path.stem}_mask.png")
        assert mask.mode == "P" and mask.size == (80, 80)
        labels = np.asarray(mask)
        # the model's labels at its input size, brought back to the photo's size
        from senet.data.images import read_image

        x = read_image(path, SIDE, 1)[None]
        expected = resize_labels(np.argmax(model.predict(x, verbose=0)[0], -1), (80, 80))
        np.testing.assert_array_equal(labels, expected)
        assert said["classes"]["skin"]["pixels"] == int((labels == 1).sum())
        assert (out / f"{path.stem}_overlay.png").is_file()
    # refused before anything runs when the masks exist
    assert main(argv) == 2
    assert "already exists" in capsys.readouterr().err


def test_explain_draws_the_gates_of_every_decoder_level(run, tmp_path):
    images, _ = synthetic_face_parts(1, image_size=SIDE, seed=5)
    path = tmp_path / "face.png"
    cv2.imwrite(str(path), (images[0, ..., 0] * 255).astype(np.uint8))
    assert main(["explain", str(run / "model.keras"), str(path), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "face_gates.png").read_bytes()[:4] == b"\x89PNG"


def test_the_gates_are_the_layers_own(run):
    from senet.explain.gates import attention_gates
    from senet.layers import load_model

    model = load_model(run / "model.keras", compile=False)
    images, _ = synthetic_face_parts(3, image_size=SIDE, seed=6)
    gates = attention_gates(model, images)
    assert list(gates) == ["decoder2_scse", "decoder1_scse"]
    assert gates["decoder2_scse"]["spatial"].shape == (3, SIDE // 2, SIDE // 2)
    assert gates["decoder1_scse"]["channel"].shape == (3, OPTIONS["base_filters"])
    # scSE's output is x * cSE gate + x * sSE gate: rebuild it from the two gates
    import keras

    layer = model.get_layer("decoder1_scse")
    probe = keras.Model(model.inputs[0], [layer.input, layer.output])
    x, y = (np.asarray(a) for a in probe(images))
    g = gates["decoder1_scse"]
    rebuilt = x * g["channel"][:, None, None, :] + x * g["spatial"][..., None]
    np.testing.assert_allclose(rebuilt, y, rtol=1e-4, atol=1e-5)


def test_export_keeps_the_label_maps(run, tmp_path):
    from senet.export import export_model

    for fmt, suffix in (("tflite", ".tflite"), ("onnx", ".onnx")):
        result = export_model(run / "model.keras", tmp_path / f"unet{suffix}", format=fmt)
        # the argmax may differ on a pixel where two classes tie to 1e-7
        assert result.top1_agreement > 0.9999 and result.max_abs_diff < 1e-4


def test_volumes_train_and_predict_nifti_masks_in_the_inputs_orientation(tmp_path):
    nib = pytest.importorskip("nibabel")
    from senet.data.nifti import read_volume, write_volume
    from senet.data.phantoms import synthetic_phantoms

    config = _config(data="phantoms", image_size=16, synthetic_size=12, batch_size=4, epochs=1)
    result = train(config, tmp_path / "run", verbose=0)
    assert result.model.input_shape == (None, 16, 16, 16, 1)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert list(metrics["per_class"]) == ["liver", "kidney", "spleen"]
    # a volume larger than the model's input, stored as RAS and as its LPS twin
    images, _ = synthetic_phantoms(1, size=24, seed=9)
    volume = images[0, ..., 0] * 800 - 100
    ras = np.diag([1.5, 1.0, 2.0, 1.0])
    lps = np.diag([-1.5, -1.0, 2.0, 1.0])
    lps[:2, 3] = [1.5 * 23, 1.0 * 23]
    write_volume(tmp_path / "ras.nii.gz", volume, ras)
    write_volume(tmp_path / "lps.nii.gz", volume[::-1, ::-1], lps)
    out = tmp_path / "masks"
    model = str(tmp_path / "run" / "model.keras")
    argv = ["predict", model, str(tmp_path / "ras.nii.gz"), str(tmp_path / "lps.nii.gz")]
    assert main([*argv, "--annotate", str(out)]) == 0
    for name, affine in (("ras", ras), ("lps", lps)):
        written = nib.load(out / f"{name}_mask.nii.gz")
        assert written.shape == (24, 24, 24)
        np.testing.assert_allclose(written.affine, affine)
    a = read_volume(out / "ras_mask.nii.gz", kind="label").array
    b = read_volume(out / "lps_mask.nii.gz", kind="label").array
    np.testing.assert_array_equal(a, b)  # one physical volume, one mask
    assert set(np.unique(a)) <= {0, 1, 2, 3}


def test_volumes_train_on_patches_and_label_whole_volumes(tmp_path, capsys):
    pytest.importorskip("nibabel")
    from senet.data.nifti import read_volume, write_volume
    from senet.data.phantoms import synthetic_phantoms
    from senet.layers import training_info

    config = _config(
        data="phantoms", image_size=32, patch_size=16, synthetic_size=10, batch_size=2, epochs=1
    )
    result = train(config, tmp_path / "run", verbose=0)
    assert result.model.input_shape == (None, None, None, None, 1)
    assert training_info(result.model)["patch_size"] == 16
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["num_examples"] == 1 and metrics["split"] == "test"
    model = str(tmp_path / "run" / "model.keras")
    capsys.readouterr()
    assert main(["evaluate", model, "--data", "phantoms", "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["dice"] == pytest.approx(metrics["test_dice"], abs=1e-6)
    # whole volumes by 16^3 windows, the input's size out
    images, _ = synthetic_phantoms(1, size=24, seed=2)
    write_volume(tmp_path / "v.nii.gz", images[0, ..., 0], np.eye(4))
    out = tmp_path / "masks"
    assert main(["predict", model, str(tmp_path / "v.nii.gz"), "--annotate", str(out)]) == 0
    assert read_volume(out / "v_mask.nii.gz", kind="label").array.shape == (24, 24, 24)
    with pytest.raises(ValueError, match="patch_size"):
        TrainConfig(image_size=16, patch_size=32)
