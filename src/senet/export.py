"""Export a Keras model to SavedModel, TFLite (LiteRT) or ONNX, and prove the file is faithful.

:func:`export_model` writes the file through Keras' public ``Model.export`` (TensorFlow
backend), then runs it with the runtime a deployment would use (TensorFlow for a SavedModel,
``ai-edge-litert`` or ``tf.lite`` for TFLite, ``onnxruntime`` for ONNX) on sample inputs and
compares it with the Keras model: the largest absolute difference of the outputs and the
top-1 agreement. A file beyond tolerance is not written (:class:`ParityError`).
:func:`load_exported` opens any such file (and a ``.keras`` model) as one callable, so
``predict`` and ``evaluate`` can run every format the same way.

Tolerances (:data:`TOLERANCES`), on probabilities:

- float (SavedModel, TFLite, ONNX without quantisation): max abs diff <= 1e-4. The file
  computes the same float32 function; only the order of float operations differs.
- ``float16`` (weights stored in half precision, computed in float32): max abs diff <= 5e-3,
  about ten times float16's unit round-off (2**-11 ~ 4.9e-4): every weight moves by up to
  that relative amount and the errors add up over the layers, in part cancelling (measured
  1.6e-4 on a small SE emotion CNN).
- ``dynamic`` (int8 weights, activations quantised to int8 on the fly) and ``int8`` (full
  integer, calibrated): top-1 agreement >= 95% with the Keras model on held-out inputs. An
  8-bit computation moves probabilities by up to a few hundredths, so a max abs diff bound
  would either fail sound models or pass broken ones; what a user sees is the label.

Top-1 is the argmax of the last axis at every output position (a classifier's label, a
segmentation's per-pixel class); for one output channel it is ``p > 0.5``.

``int8`` keeps float32 inputs and outputs and allows integer kernels only
(``TFLITE_BUILTINS_INT8``): an op without an int8 kernel (the known trouble with hard
sigmoid gates and global means elsewhere) fails the conversion with the converter's message
instead of leaving a slow float island in the file. Float TFLite files use built-in ops only,
so every LiteRT runtime can run them (no Flex delegate).

Example:
    >>> from senet.models import emotion_cnn
    >>> model = emotion_cnn((32, 32, 1), widths=(8, 16))
    >>> result = export_model(model, "face.onnx", format="onnx")  # doctest: +SKIP
    >>> result.max_abs_diff < 1e-4, load_exported("face.onnx").input_shape  # doctest: +SKIP
    (True, (None, 32, 32, 1))
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from senet._files import TEMP_PREFIX, remove_stale_temporaries
from senet.checks import check_choice, check_positive, fail, is_none
from senet.errors import ExportError, MissingDependencyError, ParityError

__all__ = [
    "EXTRA_HINT",
    "FORMATS",
    "QUANTIZATIONS",
    "TOLERANCES",
    "ExportError",
    "ExportResult",
    "ExportedModel",
    "MissingDependencyError",
    "ParityError",
    "Tolerance",
    "export_model",
    "is_exported",
    "load_exported",
    "parity",
    "sample_inputs",
]

FORMATS = ("savedmodel", "tflite", "onnx")
QUANTIZATIONS = ("dynamic", "float16", "int8")
#: What to run when an optional export dependency is missing.
EXTRA_HINT = 'pip install "senet[export]"'
_SUFFIXES = {"tflite": ".tflite", "onnx": ".onnx"}
_BATCH = 32
#: Side of the sample images for a model whose spatial size is not fixed.
_DEFAULT_SIDE = 48


@dataclass(frozen=True)
class Tolerance:
    """What an exported file must meet: a max abs diff bound and/or a top-1 agreement floor."""

    max_abs_diff: float | None = None
    min_agreement: float | None = None

    def violations(self, max_abs_diff: float, agreement: float) -> list[str]:
        """The criteria that ``max_abs_diff`` and ``agreement`` break, as readable phrases."""
        broken = []
        if self.max_abs_diff is not None and not max_abs_diff <= self.max_abs_diff:
            broken.append(f"max abs diff {max_abs_diff:.3g} > {self.max_abs_diff:g}")
        if self.min_agreement is not None and not agreement >= self.min_agreement:
            broken.append(f"top-1 agreement {agreement:.1%} < {self.min_agreement:.0%}")
        return broken


#: Parity tolerance of each quantisation (None: float); the module docstring says why.
TOLERANCES: dict[str | None, Tolerance] = {
    None: Tolerance(max_abs_diff=1e-4),
    "float16": Tolerance(max_abs_diff=5e-3),
    "dynamic": Tolerance(min_agreement=0.95),
    "int8": Tolerance(min_agreement=0.95),
}


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_model` wrote and how closely it matches the Keras model.

    Attributes:
        path: The file (a directory for a SavedModel).
        format: One of :data:`FORMATS`.
        quantize: One of :data:`QUANTIZATIONS` or None.
        size_bytes: Size on disk (all files of a SavedModel).
        fused: Whether the exported graph is the ``fuse_se`` inference model.
        samples: Number of inputs the parity check ran (0 without a check).
        max_abs_diff: Largest absolute difference of the outputs (None without a check).
        top1_agreement: Fraction of equal top-1 labels (None without a check).
        tolerance: The criteria checked, ``{"max_abs_diff": ..., "min_agreement": ...}``.
    """

    path: str
    format: str
    quantize: str | None
    size_bytes: int
    fused: bool
    samples: int
    max_abs_diff: float | None
    top1_agreement: float | None
    tolerance: dict

    def to_dict(self) -> dict:
        """A JSON-ready dict of the fields."""
        return asdict(self)


