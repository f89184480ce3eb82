"""Build any attention layer from a short name, so networks take ``attention="se"``."""

from __future__ import annotations

import inspect
import json
import os
import re
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import keras

from senet._files import check_json_size
from senet.checks import fail, is_none
from senet.errors import ModelLoadError, first_line
from senet.layers.cbam import CBAM
from senet.layers.eca import EfficientChannelAttention
from senet.layers.spatial import ChannelSpatialSqueezeExcite, SpatialSqueezeExcite
from senet.layers.squeeze_excite import SqueezeExcite
from senet.plugins import load_entry_points

_REGISTRY: dict[str, Callable[..., keras.layers.Layer]] = {
    "se": SqueezeExcite,
    "eca": EfficientChannelAttention,
    "sse": SpatialSqueezeExcite,
    "scse": ChannelSpatialSqueezeExcite,
    "cbam": CBAM,
}


#: Packages add attention kinds under this entry-point group; ``senet`` loads them the first
#: time it looks a kind up, so ``senet train --attention NAME`` and every other command can
#: use them. In the package's ``pyproject.toml``::
#:
#:     [project.entry-points."senet.attention"]
#:     mykind = "mypackage.layers:MyAttention"
#:
#: The layer class must be a registered Keras serializable (so saved models load), and may
#: define ``flops(input_shape, output_shape, *, macs_only=False)`` (``senet bench`` counts
#: it) and ``identity_init(gain, *, check_only=False)`` (``insert_attention(init="identity")``).
ENTRY_POINT_GROUP = "senet.attention"
_plugins_loaded = False


