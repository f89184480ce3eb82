"""Running a saved classifier: the one loader for every format senet reads, the one
lookup of the run a model file belongs to, and what a model says about its inputs.

:func:`load_classifier` opens a ``.keras`` file (``.h5`` when asked) with senet's Keras
loader, and a ``.tflite``, ``.onnx`` or SavedModel export (:func:`load_exported`) with its own
runtime, after checking what the file would run. :func:`model_record` is what a model was
trained on (its :class:`senet.layers.TrainingInfo` or the record an exported file carries,
:func:`read_record`; else its run: :func:`senet.runs.find_run`), :func:`class_names_for` its
class names, :func:`input_format` how images become its inputs,
:func:`predictor` a fast batch function. ``senet predict``, ``explain``, ``evaluate`` and
``export``'s parity check use them; this module stands on none of those.
"""

from __future__ import annotations

import importlib
import json
import os
import warnings
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from senet.checks import check_choice, fail
from senet.errors import ExportError, MissingDependencyError, first_line, printable
from senet.layers.registry import EXPORTED_FILE_SUFFIXES
from senet.runs import find_run, find_run_config, run_class_names

__all__ = [
    "BATCH",
    "EXTRA_HINT",
    "INPUT_RANGES",
    "ExportedModel",
    "InputFormat",
    "check_single_io",
    "class_names_for",
    "input_format",
    "is_exported",
    "load_classifier",
    "load_exported",
    "load_for_inference",
    "model_input_size",
    "model_record",
    "open_model",
    "open_exported",
    "predictor",
    "read_keras",
    "read_record",
    "require",
    "to_input_range",
    "warn_if_synthetic",
]

#: What to run when an optional export dependency is missing.
EXTRA_HINT = 'pip install "senet[export]"'
#: Batch size exported and Keras models are run in.
BATCH = 32
#: The input value ranges a classifier may expect, by the name ``--input-range`` takes.
INPUT_RANGES = {"0,1": (0.0, 1.0), "-1,1": (-1.0, 1.0)}
#: Where an export carries its training record: the TFLite metadata entry's name and the ONNX
#: ``metadata_props`` key (the value: the record as UTF-8 JSON).
RECORD_NAME = "senet_record"
#: The SavedModel's record: this file in its ``assets/`` folder.
RECORD_FILE = "senet_record.json"
#: The longest record (JSON bytes) senet reads or writes: a record is a few hundred bytes; a
#: list of 100,000 class names fits.
MAX_RECORD_BYTES = 1 << 20


# --------------------------------------------------------------------------- running files


