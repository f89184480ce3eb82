"""TrainingInfo: what a model was trained on, saved inside the model file.

A weightless pass-through layer whose config holds a small JSON-able dict (dataset kind,
image size, channels, value range, class names, the model training started from). Keras
saves a layer's ``get_config`` in ``config.json`` of the ``.keras`` archive, so the record
travels with the file through every public save/load path (``model.save``, checkpoints,
:func:`senet.models.insert_attention`'s rebuild, export's graph), and needs no archive
member of senet's own or any private Keras API.

Why a layer: a functional model's own config cannot be extended, and a ``keras.Model``
subclass would make the file unreadable to plain loaders of any other graph; one registered
layer at the output (identity, float32 so a mixed-precision model's probabilities are not
cast) is the smallest public carrier.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import keras

from senet.errors import printable

__all__ = [
    "TrainingInfo",
    "check_record",
    "dataset_kind",
    "training_info",
    "with_training_info",
    "without_training_info",
]


def dataset_kind(data: str | os.PathLike) -> str:
    """``"synthetic"``, ``"fer2013"`` (a ``.csv``), ``"npz"`` or ``"folder"``: a data source's kind.

    Example:
        >>> dataset_kind("fer2013.csv"), dataset_kind("synthetic")
        ('fer2013', 'synthetic')
    """
    data = os.fspath(data)
    if data == "synthetic":
        return "synthetic"
    suffix = os.path.splitext(data)[1].lower()
    return {".csv": "fer2013", ".npz": "npz"}.get(suffix, "folder")


@keras.saving.register_keras_serializable(package="senet")
class TrainingInfo(keras.layers.Layer):
    """Identity layer that records what the model was trained on.

    Args:
        info: A dict of JSON values, e.g. ``{"dataset": "synthetic", "image_size": 48,
            "channels": 1, "input_range": [0, 1], "class_names": [...]}``.
        **kwargs: Base layer arguments (``name``, ``dtype``).

    Input shape:
        Any.

    Output shape:
        Same as the input; the values are returned unchanged.

    Example:
        >>> layer = TrainingInfo({"dataset": "synthetic"})
        >>> layer.info["dataset"]
        'synthetic'
    """

    def __init__(self, info: dict[str, Any] | None = None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        try:  # JSON values only, as config.json will hold them
            self.info = json.loads(json.dumps(dict(info or {})))
        except (TypeError, ValueError):
            raise ValueError(f"`info` must be a dict of JSON values, got {info!r}") from None

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "info": self.info}


def _info_layers(model) -> list[TrainingInfo]:
    return [layer for layer in getattr(model, "layers", []) if isinstance(layer, TrainingInfo)]


def _encoder_record(model) -> TrainingInfo | None:
    """A keras-hub detector's record: the :class:`TrainingInfo` layer in its image encoder
    (:func:`senet.models.pyramid_encoder` puts an empty one there), or None."""
    encoder = getattr(getattr(model, "backbone", None), "image_encoder", None)
    layers = _info_layers(encoder) if encoder is not None else []
    return layers[-1] if layers else None


def training_info(model) -> dict[str, Any] | None:
    """The record of the model's last :class:`TrainingInfo` layer (a copy), or None; for a
    keras-hub detector, the record in its image encoder."""
    layers = _info_layers(model)
    layer = layers[-1] if layers else _encoder_record(model)
    if layer is None or not layer.info:
        return None
    return json.loads(json.dumps(layer.info))


def without_training_info(model: keras.Model) -> keras.Model:
    """``model`` with a :class:`TrainingInfo` at its single output removed (same layers)."""
    if len(model.outputs) != 1:
        return model
    layer = model.layers[-1] if model.layers else None
    if not isinstance(layer, TrainingInfo) or layer.output is not model.outputs[0]:
        return model
    return keras.Model(_inputs(model), layer.input, name=model.name)


def with_training_info(model: keras.Model, info: dict[str, Any]) -> keras.Model:
    """A functional model sharing ``model``'s layers, with ``info`` recorded at its output.

    An earlier record at the output is replaced (not stacked). The returned model has the
    same weights (the same variables) and computes the same values. A keras-hub detector
    (several outputs, its own training and prediction steps) keeps its record in its image
    encoder's :class:`TrainingInfo` layer instead: that layer's record is replaced and the
    same detector returned.
    """
    holder = None if _info_layers(model) else _encoder_record(model)
    if holder is not None:
        holder.info = TrainingInfo(info).info  # checked as JSON values, copied
        return model
    base = without_training_info(model)
    if len(base.outputs) != 1:
        raise ValueError(f"`model` must have one output, got {len(base.outputs)}")
    return keras.Model(_inputs(base), TrainingInfo(info)(base.outputs[0]), name=base.name)


def _inputs(model: keras.Model):
    """The model's input as it takes it: one tensor, not a one-element list (called with a
    bare array, a list-input model makes Keras warn that the structure does not match)."""
    return model.inputs[0] if len(model.inputs) == 1 else model.inputs


#: The most class names, and the longest name, a record may hold.
MAX_CLASSES = 100_000
MAX_NAME_LENGTH = 1_000


def _text(value) -> bool:
    return isinstance(value, str) and len(value) <= MAX_NAME_LENGTH


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# field -> (rule, what the rule wants); None is allowed for every field (not recorded)
_FIELDS = {
    "task": (_text, "a short string"),
    "dataset": (_text, "a short string"),
    "data": (_text, "a short string"),
    "synthetic_difficulty": (_text, "a short string"),
    "init_from": (_text, "a short string"),
    "image_size": (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
        "a positive integer",
    ),
    "channels": (lambda v: v in (1, 3) and not isinstance(v, bool), "1 or 3"),
    "input_range": (
        lambda v: isinstance(v, list) and len(v) == 2 and all(map(_number, v)) and v[0] < v[1],
        "a list of two finite numbers, low < high",
    ),
    "class_names": (
        lambda v: isinstance(v, list) and 0 < len(v) <= MAX_CLASSES and all(map(_text, v)),
        f"a list of 1 to {MAX_CLASSES} strings of at most {MAX_NAME_LENGTH} characters",
    ),
}


def check_record(record: Any, source: str | os.PathLike) -> dict[str, Any] | None:
    """A training record read from a file (``source``), checked field by field.

    Every field senet reads (:data:`_FIELDS`: ``dataset``, ``data``, ``image_size``,
    ``channels``, ``input_range``, ``class_names``, ...) must have its type and range or be
    absent or None; other keys are kept as they are. Text fields come back with control and
    format characters escaped (:func:`senet.errors.printable`), so a class name cannot
    clear the terminal it is printed on.

    Raises:
        ValueError: One line naming ``source`` and the field, e.g. ``model.keras: its
            training record's input_range must be a list of two finite numbers, low <
            high, got 5``.
    """
    if record is None:
        return None
    source = printable(os.fspath(source))
    if not isinstance(record, dict):
        raise ValueError(
            f"{source}: its training record must be a JSON object, got {_shown(record)}"
        )
    checked = dict(record)
    for field, (rule, wanted) in _FIELDS.items():
        value = record.get(field)
        if value is None:
            continue
        if not rule(value):
            raise ValueError(
                f"{source}: its training record's {field} must be {wanted}, got {_shown(value)}"
            )
        if isinstance(value, str):
            checked[field] = printable(value)
        elif field == "class_names":
            checked[field] = [printable(name) for name in value]
    return checked


def _shown(value) -> str:
    text = printable(repr(value))
    return text if len(text) <= 80 else text[:77] + "..."
