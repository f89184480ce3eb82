"""The one model loader (senet.layers.load_model) and the commands that read models.

Every hostile or broken model file is built here, in tmp_path: random bytes and a truncated
archive named ``.keras``, an archive without ``config.json`` or with bad JSON, weights that do
not fit the config, a config edited to hold a Lambda layer (whose code would touch a marker
file if it ran) or a class senet does not know, an ``.h5`` file, an exported format. Each must
give one line naming the file and saying what is wrong; the commands exit 2 with that line.
Then ``senet evaluate``: class names and counts checked against the data, and ``--out``
refusing to write over a run's own files or anything existing.
"""

import hashlib
import json
import zipfile

import keras
import numpy as np
import pytest

from senet.cli import main
from senet.evaluation import evaluate
from senet.layers import SqueezeExcite, load_model
from senet.layers.registry import ModelLoadError
from senet.predict import load_classifier

SIDE = 6
CLASSES = ("calm", "glad", "sad")


def _tiny_model(num_classes: int = len(CLASSES)) -> keras.Model:
    """Conv -> SqueezeExcite -> Flatten -> Dense softmax on 6x6 grey images."""
    return keras.Sequential(
        [
            keras.Input((SIDE, SIDE, 1)),
            keras.layers.Conv2D(4, 1, name="conv"),
            SqueezeExcite(2, name="conv_se"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(num_classes, activation="softmax", name="head"),
        ]
    )


def _rewrite(source, target, *, edit=None, drop=None, raw_config=None):
    """Copy the .keras archive ``source`` to ``target``, editing or dropping members."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for name in old.namelist():
            if name == drop:
                continue
            data = old.read(name)
            if name == "config.json" and raw_config is not None:
                data = raw_config
            elif name == "config.json" and edit is not None:
                config = json.loads(data)
                edit(config)
                data = json.dumps(config).encode()
            new.writestr(name, data)
    return target


def _layer(config: dict, name: str) -> dict:
    (layer,) = [entry for entry in config["config"]["layers"] if entry["config"]["name"] == name]
    return layer


def _hash(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    root = tmp_path_factory.mktemp("loading")
    keras.utils.set_random_seed(0)
    model = _tiny_model()
    model.save(root / "good.keras")
    return root / "good.keras"


def _marker_lambda(marker):
    """A Lambda layer config whose function creates ``marker`` when it runs."""
    function = eval(  # noqa: S307 - the hostile payload under test, built from a literal
        f"lambda t: (__import__('pathlib').Path({str(marker)!r}).touch(), "
        "__import__('keras').ops.reshape(t, (-1, 144)))[1]"
    )
    layer = keras.saving.serialize_keras_object(keras.layers.Lambda(function, name="flatten"))
    layer["config"]["name"] = "flatten"
    return layer


def _broken(kind: str, good, root):
    """A hostile or broken model file of one ``kind``, and text its error must contain."""
    path = root / f"{kind}.keras"
    if kind == "random_bytes":
        path.write_bytes(np.random.default_rng(1).bytes(4096))
        return path, "not a zip archive"
    if kind == "truncated":
        data = good.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return path, "not a zip archive"
    if kind == "no_config":
        return _rewrite(good, path, drop="config.json"), "no config.json"
    if kind == "bad_json":
        return _rewrite(good, path, raw_config=b'{"class_name": '), "not valid JSON"
    if kind == "wrong_weights":

        def wider_head(config):
            _layer(config, "head")["config"]["units"] = 5

        return _rewrite(good, path, edit=wider_head), "weights do not fit"
    if kind == "unknown_class":

        def evil_layer(config):
            layer = _layer(config, "conv_se")
            layer.update(class_name="EvilLayer", module="evil.layers", registered_name="evil>X")

        return _rewrite(good, path, edit=evil_layer), "EvilLayer"
    if kind == "lambda":
        marker = root / "lambda_ran"

        def with_lambda(config):
            layers = config["config"]["layers"]
            index = layers.index(_layer(config, "flatten"))
            layers[index] = _marker_lambda(marker)

        return _rewrite(good, path, edit=with_lambda), "safe mode refused"
    raise AssertionError(kind)


BROKEN = [
    "random_bytes",
    "truncated",
    "no_config",
    "bad_json",
    "wrong_weights",
    "unknown_class",
    "lambda",
]


def _one_line_error(error: BaseException, path) -> str:
    message = str(error)
    assert "\n" not in message, message
    assert str(path) in message
    return message


# --------------------------------------------------------------------------- the loader


def test_good_file_loads_with_the_same_weights(good):
    model = load_model(good)
    assert isinstance(model.get_layer("conv_se"), SqueezeExcite)
    assert load_classifier(good).output_shape == (None, len(CLASSES))


def test_missing_file_says_not_found(tmp_path):
    path = tmp_path / "missing.keras"
    with pytest.raises(FileNotFoundError) as caught:
        load_model(path)
    assert "no such file" in _one_line_error(caught.value, path)


@pytest.mark.parametrize("kind", BROKEN)
def test_broken_file_is_one_line_saying_what_is_wrong(good, tmp_path, kind):
    path, expected = _broken(kind, good, tmp_path)
    for loader in (load_model, load_classifier):
        with pytest.raises(ModelLoadError) as caught:
            loader(path)
        message = _one_line_error(caught.value, path)
        assert expected in message
        # item 11: a file that exists is never reported as missing
        assert "not found" not in message.lower()
        assert isinstance(caught.value, ValueError)
    assert not (tmp_path / "lambda_ran").exists()


def test_lambda_payload_is_refused_before_it_runs_and_the_cause_is_chained(good, tmp_path):
    path, _ = _broken("lambda", good, tmp_path)
    with pytest.raises(ModelLoadError, match="safe mode refused") as caught:
        load_model(path)
    assert "Lambda" in str(caught.value)
    # Keras's own error stays reachable for debugging
    assert caught.value.__cause__ is not None
    assert not (tmp_path / "lambda_ran").exists()


def test_unknown_class_names_the_class_and_its_module(good, tmp_path):
    path, _ = _broken("unknown_class", good, tmp_path)
    with pytest.raises(ModelLoadError) as caught:
        load_model(path)
    assert "'EvilLayer'" in str(caught.value) and "evil.layers" in str(caught.value)


def test_wrong_weights_say_which_layer_and_shapes(good, tmp_path):
    path, _ = _broken("wrong_weights", good, tmp_path)
    with pytest.raises(ModelLoadError) as caught:
        load_model(path)
    message = str(caught.value)
    assert "head" in message and "(144, 5)" in message and "(144, 3)" in message


@pytest.fixture(scope="module")
def h5_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("h5")
    keras.utils.set_random_seed(0)
    model = _tiny_model()
    model.save(root / "model.h5")
    return root / "model.h5", model


def test_h5_needs_allow_h5_and_then_warns_once(h5_file):
    path, model = h5_file
    with pytest.raises(ModelLoadError, match="allow_h5") as caught:
        load_model(path)
    assert "CVE-2025-9905" in _one_line_error(caught.value, path)
    with pytest.warns(UserWarning, match="safe mode does not apply") as recorded:
        loaded = load_model(path, allow_h5=True)
    (warning,) = [w for w in recorded if "safe mode" in str(w.message)]
    assert "\n" not in str(warning.message) and "CVE-2025-9905" in str(warning.message)
    for saved, read in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(saved, read)


def test_h5_that_is_not_hdf5_is_one_line(tmp_path):
    path = tmp_path / "fake.h5"
    path.write_bytes(b"not hdf5 at all")
    with (
        pytest.warns(UserWarning, match="safe mode does not apply"),
        pytest.raises(ModelLoadError) as caught,
    ):
        load_model(path, allow_h5=True)
    assert "not an HDF5 file" in _one_line_error(caught.value, path)


@pytest.mark.parametrize("name", ["model.tflite", "model.onnx", "model.pb", "weights.npz"])
def test_other_formats_are_a_clear_error(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"whatever")
    with pytest.raises(ModelLoadError, match="not a model format senet loads") as caught:
        load_model(path, allow_h5=True)
    _one_line_error(caught.value, path)


def test_a_directory_is_a_clear_error(tmp_path):
    (tmp_path / "saved.keras").mkdir()
    with pytest.raises(ModelLoadError, match="a directory") as caught:
        load_model(tmp_path / "saved.keras")
    _one_line_error(caught.value, tmp_path / "saved.keras")


def test_safe_mode_cannot_be_switched_off(good):
    with pytest.raises(TypeError):
        load_model(good, safe_mode=False)


# --------------------------------------------------------------------------- the commands


def _run(argv, capsys) -> tuple[int, str, str]:
    try:
        status = main([str(arg) for arg in argv])
    except SystemExit as stop:
        status = stop.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _assert_one_line(status, out, err, command, *named):
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"senet {command}: error: ")
    assert "Traceback" not in out + err
    for text in named:
        assert str(text) in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A 40-image .npz with the three CLASSES."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "data.npz"
    x = rng.integers(0, 256, (40, SIDE, SIDE)).astype(np.uint8)
    np.savez(path, x=x, y=np.arange(40) % len(CLASSES), class_names=np.array(CLASSES))
    return path


def _command(command, model, tmp_path):
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"the model is loaded before any photo is read")
    if command == "evaluate":
        return ["evaluate", model, "--data", "synthetic"]
    if command == "predict":
        return ["predict", model, photo]
    return ["explain", model, photo, "--out", tmp_path / "explained"]


@pytest.mark.parametrize("command", ["evaluate", "predict", "explain"])
@pytest.mark.parametrize("kind", BROKEN)
def test_commands_report_a_broken_model_in_one_line(good, tmp_path, capsys, command, kind):
    path, expected = _broken(kind, good, tmp_path)
    status, out, err = _run(_command(command, path, tmp_path), capsys)
    line = _assert_one_line(status, out, err, command, path, expected)
    assert "not found" not in line.lower()
    assert not (tmp_path / "lambda_ran").exists()
    assert not (tmp_path / "explained").exists()


@pytest.mark.parametrize("command", ["evaluate", "predict", "explain"])
def test_commands_refuse_h5_without_allow_h5(h5_file, tmp_path, capsys, command):
    path, _ = h5_file
    status, out, err = _run(_command(command, path, tmp_path), capsys)
    _assert_one_line(status, out, err, command, path, "--allow-h5", "CVE-2025-9905")


def test_evaluate_with_allow_h5_warns_in_one_line(h5_file, data, capsys):
    path, model = h5_file
    status, out, err = _run(["evaluate", path, "--data", data, "--allow-h5", "--json"], capsys)
    assert status == 0, err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "safe mode does not apply" in warnings[0], err
    assert warnings[0].startswith("senet evaluate: warning: ")
    assert json.loads(out)["class_names"] == list(CLASSES)


def test_evaluate_refuses_a_model_with_another_class_count(tmp_path, data, capsys):
    path = tmp_path / "four.keras"
    _tiny_model(num_classes=4).save(path)
    with pytest.raises(ValueError, match="4 outputs") as caught:
        evaluate(path, data)
    _one_line_error(caught.value, path)
    status, out, err = _run(["evaluate", path, "--data", data], capsys)
    _assert_one_line(status, out, err, "evaluate", path, "4 outputs", "3 classes")


def _run_dir(root, class_names):
    """A finished-looking run directory: config.json, model.keras, metrics.json, state.json."""
    run = root / "run"
    run.mkdir()
    keras.utils.set_random_seed(0)
    _tiny_model(len(class_names)).save(run / "model.keras")
    (run / "config.json").write_text(json.dumps({"val_fraction": 0.1, "test_fraction": 0.1}))
    metrics = {"accuracy": 0.5, "class_names": list(class_names)}
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "state.json").write_text(json.dumps({"class_names": list(class_names)}))
    return run


def test_evaluate_refuses_data_with_other_class_names(tmp_path, data, capsys):
    # same count, other names: the run was trained on FER2013-like names in another order
    run = _run_dir(tmp_path, ("glad", "calm", "sad"))
    with pytest.raises(ValueError, match="class") as caught:
        evaluate(run / "model.keras", data)
    message = _one_line_error(caught.value, run / "model.keras")
    assert "['glad', 'calm', 'sad']" in message and "['calm', 'glad', 'sad']" in message
    status, out, err = _run(["evaluate", run / "model.keras", "--data", data], capsys)
    _assert_one_line(status, out, err, "evaluate", run / "model.keras", "'glad', 'calm'")


def test_evaluate_accepts_the_runs_own_class_names(tmp_path, data):
    run = _run_dir(tmp_path, CLASSES)
    assert evaluate(run / "model.keras", data, split="all")["num_examples"] == 40


@pytest.mark.parametrize("target", ["run", "run/metrics.json"])
def test_evaluate_out_never_writes_over_a_runs_files(tmp_path, data, capsys, target):
    run = _run_dir(tmp_path, CLASSES)
    before = {path.name: _hash(path) for path in run.iterdir()}
    for overwrite in ([], ["--overwrite"]):
        argv = ["evaluate", run / "model.keras", "--data", data, "--out", tmp_path / target]
        status, out, err = _run(argv + overwrite, capsys)
        _assert_one_line(status, out, err, "evaluate", tmp_path / target)
        assert {path.name: _hash(path) for path in run.iterdir()} == before
    with pytest.raises((ValueError, OSError)):
        evaluate(run / "model.keras", data, out_dir=tmp_path / target, overwrite=True)
    assert {path.name: _hash(path) for path in run.iterdir()} == before


def test_evaluate_out_refuses_existing_files_unless_overwrite(tmp_path, data, capsys):
    run = _run_dir(tmp_path, CLASSES)
    out_dir = tmp_path / "eval"
    out_dir.mkdir()
    (out_dir / "metrics.json").write_text("mine")
    argv = ["evaluate", run / "model.keras", "--data", data, "--out", out_dir]
    status, out, err = _run(argv, capsys)
    _assert_one_line(status, out, err, "evaluate", out_dir / "metrics.json", "--overwrite")
    assert (out_dir / "metrics.json").read_text() == "mine"
    status, out, err = _run([*argv, "--overwrite"], capsys)
    assert status == 0, err
    assert json.loads((out_dir / "metrics.json").read_text())["class_names"] == list(CLASSES)
    assert (out_dir / "confusion.png").is_file()