class ExportedModel:
    """An exported model (or a ``.keras`` one) as one callable: float32 batch in, outputs out.

    Attributes:
        path: The file it was loaded from.
        format: ``"savedmodel"``, ``"tflite"``, ``"onnx"`` or ``"keras"``.
        input_shape: The input shape it expects, None where any size goes (the batch).
        output_shape: The output shape, None where unknown.
        record: What the model was trained on, as the file carries it (checked, see
            :func:`read_record`; a ``.keras`` model's :func:`senet.layers.training_info`),
            or None.
    """

    def __init__(
        self,
        path: str,
        format: str,
        input_shape: tuple,
        output_shape: tuple,
        run: Callable[[np.ndarray], np.ndarray],
        record: dict[str, Any] | None = None,
    ):
        self.path = path
        self.format = format
        self.input_shape = input_shape
        self.output_shape = output_shape
        self.record = record
        self._run = run

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Outputs (float32) for the batch ``x``, e.g. class probabilities ``(B, classes)``."""
        x = np.asarray(x, dtype=np.float32)
        expected = len(self.input_shape)
        if x.ndim != expected or any(
            size is not None and size != got
            for size, got in zip(self.input_shape[1:], x.shape[1:], strict=True)
        ):
            raise ExportError(
                f"{self.path} expects inputs of shape {self.input_shape}, got {x.shape}"
            )
        return np.asarray(self._run(x), dtype=np.float32)

    def __repr__(self) -> str:
        return f"ExportedModel({self.path!r}, format={self.format!r}, input={self.input_shape})"


def is_exported(path: str | os.PathLike) -> bool:
    """Whether ``path`` names an exported model rather than a Keras one.

    True for a ``.tflite`` or ``.onnx`` path (existing or not) and for a directory holding
    ``saved_model.pb``: what ``senet predict`` and ``senet evaluate`` open with
    :func:`load_exported` instead of senet's Keras loader.

    Example:
        >>> is_exported("face.tflite"), is_exported("run/model.keras")
        (True, False)
    """
    path = Path(path)
    return path.suffix.lower() in EXPORTED_FILE_SUFFIXES or (path / "saved_model.pb").is_file()


def load_exported(path: str | os.PathLike, *, allow_savedmodel: bool = False) -> ExportedModel:
    """Open an exported model for inference, whatever its format.

    Formats by path: a directory holding ``saved_model.pb`` (TensorFlow, its
    ``serving_default`` signature; only with ``allow_savedmodel``), ``.tflite``
    (``ai-edge-litert`` when installed, else ``tf.lite``), ``.onnx`` (``onnxruntime``) and
    ``.keras`` (senet's Keras loader, safe mode). Single-input, single-output models; inputs
    are float32 batches (an integer-I/O TFLite file is quantised and dequantised here), any
    batch size where the file allows. The training record the file carries
    (:func:`senet.export.export_model` writes it) is read and checked too: ``model.record``.

    What runs is checked first, because a model file can carry more than arithmetic:

    - A SavedModel is a TensorFlow graph that can call any TensorFlow op, file writes
      (``tf.io.write_file``) included; it is refused unless ``allow_savedmodel`` (CLI
      ``--allow-savedmodel``), and then opened with a warning. Load only SavedModels you
      trust; ``senet export`` writes ``.tflite`` and ``.onnx`` too.
    - A ``.tflite`` file may run only TFLite's built-in operators: a custom or Flex
      operator (Flex runs TensorFlow ops, file access included, inside the file) is refused.
    - An ``.onnx`` file's external data must lie in the model's folder (or below it): a
      tensor whose data file is an absolute path or leads out of the folder (``..``) is
      refused, so a model cannot read files it was not shipped with.

    Args:
        path: The file or SavedModel directory.
        allow_savedmodel: Accept a SavedModel directory (trusted ones only).

    Returns:
        An :class:`ExportedModel`: ``model(x)`` -> float32 outputs, ``model.input_shape``.

    Raises:
        FileNotFoundError: Nothing at ``path``.
        ExportError: Not a model of a known format, unreadable, refused as above, or with a
            malformed training record (one line, naming the path).
        MissingDependencyError: ``onnxruntime`` missing for an ``.onnx`` file.

    Example:
        >>> model = load_exported("face.tflite")  # doctest: +SKIP
        >>> model(images).argmax(-1)  # doctest: +SKIP
    """
    path = Path(path)
    if path.is_dir() and (path / "saved_model.pb").is_file():
        if not allow_savedmodel:
            raise ExportError(
                f"cannot load {path}: a SavedModel runs its own TensorFlow graph, which can "
                "read and write files; load only SavedModels you trust, with "
                "--allow-savedmodel (allow_savedmodel=True), or use the .tflite/.onnx export"
            )
        warnings.warn(
            f"{path}: loading a SavedModel runs the TensorFlow graph in it, which can read "
            "and write files; senet checks nothing in it (--allow-savedmodel)",
            UserWarning,
            stacklevel=2,
        )
    return open_exported(path)


def open_exported(path: Path) -> ExportedModel:
    """:func:`load_exported` without the SavedModel opt-in (for files senet just wrote)."""
    if not path.exists():
        raise FileNotFoundError(f"no such model file: {path}")
    suffix = path.suffix.lower()
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise ExportError(f"cannot load {path}: a directory without saved_model.pb")
        opener = _open_saved_model
    elif suffix in (".tflite", ".onnx", ".keras"):
        opener = {".tflite": _open_tflite, ".onnx": _open_onnx, ".keras": _open_keras}[suffix]
    else:
        raise ExportError(
            f"cannot load {path}: expected a .keras, .tflite or .onnx file or a SavedModel "
            "directory"
        )
    try:
        return opener(str(path))
    except (ExportError, MemoryError, KeyboardInterrupt):
        raise
    except Exception as error:  # noqa: BLE001 - any failure to open means: not a usable model
        raise ExportError(f"cannot load {path}: {first_line(error)}") from error


def read_keras(path) -> Any:
    """The model in a ``.keras`` file, through senet's one loader (safe mode, no compile)."""
    from senet.layers import ModelLoadError, load_model

    try:
        return load_model(path, compile=False)
    except ModelLoadError as error:  # already one line naming the file and the fault
        raise ExportError(str(error)) from error


def _open_keras(path: str) -> ExportedModel:
    from senet.layers import training_info

    model = read_keras(path)
    check_single_io(model, path)
    record = _checked(training_info(model), path)

    def run(x):
        return np.concatenate(
            [np.asarray(model(x[i : i + BATCH], training=False)) for i in range(0, len(x), BATCH)]
        )

    return ExportedModel(
        path, "keras", tuple(model.input_shape), tuple(model.output_shape), run, record
    )


def _open_saved_model(path: str) -> ExportedModel:
    import tensorflow as tf

    record = _saved_model_record(path)  # first: a malformed one fails before the graph loads
    loaded = tf.saved_model.load(path)
    signature = loaded.signatures.get("serving_default")
    if signature is None:
        raise ExportError(f"cannot load {path}: the SavedModel has no serving_default signature")
    inputs = signature.structured_input_signature[1]
    outputs = signature.structured_outputs
    if len(inputs) != 1 or len(outputs) != 1:
        raise ExportError(f"cannot load {path}: expected one input and one output")
    (name, spec), (output_spec,) = next(iter(inputs.items())), outputs.values()

    def run(x):
        (value,) = signature(**{name: tf.constant(x)}).values()
        return value.numpy()

    return ExportedModel(
        path,
        "savedmodel",
        tuple(spec.shape.as_list()),
        tuple(output_spec.shape.as_list()),
        run,
        record,
    )


def _saved_model_record(path: str) -> dict[str, Any] | None:
    """The record in a SavedModel's ``assets/senet_record.json``, or None."""
    file = Path(path) / "assets" / RECORD_FILE
    if not (file.exists() or file.is_symlink()):
        return None
    if not file.is_file():
        raise ExportError(f"{printable(file)}: not a regular file (a training record expected)")
    with open(file, "rb") as stream:
        data = stream.read(MAX_RECORD_BYTES + 1)  # never more: a link to a device is bounded
    return read_record(data, path)


def read_record(data: bytes | str, path: str | os.PathLike) -> dict[str, Any] | None:
    """The training record an exported file carries, from its JSON text, checked.

    The text must be at most :data:`MAX_RECORD_BYTES` bytes of UTF-8 holding one JSON object,
    whose fields pass :func:`senet.layers.info.check_record` (text fields come back with
    control characters escaped). An empty object is no record (None).

    Raises:
        ExportError: One line naming ``path`` and what is wrong, e.g. ``face.tflite: its
            training record's class_names must be a list of 1 to 100000 strings ..., got 7``.

    Example:
        >>> read_record(b'{"dataset": "synthetic", "channels": 1}', "face.tflite")
        {'dataset': 'synthetic', 'channels': 1}
    """
    source = printable(os.fspath(path))
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if len(data) > MAX_RECORD_BYTES:
        raise _too_big(path)
    try:
        record = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise ExportError(
            f"{source}: its training record is not JSON text ({first_line(error)})"
        ) from None
    if record is None:  # check_record lets None through: "nothing recorded"
        raise ExportError(f"{source}: its training record must be a JSON object, got null")
    return _checked(record, path) or None


def _too_big(path) -> ExportError:
    return ExportError(
        f"{printable(os.fspath(path))}: its training record is over {MAX_RECORD_BYTES:,} bytes; "
        "senet reads records up to that size"
    )


def _checked(record, path) -> dict[str, Any] | None:
    """``check_record``, its ValueError as a one-line ExportError (which open_exported passes
    through as it is, without naming the file twice)."""
    from senet.layers.info import check_record

    try:
        return check_record(record, path)
    except ValueError as error:
        raise ExportError(first_line(error)) from None


def _tflite_record(content: bytes, path: str) -> dict[str, Any] | None:
    """The record in a TFLite flatbuffer's metadata entry :data:`RECORD_NAME`, or None.

    Read from the flatbuffer in place (the model is not decoded into Python objects); only the
    entry's buffer is copied, after its length is checked.
    """
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAs(content, 0)
    wanted = RECORD_NAME.encode()
    entries = [
        model.Metadata(i)
        for i in range(model.MetadataLength())
        if model.Metadata(i).Name() == wanted
    ]
    if not entries:
        return None
    if len(entries) > 1:
        raise ExportError(
            f"{printable(path)}: it holds {len(entries)} training records ({RECORD_NAME} "
            "metadata entries); expected one"
        )
    index = entries[0].Buffer()
    if not 0 <= index < model.BuffersLength():
        raise ExportError(
            f"{printable(path)}: its training record points to buffer {index}, which the file "
            "does not have"
        )
    buffer = model.Buffers(index)
    if buffer.DataLength() > MAX_RECORD_BYTES:
        raise _too_big(path)  # before copying it
    data = b"" if buffer.DataIsNone() else buffer.DataAsNumpy().tobytes()
    return read_record(data, path)


def _check_tflite_ops(content: bytes, path: str) -> None:
    """Refuse a TFLite flatbuffer with any operator that is not one of TFLite's built-ins
    (custom ops, and Flex ops, which run TensorFlow kernels, file access included)."""
    from tensorflow.lite.python import schema_py_generated as schema

    try:
        model = schema.Model.GetRootAs(content, 0)
        codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
        custom = sorted(
            {
                (code.CustomCode() or b"?").decode("utf-8", "replace")
                for code in codes
                if max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
                == schema.BuiltinOperator.CUSTOM
            }
        )
    except Exception as error:  # noqa: BLE001 - any parse failure: not a TFLite model
        raise ExportError(f"cannot load {path}: not a TFLite model ({first_line(error)})") from None
    if custom:
        names = printable(", ".join(custom[:5]) + (", ..." if len(custom) > 5 else ""))
        raise ExportError(
            f"cannot load {path}: it uses operators outside TFLite's built-ins ({names}); "
            "senet runs only built-in operators (a Flex or custom operator can run arbitrary "
            "TensorFlow code, file access included)"
        )


def _tflite_interpreter(path: str, content: bytes | None = None):
    """A LiteRT interpreter of ``path`` (whose bytes are ``content`` when already read),
    tensors allocated.

    LiteRT applies its XNNPACK delegate by default. XNNPACK refuses an int8 graph whose
    requantization scales are out of its range (e.g. a tensor that was zero on every
    calibration image, such as an SE bottleneck whose ReLU never fires in an untrained
    model, gets a scale near 1e-8): then the file is run with LiteRT's reference kernels
    (slower, the same results the converter intended) and a warning says why.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
        OpResolverType = tf.lite.experimental.OpResolverType
    if content is None:
        content = _read_tflite(path)
    with warnings.catch_warnings():  # tf.lite.Interpreter is deprecated, still works
        warnings.simplefilter("ignore")
        interpreter = Interpreter(model_content=content)
        try:
            interpreter.allocate_tensors()
            return interpreter
        except RuntimeError as error:
            if "XNNPACK" not in str(error):
                raise
            reason = first_line(error)
            interpreter = Interpreter(
                model_content=content,
                experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
            )
            interpreter.allocate_tensors()
    warnings.warn(
        f"{Path(path).name}: LiteRT's XNNPACK delegate cannot run this model ({reason}); "
        "running it with LiteRT's reference kernels, which are slower. In an int8 model this "
        "usually means a tensor was constant on every calibration image: calibrate on more "
        "varied data, or on the data the model was trained on",
        stacklevel=3,
    )
    return interpreter


def _read_tflite(path: str) -> bytes:
    """The bytes of a TFLite file, its operators checked (:func:`_check_tflite_ops`)."""
    with open(path, "rb") as file:
        content = file.read()
    _check_tflite_ops(content, path)  # what is checked is what runs: the same bytes
    return content


def _open_tflite(path: str) -> ExportedModel:
    content = _read_tflite(path)
    record = _tflite_record(content, path)
    interpreter = _tflite_interpreter(path, content)
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise ExportError(f"cannot load {path}: expected one input and one output")
    source, target = inputs[0], outputs[0]
    interpreter.allocate_tensors()

    def run(x):
        if tuple(source["shape"]) != x.shape:
            interpreter.resize_tensor_input(source["index"], x.shape, strict=True)
            interpreter.allocate_tensors()
            source["shape"] = np.array(x.shape)
        interpreter.set_tensor(source["index"], _quantize(x, source))
        interpreter.invoke()
        return _dequantize(interpreter.get_tensor(target["index"]), target)

    return ExportedModel(path, "tflite", _tflite_shape(source), _tflite_shape(target), run, record)


def _tflite_shape(detail: dict) -> tuple:
    shape = detail.get("shape_signature", detail["shape"])
    return tuple(None if size < 0 else int(size) for size in shape)


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return x
    scale, zero_point = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(detail["dtype"])


def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return y
    scale, zero_point = detail["quantization"]
    return (y.astype(np.float32) - zero_point) * scale


def _check_onnx_external_data(path: str) -> None:
    """Refuse an ONNX model whose external data files lie outside its folder."""
    try:
        import onnx
    except ImportError:  # onnxruntime alone: it checks paths itself (1.17+)
        return
    model = onnx.load(path, load_external_data=False)
    folder = Path(path).resolve().parent

    def tensors(graph):
        yield from graph.initializer
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.HasField("t"):
                    yield attribute.t
                yield from attribute.tensors
                for subgraph in [attribute.g, *attribute.graphs]:
                    yield from tensors(subgraph)

    for tensor in tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (folder / location).resolve()
        if not location or Path(location).is_absolute() or not target.is_relative_to(folder):
            raise ExportError(
                f"cannot load {path}: tensor {printable(tensor.name)!r} takes its data from "
                f"{printable(location)!r}, outside the model's folder; senet reads external "
                "data only from the model's folder"
            )


def _open_onnx(path: str) -> ExportedModel:
    runtime = require("onnxruntime", "onnxruntime", "running an ONNX model")
    _check_onnx_external_data(path)
    session = runtime.InferenceSession(path, providers=["CPUExecutionProvider"])
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1:
        raise ExportError(f"cannot load {path}: expected one input and one output")
    name = inputs[0].name
    text = session.get_modelmeta().custom_metadata_map.get(RECORD_NAME)
    record = None if text is None else read_record(text, path)

    def run(x):
        return session.run(None, {name: x})[0]

    return ExportedModel(
        path, "onnx", _onnx_shape(inputs[0].shape), _onnx_shape(outputs[0].shape), run, record
    )


def _onnx_shape(shape) -> tuple:
    return tuple(size if isinstance(size, int) and size > 0 else None for size in shape)


def require(module: str, package: str, purpose: str, hint: str = EXTRA_HINT):
    """Import an optional dependency, or raise the one-line error naming the extra (``hint``:
    what to install; the export extra by default)."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDependencyError(
            f"{purpose} needs the optional package {package}, which is not installed: {hint}"
        ) from error