def _load_plugins() -> None:
    """Register the kinds of the ``senet.attention`` entry points, once. A kind already
    registered (the built-ins, :func:`register` calls) is kept; one that fails to load is
    skipped with a one-line warning."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    load_entry_points(ENTRY_POINT_GROUP, known=_REGISTRY, register=register, what="attention kind")


def kinds() -> tuple[str, ...]:
    """The registered attention kinds, e.g. ``("se", "eca", "sse", "scse", "cbam")``, and
    those that packages add (:data:`ENTRY_POINT_GROUP`) or :func:`register` added."""
    _load_plugins()
    return tuple(_REGISTRY)


def attention_classes() -> tuple[type, ...]:
    """The layer classes of every registered kind (built-in, :func:`register`, entry
    points): what ``isinstance`` asks to find the attention layers in a model."""
    _load_plugins()
    return tuple(dict.fromkeys(f for f in _REGISTRY.values() if isinstance(f, type)))


def check_kind(argument: str, kind) -> str | None:
    """The registered kind ``kind`` names (lower case), or ``None`` for no attention.

    ``None`` and the word ``"none"`` in any case (:func:`senet.checks.is_none`) mean no
    attention; anything else must be a registered kind, matched without regard to case.
    Network builders check their ``attention`` argument with this too.
    """
    if is_none(kind):
        return None
    _load_plugins()
    if not isinstance(kind, str) or kind.lower() not in _REGISTRY:
        raise fail(argument, f"one of {kinds() + ('none',)} or None", kind)
    return kind.lower()


def register(kind: str, factory: Callable[..., keras.layers.Layer]) -> None:
    """Make ``attention(kind, ...)`` build ``factory(...)`` (a layer class or function).

    Kinds are case-insensitive, like :func:`attention`'s lookup: ``register("MyAttn", f)``
    is found by ``attention("myattn")`` and ``attention("MyAttn")``.
    """
    if not isinstance(kind, str) or not kind.strip() or is_none(kind):
        raise fail("kind", "a non-empty name other than 'none'", kind)
    if not callable(factory):
        raise fail("factory", "callable (a layer class or a function)", factory)
    # attention() looks kinds up in lower case, so store them that way.
    _REGISTRY[kind.lower()] = factory


def _accepts(factory, option: str) -> bool:
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return True
    return option in parameters


def attention(
    kind: str | None, *, reduction: float | None = None, **options
) -> keras.layers.Layer | None:
    """Build an attention layer by name.

    Args:
        kind: One of :func:`kinds` (``"se"``, ``"eca"``, ``"sse"``, ``"scse"``,
            ``"cbam"``), or ``None``/``"none"`` for no attention (returns ``None``).
        reduction: Bottleneck reduction ratio, passed only to kinds that have a
            bottleneck (se, scse, cbam) and ignored by the others (eca, sse), so a
            network can take one ``reduction`` for any ``kind``.
        **options: The layer's own arguments (``name``, ``squeeze``, ``gate``, ...).

    Returns:
        A new, unbuilt layer, or ``None``.

    Example:
        >>> attention("se", reduction=16, name="block1_se").name
        'block1_se'
        >>> attention("none") is None
        True
    """
    kind = check_kind("kind", kind)
    if kind is None:
        return None
    factory = _REGISTRY[kind]
    if reduction is not None and _accepts(factory, "reduction"):
        options["reduction"] = reduction
    return factory(**options)


# --------------------------------------------------------------------------- loading models


KERAS_SUFFIXES = (".keras",)
H5_SUFFIXES = (".h5", ".hdf5")
#: Formats ``senet export`` writes; they are not Keras models and load_model refuses them.
#: Hook: support for loading exported models goes in :func:`load_model` where
#: ``_check_format`` refuses them, dispatching on these suffixes.
#: The files among them (a SavedModel is a directory holding saved_model.pb).
EXPORTED_FILE_SUFFIXES = (".tflite", ".onnx")
EXPORTED_SUFFIXES = (*EXPORTED_FILE_SUFFIXES, ".pb")

_H5_WARNING = (
    "{path}: Keras's safe mode does not apply to .h5 files (CVE-2025-9905): loading one can "
    "run code it holds; load only .h5 files you trust"
)
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def load_model(
    path: str | os.PathLike,
    *,
    allow_h5: bool = False,
    compile: bool = True,  # noqa: A002 - Keras's own name for it
    custom_objects: dict | None = None,
) -> keras.Model:
    """Load a saved model, safely: the one loader every senet command uses.

    Every senet layer is registered (importing :mod:`senet.layers` does it). Keras's safe
    mode is always on: a config that asks to run Python code (a ``Lambda`` layer's
    bytecode) is refused, never executed. There is deliberately no ``safe_mode`` argument.
    (Keras lets a process-wide ``keras.config.enable_unsafe_deserialization()`` override
    the ``safe_mode=True`` passed here; senet never calls it.) Only local files are read:
    no URLs or ``hf://`` paths.

    Only ``.keras`` archives load by default. ``.h5``/``.hdf5`` files load only with
    ``allow_h5=True``, and then with a warning: Keras's safe mode does not apply to them
    (CVE-2025-9905), so load only ``.h5`` files you trust. Exported models (``.tflite``,
    ``.onnx``, SavedModel folders) are not Keras models and are refused.

    Args:
        path: The model file.
        allow_h5: Accept legacy ``.h5``/``.hdf5`` files (trusted ones only).
        compile: Restore the training configuration (loss, optimizer and its state);
            inference needs none of it.
        custom_objects: Classes and functions of your own that the model uses, by name.

    Returns:
        The model.

    Raises:
        FileNotFoundError: No such file.
        ModelLoadError: Anything else; one line naming the file and what is wrong with it
            (not a zip archive, no or bad ``config.json``, refused by safe mode, a class
            neither Keras nor senet defines, weights that do not fit the layers).

    Example:
        >>> model = load_model("run/model.keras")  # doctest: +SKIP
    """
    path = Path(path)
    config = None
    _load_plugins()  # their layer classes, so models that use them load
    if _check_format(path, allow_h5) == "h5":
        warnings.warn(_H5_WARNING.format(path=path), UserWarning, stacklevel=2)
        _check_h5_file(path)
    else:
        config = _read_keras_config(path)
        _import_keras_hub(path, config)
    try:
        with warnings.catch_warnings():
            if not compile:
                # a model that compiles itself when built (keras-hub's tasks) gets a fresh
                # optimizer that the file's state does not fit; not restoring it is asked
                warnings.filterwarnings("ignore", "Skipping variable loading for optimizer")
            # safe_mode=True for .h5 too, though Keras ignores it there (hence the warning)
            return keras.saving.load_model(
                path, custom_objects=custom_objects, compile=compile, safe_mode=True
            )
    except Exception as error:  # noqa: BLE001 - every failure becomes one line naming the file
        reason = _describe_failure(error, config)
        raise ModelLoadError(f"cannot load model {path}: {reason}") from error


def _check_format(path: Path, allow_h5: bool) -> str:
    """``"keras"`` or ``"h5"``, or the one-line error for a path load_model does not read."""
    if path.is_dir():
        raise ModelLoadError(
            f"cannot load model {path}: a directory (an exported SavedModel?); senet loads "
            ".keras files"
        )
    if not path.is_file():
        raise FileNotFoundError(f"cannot load model {path}: no such file")
    suffix = path.suffix.lower()
    if suffix in KERAS_SUFFIXES:
        return "keras"
    if suffix in H5_SUFFIXES:
        if not allow_h5:
            raise ModelLoadError(
                f"cannot load model {path}: .h5 files load only when asked (allow_h5=True, "
                "--allow-h5), because Keras's safe mode does not apply to them "
                "(CVE-2025-9905); load only .h5 files you trust, or save the model as .keras"
            )
        return "h5"
    if suffix in EXPORTED_SUFFIXES:
        # Exported files are not Keras models: senet.export.load_exported runs them, and
        # predict/evaluate dispatch there before calling this loader.
        raise ModelLoadError(
            f"cannot load model {path}: an exported model ({suffix}) is not a model format "
            "senet loads as Keras; senet predict and senet evaluate run it (in Python: "
            "senet.export.load_exported)"
        )
    raise ModelLoadError(
        f"cannot load model {path}: a file named {suffix or 'without a suffix'!r} is not a "
        "model format senet loads (.keras; .h5 with allow_h5=True / --allow-h5)"
    )


def _check_h5_file(path: Path) -> None:
    with open(path, "rb") as file:
        signature = file.read(len(_HDF5_SIGNATURE))
    if signature != _HDF5_SIGNATURE:
        raise ModelLoadError(f"cannot load model {path}: not an HDF5 file (corrupt or renamed?)")


def _import_keras_hub(path: Path, config) -> None:
    """keras-hub registers its classes (a detector's) when it is imported: import it when
    the file uses them, or say in one line how to install it."""
    if "keras_hub" not in json.dumps(config):
        return
    try:
        import keras_hub  # noqa: F401
    except ImportError:
        from senet.layers.pyramid import KERAS_HUB_INSTALL

        raise ModelLoadError(
            f"cannot load model {path}: it is a keras-hub model (a detector) and keras-hub is "
            f"not installed: {KERAS_HUB_INSTALL}"
        ) from None


def _read_keras_config(path: Path) -> dict:
    """The archive's config.json; one-line errors where Keras would misreport the fault.

    (Keras says "File not found" for a file that is not a zip, and raises a bare KeyError
    for an archive without config.json.)
    """
    if not zipfile.is_zipfile(path):
        raise ModelLoadError(
            f"cannot load model {path}: not a zip archive, so not a .keras file "
            "(truncated or corrupt?)"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            if "config.json" not in archive.namelist():
                raise ModelLoadError(
                    f"cannot load model {path}: the archive has no config.json "
                    "(not a Keras model file)"
                )
            # the size the archive declares bounds what zipfile inflates: checked first, so
            # a small file that inflates to gigabytes is refused before it is read
            try:
                check_json_size(archive.getinfo("config.json").file_size, "its config.json")
            except ValueError as error:
                raise ModelLoadError(f"cannot load model {path}: {error}") from None
            text = archive.read("config.json")
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as error:
        raise ModelLoadError(
            f"cannot load model {path}: corrupt archive ({first_line(error)})"
        ) from error
    try:
        config = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise ModelLoadError(
            f"cannot load model {path}: its config.json is not valid JSON ({first_line(error)})"
        ) from error
    if not isinstance(config, dict) or "class_name" not in config:
        raise ModelLoadError(
            f"cannot load model {path}: its config.json does not describe a Keras model"
        )
    return config


_SAFE_MODE_TEXT = ("safe_mode", "unsafe_deserialization")
_UNKNOWN_CLASS = re.compile(r"Could not locate (?:class|function) '([^']+)'")
_WRONG_SHAPE = re.compile(r"variable\.shape=(\([^)]*\)), Received: value\.shape=(\([^)]*\))")
_FAILED_OBJECT = re.compile(r"object <(\w+) name=([^,>]+)")


def _chain(error: BaseException) -> list[BaseException]:
    errors: list[BaseException] = []
    while error is not None and error not in errors:
        errors.append(error)
        error = error.__cause__ or error.__context__
    return errors


def _module_of(class_name: str, config) -> str | None:
    """The ``module`` the config gives for ``class_name`` (searched depth first), if any."""
    if isinstance(config, dict):
        if config.get("class_name") == class_name and isinstance(config.get("module"), str):
            return config["module"]
        values = config.values()
    elif isinstance(config, list):
        values = config
    else:
        return None
    for value in values:
        module = _module_of(class_name, value)
        if module:
            return module
    return None


def _describe_failure(error: BaseException, config: dict | None) -> str:
    """What is wrong with the file, in one line, from Keras's error and its causes."""
    errors = _chain(error)
    for cause in errors:
        text = str(cause)
        if any(word in text for word in _SAFE_MODE_TEXT):
            sentence = first_line(cause).split(". ")[0].rstrip(".")
            return f"safe mode refused it: {sentence} (senet never runs code from a model file)"
    for cause in errors:
        match = _UNKNOWN_CLASS.search(str(cause))
        if match:
            name = match.group(1)
            try:
                module = _module_of(name, config)
            except RecursionError:  # a hostile, absurdly nested config
                module = None
            where = f" (module {module!r})" if module else ""
            return (
                f"it uses the class {name!r}{where}, which neither Keras nor senet defines; "
                "import the package that registers it, or pass custom_objects"
            )
    for cause in errors:
        text = str(cause)
        shapes = _WRONG_SHAPE.search(text)
        if "could not be loaded" in text or shapes:
            layer = _FAILED_OBJECT.search(text)
            where = f"layer {layer.group(2)!r} ({layer.group(1)})" if layer else "a layer"
            if shapes:
                return (
                    f"its weights do not fit the model its config.json describes: {where} "
                    f"has a variable of shape {shapes.group(1)}, the file holds {shapes.group(2)}"
                )
            return f"its weights do not fit the model its config.json describes: {where}"
    for cause in errors:
        if isinstance(cause, zipfile.BadZipFile):
            return f"corrupt archive ({first_line(cause)})"
    return first_line(error)