# --------------------------------------------------------------------------- running files


class ExportedModel:
    """An exported model (or a ``.keras`` one) as one callable: float32 batch in, outputs out.

    Attributes:
        path: The file it was loaded from.
        format: ``"savedmodel"``, ``"tflite"``, ``"onnx"`` or ``"keras"``.
        input_shape: The input shape it expects, None where any size goes (the batch).
        output_shape: The output shape, None where unknown.
    """

    def __init__(
        self,
        path: str,
        format: str,
        input_shape: tuple,
        output_shape: tuple,
        run: Callable[[np.ndarray], np.ndarray],
    ):
        self.path = path
        self.format = format
        self.input_shape = input_shape
        self.output_shape = output_shape
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
    return path.suffix.lower() in _SUFFIXES.values() or (path / "saved_model.pb").is_file()


def load_exported(path: str | os.PathLike, *, allow_savedmodel: bool = False) -> ExportedModel:
    """Open an exported model for inference, whatever its format.

    Formats by path: a directory holding ``saved_model.pb`` (TensorFlow, its
    ``serving_default`` signature; only with ``allow_savedmodel``), ``.tflite``
    (``ai-edge-litert`` when installed, else ``tf.lite``), ``.onnx`` (``onnxruntime``) and
    ``.keras`` (senet's Keras loader, safe mode). Single-input, single-output models; inputs
    are float32 batches (an integer-I/O TFLite file is quantised and dequantised here), any
    batch size where the file allows.

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
        ExportError: Not a model of a known format, unreadable, or refused as above (one
            line, naming the path).
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
    return _open_exported(path)


def _open_exported(path: Path) -> ExportedModel:
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
        raise ExportError(f"cannot load {path}: {_first_line(error)}") from error


def _read_keras(path) -> Any:
    """The model in a ``.keras`` file, through senet's one loader (safe mode, no compile)."""
    from senet.layers import ModelLoadError, load_model

    try:
        return load_model(path, compile=False)
    except ModelLoadError as error:  # already one line naming the file and the fault
        raise ExportError(str(error)) from error


def _open_keras(path: str) -> ExportedModel:
    model = _read_keras(path)
    _check_single_io(model, path)

    def run(x):
        return np.concatenate(
            [np.asarray(model(x[i : i + _BATCH], training=False)) for i in range(0, len(x), _BATCH)]
        )

    return ExportedModel(path, "keras", tuple(model.input_shape), tuple(model.output_shape), run)