def check_single_io(model, name) -> None:
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ExportError(
            f"{name}: export supports models with one input and one output, got "
            f"{len(model.inputs)} and {len(model.outputs)}"
        )


# --------------------------------------------------------------------------- classifiers


def load_classifier(
    model_path: str | os.PathLike, *, allow_h5: bool = False, allow_savedmodel: bool = False
) -> Any:
    """A saved model for inference, Keras or exported: the one dispatch of predict, explain
    and evaluate.

    A ``.tflite`` or ``.onnx`` file or a directory (a SavedModel, only with
    ``allow_savedmodel``: its graph can run any TensorFlow op) opens with
    :func:`senet.export.load_exported` as an :class:`senet.export.ExportedModel` (callable on
    a float32 batch, with ``input_shape`` and ``output_shape``); anything else loads with
    :func:`senet.layers.load_model` without the training state (safe mode, ``.keras`` only
    unless ``allow_h5``). A model that cannot be loaded is a one-line ``ValueError`` naming
    it (:class:`senet.layers.ModelLoadError`, :class:`senet.export.ExportError`); a missing
    runtime (``onnxruntime``) is a :class:`senet.export.MissingDependencyError` that names
    ``pip install "senet[export]"``.
    """
    if is_exported(model_path) or Path(model_path).is_dir():
        return load_exported(model_path, allow_savedmodel=allow_savedmodel)
    from senet.layers import load_model

    return load_model(model_path, allow_h5=allow_h5, compile=False)


