"""Export a Keras model to SavedModel, TFLite (LiteRT) or ONNX, and prove the file is faithful.

:func:`export_model` writes the file through Keras' public ``Model.export`` (TensorFlow
backend), then runs it with the runtime a deployment would use (TensorFlow for a SavedModel,
``ai-edge-litert`` or ``tf.lite`` for TFLite, ``onnxruntime`` for ONNX) on sample inputs and
compares it with the Keras model: the largest absolute difference of the outputs and the
top-1 agreement. A file beyond tolerance is not written (:class:`ParityError`).
:func:`load_exported` opens any such file (and a ``.keras`` model) as one callable, so
``predict`` and ``evaluate`` can run every format the same way.

The file carries the model's training record (:func:`senet.layers.training_info`: the
data set, input size and range, class names), as UTF-8 JSON: in a TFLite file the flatbuffer
metadata entry ``senet_record`` (interpreters ignore metadata they do not know), in an ONNX
file the ``metadata_props`` key ``senet_record``, in a SavedModel ``assets/senet_record.json``.
``senet predict`` and ``evaluate`` read it (:attr:`ExportedModel.record`), so an exported
file keeps its class names, input range and synthetic-data warning away from its run.

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
import json
import os
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from senet._files import TEMP_PREFIX, remove_stale_temporaries
from senet.checks import check_choice, check_positive, fail, is_none
from senet.errors import (
    ExportError,
    MissingDependencyError,
    ParityError,
    first_line,
    printable,
)
from senet.inference import (
    BATCH,
    EXTRA_HINT,
    MAX_RECORD_BYTES,
    RECORD_FILE,
    RECORD_NAME,
    ExportedModel,
    check_single_io,
    is_exported,
    load_exported,
    model_record,
    open_exported,
    read_keras,
    read_record,
    require,
)
from senet.layers.registry import EXPORTED_FILE_SUFFIXES

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
_SUFFIXES = {suffix[1:]: suffix for suffix in EXPORTED_FILE_SUFFIXES}  # by format
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
    record: dict | None = None,
) -> ExportResult:
    """Export ``model`` to ``out`` and check that the file computes what the model computes.

    The export goes through Keras' ``Model.export`` (TensorFlow backend) into a temporary
    sibling of ``out``, which is run on ``samples`` inputs with the format's runtime and
    compared with the Keras model (module docstring: tolerances); only a file within
    tolerance gets the model's training record (module docstring) and is moved to ``out``.
    The batch dimension stays dynamic in every format.

    Args:
        model: A single-input, single-output Keras model, or the path of a ``.keras`` file.
            A keras-hub detector is exported as its raw head outputs
            (:func:`senet.models.retinanet.raw_detections`: box deltas and class
            probabilities per anchor), compared with the Keras model's the same way.
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
        record: The training record to write into the file (a dict of JSON values, checked
            as :func:`senet.layers.info.check_record` checks a model's). Default: the
            model's own (:func:`senet.layers.training_info`; for a ``.keras`` path,
            :func:`senet.inference.model_record`, which also reads the run directory beside
            the file); None there writes none, and so does ``record={}``.

    Returns:
        An :class:`ExportResult` (``path``, ``size_bytes``, ``max_abs_diff``,
        ``top1_agreement``, ...).

    Raises:
        ExportError: Bad arguments, a model file that is not a model, an unsupported model,
            a malformed training record or a failed conversion (one line; the converter's
            error is chained).
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
        require("tf2onnx", "tf2onnx", "ONNX export")
        require("onnx", "onnx", "ONNX export")
        if check:
            require("onnxruntime", "onnxruntime", "checking an ONNX export")

    source, model = model, _load_model(model)
    record = _record_text(source, model, record)  # the model's as given: before raw_detections
    from senet.models.retinanet import is_detector, raw_detections

    if is_detector(model):
        # the heads' outputs as one array; decoding them is documented (docs/detection.md)
        model = raw_detections(model)
    check_single_io(model, getattr(model, "name", "model"))
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
        if record is not None:
            _write_record(temporary, format, record)
            result = ExportResult(**{**asdict(result), "size_bytes": _size(temporary)})
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


def _load_model(model):
    import keras

    if isinstance(model, keras.Model):
        return model
    if not isinstance(model, (str, os.PathLike)):
        raise fail("model", "a keras.Model or the path of a .keras file", model)
    return read_keras(Path(model))


# --------------------------------------------------------------------------- the record