def _open_saved_model(path: str) -> ExportedModel:
    import tensorflow as tf

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
        path, "savedmodel", tuple(spec.shape.as_list()), tuple(output_spec.shape.as_list()), run
    )


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
        raise ExportError(
            f"cannot load {path}: not a TFLite model ({_first_line(error)})"
        ) from None
    if custom:
        from senet.errors import printable

        names = printable(", ".join(custom[:5]) + (", ..." if len(custom) > 5 else ""))
        raise ExportError(
            f"cannot load {path}: it uses operators outside TFLite's built-ins ({names}); "
            "senet runs only built-in operators (a Flex or custom operator can run arbitrary "
            "TensorFlow code, file access included)"
        )


def _tflite_interpreter(path: str):
    """A LiteRT interpreter of ``path``, tensors allocated.

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
    with open(path, "rb") as file:
        content = file.read()
    _check_tflite_ops(content, path)  # what is checked is what runs: the same bytes
    with warnings.catch_warnings():  # tf.lite.Interpreter is deprecated, still works
        warnings.simplefilter("ignore")
        interpreter = Interpreter(model_content=content)
        try:
            interpreter.allocate_tensors()
            return interpreter
        except RuntimeError as error:
            if "XNNPACK" not in str(error):
                raise
            reason = _first_line(error)
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


def _open_tflite(path: str) -> ExportedModel:
    interpreter = _tflite_interpreter(path)
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

    return ExportedModel(path, "tflite", _tflite_shape(source), _tflite_shape(target), run)


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
            from senet.errors import printable

            raise ExportError(
                f"cannot load {path}: tensor {printable(tensor.name)!r} takes its data from "
                f"{printable(location)!r}, outside the model's folder; senet reads external "
                "data only from the model's folder"
            )


def _open_onnx(path: str) -> ExportedModel:
    runtime = _require("onnxruntime", "onnxruntime", "running an ONNX model")
    _check_onnx_external_data(path)
    session = runtime.InferenceSession(path, providers=["CPUExecutionProvider"])
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1:
        raise ExportError(f"cannot load {path}: expected one input and one output")
    name = inputs[0].name

    def run(x):
        return session.run(None, {name: x})[0]

    return ExportedModel(
        path, "onnx", _onnx_shape(inputs[0].shape), _onnx_shape(outputs[0].shape), run
    )


def _onnx_shape(shape) -> tuple:
    return tuple(size if isinstance(size, int) and size > 0 else None for size in shape)


# --------------------------------------------------------------------------- parity


def parity(reference: np.ndarray, outputs: np.ndarray) -> tuple[float, float]:
    """``(max abs diff, top-1 agreement)`` of ``outputs`` against ``reference``.

    Top-1 is the argmax of the last axis at every position (``p > 0.5`` for one channel);
    agreement is the fraction of positions where the two agree.

    Example:
        >>> parity(np.array([[0.2, 0.8], [0.6, 0.4]]), np.array([[0.3, 0.7], [0.4, 0.6]]))
        (0.2, 0.5)
    """
    reference, outputs = np.asarray(reference), np.asarray(outputs)
    if reference.shape != outputs.shape:
        raise ExportError(
            f"the exported model's outputs have shape {outputs.shape}, the Keras model's "
            f"{reference.shape}"
        )
    difference = float(np.max(np.abs(reference.astype(np.float64) - outputs)))
    if reference.shape[-1] == 1:
        agreement = np.mean((reference > 0.5) == (outputs > 0.5))
    else:
        agreement = np.mean(reference.argmax(-1) == outputs.argmax(-1))
    return round(difference, 12), float(agreement)


def sample_inputs(input_shape, n: int, *, seed: int = 0) -> np.ndarray:
    """``n`` float32 inputs in ``[0, 1]`` for a model with ``input_shape`` (batch first).

    Square 2-D images with 1 or 3 channels get synthetic faces
    (:func:`senet.data.synthetic_expressions`, gray repeated for RGB); anything else gets
    uniform noise. Unknown spatial sizes become 48.

    Example:
        >>> sample_inputs((None, 32, 32, 3), 4).shape
        (4, 32, 32, 3)
    """
    check_positive("n", n, integer=True)
    shape = tuple(_DEFAULT_SIDE if size is None else int(size) for size in input_shape[1:])
    if len(shape) == 3 and shape[0] == shape[1] >= 16 and shape[2] in (1, 3):
        from senet.data import synthetic_expressions

        images, _, _ = synthetic_expressions(n, image_size=shape[0], seed=seed)
        return np.repeat(images, shape[2], axis=-1) if shape[2] == 3 else images
    return np.random.default_rng(seed).random((n, *shape), dtype=np.float32)


# --------------------------------------------------------------------------- exporting


def export_model(
    model,
    out: str | os.PathLike,
    *,
    format: str = "savedmodel",
    quantize: str | None = None,
    calibration=None,
    check: bool = True,
    samples: int = 100,
    calibration_size: int = 200,
    fuse: bool = True,
    overwrite: bool = False,
    seed: int = 0,
) -> ExportResult:
    """Export ``model`` to ``out`` and check that the file computes what the model computes.

    The export goes through Keras' ``Model.export`` (TensorFlow backend) into a temporary
    sibling of ``out``, which is run on ``samples`` inputs with the format's runtime and
    compared with the Keras model (module docstring: tolerances); only a file within
    tolerance is moved to ``out``. The batch dimension stays dynamic in every format.

    Args:
        model: A single-input, single-output Keras model, or the path of a ``.keras`` file.
        out: Where to write: a directory for ``"savedmodel"``, a ``.tflite`` or ``.onnx``
            file.
        format: One of :data:`FORMATS`.
        quantize: TFLite only: None (float32), ``"dynamic"``, ``"float16"`` or ``"int8"``.
        calibration: Inputs that int8 calibrates on: None (synthetic faces, or noise for
            inputs that are not images), an array of inputs ``(N, *input_shape)`` in the
            model's scale, or any data source :func:`senet.data.load_dataset` reads
            (``"synthetic"``, a FER2013 csv, an image folder, an ``.npz``). When given, its
            held-out part (up to ``samples``, at most half) is also what the check runs on.
        check: Run the parity check (without it, ``max_abs_diff`` and ``top1_agreement``
            are None).
        samples: Number of held-out inputs of the parity check.
        calibration_size: Most inputs int8 calibrates on.
        fuse: Export the ``senet.models.fuse_se`` inference model where ``model`` has SE
            residual tails to fuse (the parity check compares it with ``model`` itself);
            other models are exported as they are.
        overwrite: Replace an existing file (or SavedModel directory) at ``out``.
        seed: Seed of the synthetic inputs.

    Returns:
        An :class:`ExportResult` (``path``, ``size_bytes``, ``max_abs_diff``,
        ``top1_agreement``, ...).

    Raises:
        ExportError: Bad arguments, a model file that is not a model, an unsupported model
            or a failed conversion (one line; the converter's error is chained).
        MissingDependencyError: ``tf2onnx``/``onnxruntime`` missing for ONNX; the message
            says ``pip install "senet[export]"``.
        ParityError: The file is beyond tolerance; nothing is written.

    Example:
        >>> from senet.models import emotion_cnn
        >>> model = emotion_cnn((32, 32, 1), widths=(8, 16))
        >>> export_model(model, "face.tflite", format="tflite").top1_agreement  # doctest: +SKIP
        1.0
    """
    format = check_choice("format", format, FORMATS)
    quantize = None if is_none(quantize) else check_choice("quantize", quantize, QUANTIZATIONS)
    samples = check_positive("samples", samples, integer=True)
    calibration_size = check_positive("calibration_size", calibration_size, integer=True)
    if quantize is not None and format != "tflite":
        raise fail(
            "quantize", f"None for format {format!r} (quantisation is TFLite only)", quantize
        )
    out = _check_out(Path(out), format, overwrite)
    _require_backend()
    if format == "onnx":
        _require("tf2onnx", "tf2onnx", "ONNX export")
        _require("onnx", "onnx", "ONNX export")
        if check:
            _require("onnxruntime", "onnxruntime", "checking an ONNX export")

    model = _load_model(model)
    _check_single_io(model, getattr(model, "name", "model"))
    representative, check_inputs = _inputs(
        model, quantize, calibration, samples, calibration_size, seed
    )
    from senet.models.fused import fuse_for_inference

    exported, fused = fuse_for_inference(model) if fuse else (model, False)

    temporary = out.with_name(f"{TEMP_PREFIX}{os.getpid()}-{out.name}")
    remove_stale_temporaries(out)  # what an export killed half-way (SIGKILL) left here
    _remove(temporary)
    try:
        exported(check_inputs[:1], training=False)  # Keras' ONNX export needs a called model
        _write(exported, temporary, format, quantize, representative)
        result = ExportResult(
            path=str(out),
            format=format,
            quantize=quantize,
            size_bytes=_size(temporary),
            fused=fused,
            samples=0,
            max_abs_diff=None,
            top1_agreement=None,
            tolerance={k: v for k, v in asdict(TOLERANCES[quantize]).items() if v is not None},
        )
        if check:
            result = _check_parity(model, temporary, check_inputs, result)
        _move(temporary, out, overwrite)
    finally:
        _remove(temporary)
    return result


def _check_out(out: Path, format: str, overwrite: bool) -> Path:
    suffix = _SUFFIXES.get(format)
    if suffix is not None and out.suffix.lower() != suffix:
        raise fail("out", f"a path ending in {suffix} for format {format!r}", str(out))
    if suffix is None and out.suffix.lower() in (".tflite", ".onnx", ".keras", ".h5"):
        raise fail("out", "a directory path for format 'savedmodel'", str(out))
    if out.is_symlink() and out.is_file():  # a link to a file: replace the file, keep the link
        out = Path(os.path.realpath(out))
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise ExportError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
        if format == "savedmodel" and not (out / "saved_model.pb").is_file():
            raise ExportError(f"{out} exists and is not a SavedModel; not replacing it")
        if format != "savedmodel" and not out.is_file():
            raise ExportError(f"{out} exists and is not a file; not replacing it")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"no such directory: {out.parent}")
    return out


def _require_backend() -> None:
    import keras

    if keras.backend.backend() != "tensorflow":
        raise ExportError(
            f"senet export needs the TensorFlow backend (KERAS_BACKEND=tensorflow), "
            f"not {keras.backend.backend()!r}"
        )


def _require(module: str, package: str, purpose: str):
    """Import an optional dependency, or raise the one-line error naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDependencyError(
            f"{purpose} needs the optional package {package}, which is not installed: {EXTRA_HINT}"
        ) from error


def _load_model(model):
    import keras

    if isinstance(model, keras.Model):
        return model
    if not isinstance(model, (str, os.PathLike)):
        raise fail("model", "a keras.Model or the path of a .keras file", model)
    return _read_keras(Path(model))


def _check_single_io(model, name) -> None:
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ExportError(
            f"{name}: export supports models with one input and one output, got "
            f"{len(model.inputs)} and {len(model.outputs)}"
        )


def _inputs(model, quantize, calibration, samples, calibration_size, seed):
    """``(representative inputs for int8 or None, held-out check inputs)``."""
    input_shape = tuple(model.input_shape)
    if calibration is None:
        representative = None
        if quantize == "int8":
            representative = sample_inputs(input_shape, calibration_size, seed=seed)
        return representative, sample_inputs(input_shape, samples, seed=seed + 1)
    data = _calibration_array(calibration, input_shape, samples + calibration_size, seed)
    if len(data) < 2:
        raise ExportError(f"calibration data has {len(data)} inputs; at least 2 are needed")
    held_out = min(samples, len(data) // 2)
    representative = data[:-held_out][:calibration_size] if quantize == "int8" else None
    return representative, data[-held_out:]


def _calibration_array(calibration, input_shape, size, seed) -> np.ndarray:
    if isinstance(calibration, (str, os.PathLike)):
        _, height, width, channels = (input_shape + (None,) * 4)[:4]
        if len(input_shape) != 4 or height != width or height is None or channels not in (1, 3):
            raise ExportError(
                f"calibration from a data source needs a model on square images with 1 or 3 "
                f"channels, not input shape {input_shape}; pass an array instead"
            )
        from senet.data import load_dataset

        splits = load_dataset(
            calibration,
            image_size=int(height),
            channels=int(channels),
            seed=seed,
            synthetic_size=size,
        )
        data = np.concatenate([splits[name].x for name in ("train", "val", "test")])
    else:
        data = np.asarray(calibration, dtype=np.float32)
    expected = input_shape[1:]
    if data.ndim != len(input_shape) or any(
        size is not None and size != got for size, got in zip(expected, data.shape[1:], strict=True)
    ):
        raise ExportError(
            f"calibration inputs have shape {data.shape}; the model expects {input_shape}"
        )
    return data.astype(np.float32, copy=False)


def _write(model, path: Path, format: str, quantize, representative) -> None:
    import tensorflow as tf

    if format == "savedmodel":
        options = {"format": "tf_saved_model"}
    elif format == "onnx":
        options = {"format": "onnx"}
    else:
        options = {"format": "litert", **_converter_options(tf, quantize, representative)}
    try:
        with _quiet():
            model.export(str(path), verbose=False, **options)
    except Exception as error:  # noqa: BLE001 - converters raise anything; keep it chained
        what = format if quantize is None else f"{format} ({quantize})"
        raise ExportError(
            f"{what} export of model {model.name!r} failed: {_first_line(error)}"
        ) from error


def _converter_options(tf, quantize, representative) -> dict:
    """``tf.lite.TFLiteConverter`` settings, as ``Model.export(format="litert")`` takes them."""
    builtins = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize is None:
        return {"target_spec": {"supported_ops": builtins}}
    options = {"optimizations": [tf.lite.Optimize.DEFAULT]}
    if quantize == "dynamic":
        options["target_spec"] = {"supported_ops": builtins}
    elif quantize == "float16":
        options["target_spec"] = {"supported_ops": builtins, "supported_types": [tf.float16]}
    else:

        def representative_dataset() -> Iterator[list[np.ndarray]]:
            for index in range(len(representative)):
                yield [representative[index : index + 1]]

        options["representative_dataset"] = representative_dataset
        options["target_spec"] = {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]}
    return options


def _check_parity(model, path: Path, inputs: np.ndarray, result: ExportResult) -> ExportResult:
    reference = np.concatenate(
        [
            np.asarray(model(inputs[i : i + _BATCH], training=False))
            for i in range(0, len(inputs), _BATCH)
        ]
    )
    with _quiet():
        outputs = _open_exported(Path(path))(inputs)  # senet wrote it: no opt-in asked
    max_abs_diff, agreement = parity(reference, outputs)
    result = ExportResult(
        **{
            **asdict(result),
            "samples": len(inputs),
            "max_abs_diff": max_abs_diff,
            "top1_agreement": agreement,
        }
    )
    broken = TOLERANCES[result.quantize].violations(max_abs_diff, agreement)
    if broken:
        what = result.format if result.quantize is None else f"{result.format} ({result.quantize})"
        raise ParityError(
            f"the {what} export does not match the Keras model on {len(inputs)} held-out "
            f"inputs: {'; '.join(broken)}; nothing written to {result.path}",
            result,
        )
    return result


# --------------------------------------------------------------------------- files


def _move(temporary: Path, out: Path, overwrite: bool) -> None:
    if overwrite and out.is_dir():
        old = out.with_name(f"{TEMP_PREFIX}{os.getpid()}-old-{out.name}")
        os.replace(out, old)
        os.replace(temporary, out)
        shutil.rmtree(old)
    else:
        os.replace(temporary, out)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())
    return path.stat().st_size


def _first_line(error: BaseException) -> str:
    for line in str(error).splitlines():
        if line.strip():
            return " ".join(line.split())
    return type(error).__name__


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the converters' Python warnings and log chatter (tf2onnx, absl)."""
    import logging

    loggers = [logging.getLogger(name) for name in ("tf2onnx", "absl", "tensorflow")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)