def class_names_for(
    model_path: str | os.PathLike, num_classes: int, record: dict | None = None
) -> tuple[str, ...]:
    """Class names of a saved model: its ``record`` (:func:`model_record`), its run's
    ``metrics.json``, else defaults (see module)."""
    names = (record or {}).get("class_names")
    if not (isinstance(names, list) and len(names) == num_classes):
        names = run_class_names(model_path)
    if isinstance(names, list) and len(names) == num_classes:
        return tuple(printable(name) for name in names)
    if num_classes == 7:
        from senet.data import EMOTIONS

        return tuple(EMOTIONS)
    return tuple(f"class_{k}" for k in range(num_classes))


# model -> compiled inference function; weak so a dropped model frees its function
_PREDICTORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def predictor(model) -> Callable[[np.ndarray], np.ndarray]:
    """A fast ``(B, H, W, C) float32 -> (B, K)`` probabilities function for ``model``.

    On TensorFlow it is one ``tf.function`` with a fixed input signature (no retracing per
    batch size); elsewhere ``predict_on_batch``. Cached per model (weakly). An exported model
    (:class:`senet.export.ExportedModel`) is such a function already and is returned as is.
    """
    if isinstance(model, ExportedModel):
        return model
    predictor = _PREDICTORS.get(model)
    if predictor is not None:
        return predictor
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)
        compiled = tf.function(lambda x: model(x, training=False), input_signature=[spec])

        def predictor(batch: np.ndarray) -> np.ndarray:
            return compiled(batch).numpy()

    else:

        def predictor(batch: np.ndarray) -> np.ndarray:
            return np.asarray(keras.ops.convert_to_numpy(model.predict_on_batch(batch)))

    _PREDICTORS[model] = predictor
    return predictor