def _record_text(source, model, record) -> str | None:
    """The training record to write, as JSON text (None: none), checked.

    ``record`` when given; else ``model``'s own record, or, when ``source`` is the path of
    the ``.keras`` file ``model`` was read from, :func:`senet.inference.model_record`.
    """
    from senet.layers import training_info
    from senet.layers.info import check_record

    if record is not None:
        where = "record"
    elif isinstance(source, (str, os.PathLike)):
        where = os.fspath(source)
        try:
            record = model_record(model, source)
        except ValueError as error:  # one line naming the file and the field
            raise ExportError(first_line(error)) from None
    else:
        where = f"model {getattr(model, 'name', 'model')!r}"
        record = training_info(model)
    if not record:  # None or {}: nothing to write
        return None
    try:
        text = json.dumps(record, ensure_ascii=False, allow_nan=False)
        size = len(text.encode("utf-8"))
    except (TypeError, ValueError) as error:  # not JSON values, a lone surrogate
        raise ExportError(
            f"{printable(where)}: its training record must hold JSON values only "
            f"({first_line(error)})"
        ) from None
    try:
        check_record(json.loads(text), where)  # a dict, each field senet reads as it wants
    except ValueError as error:
        raise ExportError(first_line(error)) from None
    if size > MAX_RECORD_BYTES:
        raise ExportError(
            f"{printable(where)}: its training record is over {MAX_RECORD_BYTES:,} bytes as "
            "JSON; senet reads records up to that size"
        )
    return text


def _write_record(path: Path, format: str, text: str) -> None:
    """Write the record ``text`` into the exported file at ``path`` (module docstring: where),
    then read it back as :func:`senet.inference.load_exported` will."""
    try:
        if format == "tflite":
            _write_tflite_record(path, text)
        elif format == "onnx":
            _write_onnx_record(path, text)
        else:
            (path / "assets").mkdir(exist_ok=True)
            (path / "assets" / RECORD_FILE).write_text(text, encoding="utf-8")
        written = _read_back(path, format)
    except ExportError:
        raise
    except Exception as error:  # noqa: BLE001 - flatbuffers, protobuf, the disk: one line
        raise ExportError(
            f"writing the training record into the {format} export failed: {first_line(error)}"
        ) from error
    if written != read_record(text, path):
        raise ExportError(f"the training record written into the {format} export reads back wrong")


def _write_tflite_record(path: Path, text: str) -> None:
    """Add (or replace) the flatbuffer metadata entry ``senet_record``: the model is
    unpacked with TensorFlow's generated schema (its object API), the JSON appended as a
    buffer, and the whole repacked (about 1 s for a 100 MB ResNet-50 file)."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    content = path.read_bytes()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(content, 0))
    buffers = model.buffers or []
    if any((buffer.offset or 0) > 1 for buffer in buffers):
        # a model over 2 GB keeps its weights after the flatbuffer, at absolute offsets that
        # repacking would move
        warnings.warn(
            f"{path.name}: the TFLite file keeps its weights outside the flatbuffer (over "
            "2 GB); its training record is not written",
            UserWarning,
            stacklevel=4,
        )
        return
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    model.buffers = [*buffers, buffer]
    entry = schema.MetadataT()
    entry.name, entry.buffer = RECORD_NAME.encode(), len(model.buffers) - 1
    kept = [item for item in model.metadata or [] if item.name != entry.name]
    model.metadata = [*kept, entry]
    builder = flatbuffers.Builder(len(content) + (1 << 16))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(builder.Output())


def _write_onnx_record(path: Path, text: str) -> None:
    """Set the ONNX model's ``metadata_props`` key ``senet_record``. Tensors with external
    data stay references to their files (nothing else is read or written)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    kept = [prop for prop in model.metadata_props if prop.key != RECORD_NAME]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=RECORD_NAME, value=text)
    onnx.save(model, str(path))


def _read_back(path: Path, format: str) -> dict | None:
    """The record in the exported file, read without running it."""
    from senet import inference

    if format == "tflite":
        return inference._tflite_record(path.read_bytes(), str(path))
    if format == "onnx":
        import onnx

        model = onnx.load(str(path), load_external_data=False)
        texts = [prop.value for prop in model.metadata_props if prop.key == RECORD_NAME]
        return read_record(texts[0], path) if len(texts) == 1 else None
    return inference._saved_model_record(str(path))


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
            f"{what} export of model {model.name!r} failed: {first_line(error)}"
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
            np.asarray(model(inputs[i : i + BATCH], training=False))
            for i in range(0, len(inputs), BATCH)
        ]
    )
    with _quiet():
        outputs = open_exported(Path(path))(inputs)  # senet wrote it: no opt-in asked
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
