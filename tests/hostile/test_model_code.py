"""Model files that run code of their own (issue 20, item 1).

A SavedModel is a TensorFlow graph: its serving signature can call any op, file writes
included. Such a model is refused unless the user opts in (``--allow-savedmodel``, with a
warning), as ``.h5`` files are. A ``.tflite`` file may carry Flex (TensorFlow) or custom
operators, refused; an ``.onnx`` file may name external data outside its folder, refused.
"""

import warnings

import cv2
import numpy as np
import pytest
import tensorflow as tf

from photos import face_photo
from senet.cli import main
from senet.export import ExportError, load_exported

onnx = pytest.importorskip("onnx")


class _Writer(tf.Module):
    """A 48x48 grey classifier whose serving function also writes ``target``."""

    def __init__(self, target):
        super().__init__()
        self.target = str(target)

    @tf.function(input_signature=[tf.TensorSpec([None, 48, 48, 1], tf.float32)])
    def serve(self, x):
        tf.io.write_file(self.target, "written by the model")
        return {"output_0": tf.nn.softmax(tf.reduce_mean(x, [1, 2]) * tf.ones([1, 7]))}


@pytest.fixture(scope="module")
def hostile_saved_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    module = _Writer(root / "pwned.txt")
    tf.saved_model.save(module, str(root / "model"), signatures={"serving_default": module.serve})
    photo = root / "face.png"
    cv2.imwrite(str(photo), face_photo())
    faces = root / "faces.npz"
    np.savez(faces, x=np.zeros((14, 48, 48), np.uint8), y=np.arange(14) % 7)
    return root


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_a_saved_model_is_refused_unless_allowed(hostile_saved_model, command, capsys):
    root = hostile_saved_model
    extra = (
        [str(root / "face.png")] if command == "predict" else ["--data", str(root / "faces.npz")]
    )
    assert main([command, str(root / "model"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"cannot load {root / 'model'}: a SavedModel runs its own" in err
    assert "--allow-savedmodel" in err
    assert not (root / "pwned.txt").exists()  # before: exit 0, and the model wrote it


def test_allow_savedmodel_opts_in_with_a_warning(hostile_saved_model, capsys):
    root = hostile_saved_model
    argv = ["predict", str(root / "model"), str(root / "face.png"), "--allow-savedmodel"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "warning: " in err and "runs the TensorFlow graph in it" in err
    assert (root / "pwned.txt").exists()  # what the user allowed
    (root / "pwned.txt").unlink()


def test_a_tflite_file_with_flex_operators_is_refused(tmp_path):
    target = tmp_path / "pwned.txt"

    @tf.function(input_signature=[tf.TensorSpec([1, 48, 48, 1], tf.float32)])
    def serve(x):
        tf.io.write_file(str(target), "written by the model")
        return tf.reduce_mean(x, [1, 2]) * tf.ones([1, 7])

    converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()])
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS,
        tf.lite.OpsSet.SELECT_TF_OPS,
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (tmp_path / "flex.tflite").write_bytes(converter.convert())
    with pytest.raises(ExportError, match=r"operators outside TFLite's built-ins \(Flex"):
        load_exported(tmp_path / "flex.tflite")
    assert not target.exists()


def _onnx_with_external_data(folder, location):
    from onnx import TensorProto, helper

    weight = helper.make_tensor("w", TensorProto.FLOAT, [1], [0.0])
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "4")):
        weight.external_data.add(key=key, value=value)
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])],
        [weight],
    )
    path = folder / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


@pytest.mark.parametrize("where", ["../secret.bin", "/etc/hostname", "sub/../../secret.bin"])
def test_onnx_external_data_outside_the_model_folder_is_refused(tmp_path, where):
    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "secret.bin").write_bytes(np.float32(42).tobytes())
    path = _onnx_with_external_data(folder, where)
    with pytest.raises(ExportError, match=f"takes its data from '{where}', outside the model"):
        load_exported(path)


def test_onnx_external_data_inside_the_model_folder_loads(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(np.float32(42).tobytes())
    model = load_exported(_onnx_with_external_data(folder, "weights.bin"))
    np.testing.assert_array_equal(model(np.ones((2, 1), np.float32)), [[43.0], [43.0]])