def model_input_size(model) -> tuple[int, int]:
    """``(side, channels)`` of a classifier's square image input ``(B, side, side, 1 or 3)``.

    Raises:
        ValueError: The model takes something else, or its input side is not fixed.
    """
    shape = model.input_shape
    if len(shape) != 4 or shape[1] is None or shape[3] not in (1, 3):
        raise ValueError(
            "Expected a model taking (B, H, W, 1 or 3) images with known H and W, "
            f"got input_shape={shape}"
        )
    return int(shape[1]), int(shape[3])


def model_record(model, model_path: str | os.PathLike) -> dict[str, Any] | None:
    """What a classifier was trained on, or None when nothing says.

    The record a senet-trained Keras model holds (:func:`senet.layers.training_info`, see
    :func:`senet.train.training_record`), or the one an exported file carries
    (:attr:`ExportedModel.record`, written by :func:`senet.export.export_model`); else, for
    an older export or model, the run directory beside it (or one level up):
    ``config.json``'s data source, image size and channels, and ``metrics.json``'s class
    names. A foreign model has none.
    """
    from senet.layers import training_info
    from senet.layers.info import check_record, dataset_kind

    record = training_info(model)
    if record is None and isinstance(model, ExportedModel):
        record = model.record  # checked when the file was opened; checking again is a no-op
    if record is not None:
        return check_record(record, model_path)
    config = find_run_config(model_path)
    if config is None:
        return None
    try:
        record = {
            "task": config.get("task"),
            "dataset": dataset_kind(config["data"]),
            "image_size": config.get("image_size"),
            "channels": config.get("channels"),
            "input_range": [0, 1],
        }
    except (KeyError, TypeError, AttributeError, ValueError):
        return None
    names = run_class_names(model_path)
    if names is not None:
        record["class_names"] = names
    return check_record(record, find_run(model_path) / "config.json")


def open_model(
    model_path: str | os.PathLike, *, allow_h5: bool = False, allow_savedmodel: bool = False
) -> tuple[str, Any]:
    """The task a saved model was trained for (``"classification"`` unless it says), and
    the model when telling meant loading it.

    Its run's ``config.json`` when the model sits in a run (nothing is loaded: the model
    is None), else the record in the model (:func:`model_record`): then the loaded model
    comes back too, for the command to use instead of loading it again. A model that
    cannot be loaded counts as a classifier here (model None): the command that loads it
    next reports why it cannot.

    Returns:
        ``(task, model or None)``.
    """
    config = find_run_config(model_path)
    if config is not None and isinstance(config.get("task"), str):
        return config["task"], None
    try:
        model = load_classifier(model_path, allow_h5=allow_h5, allow_savedmodel=allow_savedmodel)
        record = model_record(model, model_path)
    except (OSError, ValueError, ImportError):
        return "classification", None
    task = (record or {}).get("task")
    return (task if isinstance(task, str) and task else "classification"), model


def warn_if_synthetic(record: dict | None, model_path: str | os.PathLike) -> None:
    """One ``UserWarning`` line when the model was trained on senet's synthetic faces."""
    if record and record.get("dataset") == "synthetic":
        warnings.warn(
            f"{model_path} was trained on synthetic cartoon faces; its answers on photos mean "
            "little: train on FER2013 or start from an imported network (see README)",
            UserWarning,
            stacklevel=3,
        )


@dataclass(frozen=True)
class InputFormat:
    """How faces become a classifier's inputs.

    Attributes:
        size: The model's input side.
        channels: The model's input channels (1 or 3).
        input_range: ``(low, high)`` the model expects; crops in [0, 1] are mapped linearly.
        grey: Feed the grey image (repeated over the channels of a 3-channel model).
    """

    size: int
    channels: int
    input_range: tuple[float, float] = (0.0, 1.0)
    grey: bool = True


def input_format(
    model,
    *,
    record: dict | None = None,
    input_range: str | Sequence[float] | None = None,
    colour: str | None = None,
) -> InputFormat:
    """The :class:`InputFormat` of ``model``, from the options, its record and its input.

    Args:
        model: A loaded classifier (Keras or exported).
        record: What it was trained on (:func:`model_record`), if known.
        input_range: ``"0,1"`` or ``"-1,1"`` (or the pair); default the record's, else
            ``(0, 1)``.
        colour: ``"grey"`` or ``"rgb"``; default grey for a 1-channel input and RGB for a
            3-channel one. ``"rgb"`` on a 1-channel model is an error.
    """
    size, channels = model_input_size(model)
    if input_range is None:
        input_range = (record or {}).get("input_range") or (0.0, 1.0)
    if isinstance(input_range, str):
        input_range = INPUT_RANGES[check_choice("input_range", input_range, tuple(INPUT_RANGES))]
    low, high = (float(value) for value in input_range)
    if (low, high) not in INPUT_RANGES.values():
        raise fail("input_range", "0,1 or -1,1", input_range)
    if colour is None:
        colour = "grey" if channels == 1 else "rgb"
    colour = check_choice("colour", colour, ("grey", "rgb"))
    if colour == "rgb" and channels == 1:
        raise fail("colour", "grey for a model taking 1-channel (grey) images", colour)
    return InputFormat(size, channels, (low, high), colour == "grey")


def to_input_range(batch: np.ndarray, input_range: Sequence[float]) -> np.ndarray:
    """Images in [0, 1] mapped linearly to ``input_range`` (``(0, 1)``: unchanged), float32."""
    low, high = (float(value) for value in input_range)
    batch = np.asarray(batch, np.float32)
    if (low, high) == (0.0, 1.0):
        return batch
    return (batch * np.float32(high - low) + np.float32(low)).astype(np.float32)


def load_for_inference(
    model_path: str | os.PathLike,
    *,
    allow_h5: bool = False,
    allow_savedmodel: bool = False,
    class_names: Sequence[str] | None = None,
    input_range: str | Sequence[float] | None = None,
    colour: str | None = None,
    model: Any = None,
) -> tuple[Any, InputFormat, Sequence[str]]:
    """A saved classifier, how faces become its inputs, and its class names.

    What prediction and explanation both do first: :func:`load_classifier`, then
    :func:`input_format` from the model's record (:func:`model_record`) and the
    overrides, the class names (``class_names``, else :func:`class_names_for`), and
    :func:`warn_if_synthetic`. ``model``: the model at ``model_path`` when already loaded
    (:func:`open_model`), else it is loaded here.

    Returns:
        ``(model, inputs, class_names)``.
    """
    if model is None:
        model = load_classifier(model_path, allow_h5=allow_h5, allow_savedmodel=allow_savedmodel)
    record = model_record(model, model_path)
    inputs = input_format(model, record=record, input_range=input_range, colour=colour)
    if class_names is None:
        class_names = class_names_for(model_path, int(model.output_shape[-1]), record)
    warn_if_synthetic(record, model_path)
    return model, inputs, class_names
