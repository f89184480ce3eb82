"""The one table of training options: :class:`TrainConfig` and the flags made from it.

:class:`TrainConfig` defines every training setting once (type, default and check); a run
saves it as ``RUN_DIR/config.json``. :data:`TRAIN_OPTIONS` says which of its fields the
command line sets and how (flag, help, argparse type): ``senet train``'s and ``senet
ablate``'s flags are generated from it (:func:`add_options`), the options a command was
given are read back by field (:func:`given_options`), and a launched worker gets them as
data, written out by the same table (:func:`to_argv`), never rebuilt by hand. Defaults in
``--help`` are TrainConfig's own.

This module imports no Keras, so ``senet --help`` stays quick. To add a training option: a
field (with its check) in :class:`TrainConfig`, and a row in :data:`TRAIN_OPTIONS` if the
command line sets it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from senet.checks import check_choice, check_number, fail
from senet.names import DETECTION_MODELS, MODEL_NAMES

__all__ = [
    "DEFAULTS",
    "DISTRIBUTE",
    "LR_SCHEDULES",
    "OPTIMIZERS",
    "RESUME_CHANGEABLE",
    "TRAIN_OPTIONS",
    "Option",
    "TrainConfig",
    "add_options",
    "flag_for",
    "given_options",
    "non_negative_int",
    "positive_float",
    "positive_int",
    "to_argv",
]

OPTIMIZERS = ("adam", "adamw", "sgd")
DISTRIBUTE = ("none", "mirrored", "multiworker")
LR_SCHEDULES = ("constant", "cosine")
#: The presets of senet's synthetic faces (senet.data.synthetic.DIFFICULTIES).
SYNTHETIC_DIFFICULTIES = ("easy", "hard")
#: ``--allow-h5``'s help, in every command that reads a model.
ALLOW_H5_HELP = (
    "accept a legacy .h5 model; Keras's safe mode does not apply to .h5 files "
    "(CVE-2025-9905), so only for files you trust"
)
#: TrainConfig fields a resume may change; every other field must equal the saved one.
RESUME_CHANGEABLE = ("epochs", "tensorboard", "keep_checkpoints")


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved as ``RUN_DIR/config.json``.

    Attributes:
        task: What kind of problem the run learns (:func:`senet.tasks.get_task`):
            ``"classification"``, or a task a package adds (entry point group
            ``senet.tasks``). The task reads ``data``, builds the model's head and chooses
            the loss, the metrics and the report's sections.
        data: A FER2013 csv, an image folder, an ``.npz`` (``x``, ``y``) or ``"synthetic"``.
        model: ``"emotion_cnn"`` or ``"resnet<depth>"`` (see ``MODEL_NAMES``).
        attention: An attention kind (``"se"``, ``"eca"``, ``"sse"``, ``"scse"``, ``"cbam"``)
            or ``"none"``.
        reduction: Bottleneck reduction ratio of the attention layers.
        epochs: Total epochs of the run (a resumed run ends at the same count).
        batch_size: Global batch size (split across replicas when distributed).
        learning_rate: Learning rate of the optimizer (the start of the schedule).
        lr_schedule: ``"constant"`` or ``"cosine"`` (decays from ``learning_rate`` to 0 over
            the run's steps, so the last epochs settle instead of jumping around; the step
            counter is in the optimizer's state, so a resumed run follows the same curve).
        optimizer: ``"adam"``, ``"adamw"`` (weight decay 1e-4) or ``"sgd"`` (Nesterov, 0.9).
        seed: Seeds weights, dropout, the data order and augmentation.
        split_seed: Seeds the train/val/test split (and synthetic data), kept apart from
            ``seed`` so runs with different seeds are tested on the same images.
        image_size: Side of the square images fed to the model.
        channels: 1 (grey) or 3 (RGB).
        val_fraction: Fraction of the data held out for validation.
        test_fraction: Fraction held out for the final test metrics.
        synthetic_size: Number of images when ``data="synthetic"``.
        synthetic_difficulty: ``"easy"`` or ``"hard"`` synthetic faces
            (:func:`senet.data.synthetic_expressions`).
        skip_bad: Skip unreadable samples instead of failing (with a warning).
        augment: Random flips, shifts and brightness/contrast changes of training images.
        class_weights: Weight the loss by inverse class frequency (FER2013 is imbalanced).
        tensorboard: Write TensorBoard logs to ``RUN_DIR/logs``.
        distribute: ``"none"``, ``"mirrored"`` (all local devices) or ``"multiworker"``
            (``TF_CONFIG``); on the JAX backend both mean ``keras.distribution.DataParallel``.
        mixed_precision: ``mixed_float16`` on a GPU, else ``mixed_bfloat16``.
        deterministic: TensorFlow op determinism (turns XLA off), so a seed repeats a run.
        keep_checkpoints: How many epoch checkpoints to keep (at least 1).
        model_options: Further keyword arguments of the model builder, as JSON values:
            ``attention_options`` (``{"squeeze": "max", "gate": "tanh"}``) for any model,
            ``placement`` and ``stages`` for ResNets (see :func:`senet.models.resnet`),
            ``depth`` and ``base_filters`` for the U-Net.
        ct_window: NIfTI volumes: clip intensities to this CT window ``[low, high]`` (HU,
            e.g. ``[-160, 240]`` for the abdomen) and scale them to ``[0, 1]``, instead of
            the z-score. The model records it, so ``senet predict`` reads volumes alike.
        patch_size: Segmentation of volumes: train on random cubes of this side (2 in 3
            centred on a foreground voxel, the rest anywhere), drawn anew every batch from
            ``(seed, epoch, step)``; the network takes any size, so validation and the test
            label whole volumes. None: train on whole volumes.
        init_from: Start from this saved Keras classifier (architecture and weights, e.g.
            one :func:`senet.models.insert_attention` made) instead of building ``model``;
            its input must be ``(image_size, image_size, channels)`` and its outputs one
            per class. ``model``, ``attention``, ``reduction`` and ``model_options`` are
            then not used. The model's record (:func:`training_record`) names the file.
        allow_h5: Let ``init_from`` be a legacy ``.h5`` file (trusted files only: Keras's
            safe mode does not apply to them).
        backbone: Detection (``model="retinanet"``): the encoder, ``"resnet18"`` (None),
            ``"resnet50"``, any ImageNet depth, or a ResNet ``.keras`` file (which brings
            its own attention, so ``attention`` must be ``"none"``).
    """

    task: str = "classification"
    data: str = "synthetic"
    model: str = "emotion_cnn"
    attention: str = "se"
    reduction: float = 8
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    lr_schedule: str = "constant"
    optimizer: str = "adam"
    seed: int = 0
    split_seed: int = 0
    image_size: int = 48
    channels: int = 1
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    synthetic_size: int = 7000
    synthetic_difficulty: str = "easy"
    skip_bad: bool = False
    augment: bool = True
    class_weights: bool = False
    tensorboard: bool = False
    distribute: str = "none"
    mixed_precision: bool = False
    deterministic: bool = True
    keep_checkpoints: int = 2
    model_options: dict[str, Any] = field(default_factory=dict)
    patch_size: int | None = None
    ct_window: list[float] | None = None
    init_from: str | None = None
    allow_h5: bool = False
    backbone: str | None = None

    def __post_init__(self):
        from senet.tasks import get_task, task_names

        self.task = check_choice("task", self.task, task_names())
        self.data = os.fspath(self.data)
        self.attention = "none" if self.attention is None else self.attention
        self.model = check_choice("model", self.model, MODEL_NAMES)
        models = get_task(self.task).models
        if models is not None and self.model not in models:
            raise fail("model", f"a network of the {self.task} task, one of {models}", self.model)
        from senet.layers import kinds  # the registry (Keras) only when a config is made

        self.attention = check_choice("attention", self.attention, (*kinds(), "none"))
        self.optimizer = check_choice("optimizer", self.optimizer, OPTIMIZERS)
        self.lr_schedule = check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        self.distribute = check_choice("distribute", self.distribute, DISTRIBUTE)
        self.synthetic_difficulty = check_choice(
            "synthetic_difficulty", self.synthetic_difficulty, SYNTHETIC_DIFFICULTIES
        )
        for name in ("epochs", "batch_size", "image_size", "synthetic_size", "keep_checkpoints"):
            setattr(self, name, check_number(name, getattr(self, name), integer=True, minimum=1))
        for name in ("seed", "split_seed"):
            setattr(self, name, check_number(name, getattr(self, name), integer=True, minimum=0))
        check_number("reduction", self.reduction, minimum=1)
        check_number("learning_rate", self.learning_rate, minimum=0, open_minimum=True)
        self.channels = check_choice("channels", self.channels, (1, 3))
        if self.init_from is not None:
            self.init_from = os.fspath(self.init_from)
        if self.backbone is not None:
            self.backbone = os.fspath(self.backbone)
            if self.model not in DETECTION_MODELS:
                raise fail(
                    "backbone", f"None unless model is one of {DETECTION_MODELS}", self.backbone
                )
        if self.ct_window is not None:
            window = self.ct_window
            if (
                not isinstance(window, list | tuple)
                or len(window) != 2
                or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in window)
                or not window[0] < window[1]
            ):
                raise fail("ct_window", "two numbers [low, high] with low < high", window)
            self.ct_window = [float(v) for v in window]
        if self.patch_size is not None:
            self.patch_size = check_number("patch_size", self.patch_size, integer=True, minimum=1)
            if self.patch_size > self.image_size:
                raise fail("patch_size", f"at most image_size ({self.image_size})", self.patch_size)
        try:  # as config.json holds it (tuples become lists), so a resume compares alike
            self.model_options = json.loads(json.dumps(dict(self.model_options)))
        except (TypeError, ValueError):
            raise fail("model_options", "a dict of JSON values", self.model_options) from None
        for name in ("val_fraction", "test_fraction"):
            check_number(name, getattr(self, name), minimum=0, maximum=0.9)
        if self.val_fraction + self.test_fraction >= 1:
            raise fail(
                "val_fraction + test_fraction",
                "below 1",
                self.val_fraction + self.test_fraction,
            )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build a config from a dict (e.g. ``config.json``); unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown TrainConfig field(s) {unknown}. Allowed: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def split_options(self) -> dict[str, Any]:
        """What chooses a run's images and splits besides the source, as the readers
        (``load_dataset``, ``load_masks``) name it: the fractions, the split seed and the
        synthetic set's size and difficulty."""
        return {
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction,
            "seed": self.split_seed,
            "synthetic_size": self.synthetic_size,
            "synthetic_difficulty": self.synthetic_difficulty,
        }


#: TrainConfig's defaults by field (a new ``{}`` for ``model_options``).
DEFAULTS = {
    f.name: f.default_factory() if f.default is dataclasses.MISSING else f.default
    for f in dataclasses.fields(TrainConfig)
    if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
}


# --------------------------------------------------------------------------- the command line


def _number(cast: type, accept: Callable[[Any], bool], expected: str, name: str):
    """An argparse type: ``cast(text)`` if ``accept`` takes it, else "expected ..." (one
    line, argparse adds the flag)."""

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    parse.__name__ = name
    return parse


#: argparse types: an integer >= 1, a finite number > 0, an integer >= 0.
positive_int = _number(int, lambda value: value >= 1, "a positive integer", "positive_int")
positive_float = _number(
    float, lambda value: 0 < value < float("inf"), "a positive number", "positive_float"
)
non_negative_int = _number(int, lambda value: value >= 0, "an integer >= 0", "non_negative_int")
#: argparse type: a number in [0, 1] (a score or probability).
unit_float = _number(float, lambda value: 0 <= value <= 1, "a number in [0, 1]", "unit_float")


def number_pair(text: str) -> list[float]:
    """An argparse type: ``LOW,HIGH`` (two numbers, low < high), e.g. ``-160,240``."""
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected LOW,HIGH such as -160,240, got {text!r}"
        ) from None
    if not low < high:
        raise argparse.ArgumentTypeError(f"expected LOW below HIGH, got {text!r}")
    return [low, high]


def json_object(text: str) -> dict[str, Any]:
    """An argparse type: a JSON object (``'{"depth": 3}'``), else "expected ..." (one line)."""
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"expected a JSON object such as '{{\"depth\": 3}}', got {text!r}"
        )
    return value


@dataclass(frozen=True)
class Option:
    """How the command line sets one :class:`TrainConfig` field.

    Attributes:
        field: The TrainConfig field.
        flag: Its flag (``--lr``).
        help: What it does; ``--help`` adds the default, TrainConfig's.
        type: argparse type of the value; ``bool`` for a switch.
        choices: The values allowed (checked by argparse).
        negatable: A bool switch that also has ``--no-FLAG`` (on by default).
        metavar: argparse metavar.
    """

    field: str
    flag: str
    help: str = ""
    type: Callable[[str], Any] | type = str
    choices: tuple | None = None
    negatable: bool = False
    metavar: str | None = None

    @property
    def default(self) -> Any:
        return DEFAULTS[self.field]


#: The TrainConfig fields ``senet train`` sets, in ``--help``'s order.
TRAIN_OPTIONS: tuple[Option, ...] = (
    Option(
        "task",
        "--task",
        "classification, segmentation, detection, or a task a package adds (entry point "
        "group senet.tasks)",
        metavar="TASK",
    ),
    Option(
        "data",
        "--data",
        "classification: FER2013 csv, image folder (one sub-folder per class), .npz (x, y) "
        "or 'synthetic'; segmentation: a folder with images/ and masks/, .npz (x, y masks), "
        "a Decathlon folder (imagesTr/, labelsTr/), 'synthetic' (face parts) or 'phantoms' "
        "(3-D); detection: a COCO .json with its images, a folder with annotations.json and "
        "images/, or 'synthetic' (face scenes)",
    ),
    Option("model", "--model", "", choices=MODEL_NAMES),
    Option(
        "attention",
        "--attention",
        "se, eca, sse, scse, cbam, a kind a package adds (entry point group "
        "senet.attention), or none",
        metavar="KIND",
    ),
    Option("reduction", "--reduction", "", positive_float),
    Option("epochs", "--epochs", "", positive_int),
    Option("batch_size", "--batch-size", "", positive_int),
    Option("learning_rate", "--lr", "learning rate", positive_float, metavar="LR"),
    Option("optimizer", "--optimizer", "", choices=OPTIMIZERS),
    Option(
        "lr_schedule",
        "--lr-schedule",
        "constant or cosine decay to 0 over the run",
        choices=LR_SCHEDULES,
    ),
    Option("seed", "--seed", "", non_negative_int),
    Option("skip_bad", "--skip-bad", "skip unreadable samples", bool),
    Option(
        "augment",
        "--augment",
        "random flips, shifts, brightness/contrast",
        bool,
        negatable=True,
    ),
    Option("class_weights", "--class-weights", "weight the loss by inverse class frequency", bool),
    Option("tensorboard", "--tensorboard", "TensorBoard logs in RUN_DIR/logs", bool),
    Option(
        "distribute",
        "--distribute",
        "mirrored: every local device; multiworker: the cluster TF_CONFIG names",
        choices=DISTRIBUTE,
    ),
    Option(
        "mixed_precision", "--mixed-precision", "mixed_float16 on a GPU, else mixed_bfloat16", bool
    ),
    Option("image_size", "--image-size", "", positive_int),
    Option("channels", "--channels", "1 grey or 3 RGB", int, choices=(1, 3)),
    Option("synthetic_size", "--synthetic-size", "images drawn for --data synthetic", positive_int),
    Option(
        "synthetic_difficulty",
        "--synthetic-difficulty",
        "synthetic faces for --data synthetic: easy or hard",
        choices=SYNTHETIC_DIFFICULTIES,
    ),
    Option(
        "model_options",
        "--model-options",
        "further arguments of the network's builder as JSON, e.g. "
        '\'{"depth": 3, "base_filters": 8}\' for unet',
        json_object,
        metavar="JSON",
    ),
    Option(
        "patch_size",
        "--patch-size",
        "segmentation of volumes: train on random PATCH^3 crops (2 in 3 centred on a "
        "foreground voxel) and label whole volumes; default: whole volumes",
        positive_int,
        metavar="PATCH",
    ),
    Option(
        "ct_window",
        "--ct-window",
        "NIfTI volumes: clip intensities to this CT window (HU) and scale to [0, 1] instead "
        "of the z-score, e.g. --ct-window=-160,240",
        number_pair,
        metavar="LOW,HIGH",
    ),
    Option(
        "init_from",
        "--init-from",
        "start from this saved classifier (.keras; .h5 with --allow-h5), architecture and "
        "weights, instead of building --model; the run records it",
        metavar="MODEL",
    ),
    Option("allow_h5", "--allow-h5", ALLOW_H5_HELP, bool),
    Option(
        "backbone",
        "--backbone",
        "detection: the RetinaNet's encoder, resnet18 (default), resnet50 (any ImageNet "
        "depth, with --attention) or a ResNet .keras file (its own attention: --attention none)",
        metavar="NAME|FILE",
    ),
)
_BY_FIELD = {option.field: option for option in TRAIN_OPTIONS}


def _option(name: str) -> Option:
    try:
        return _BY_FIELD[name]
    except KeyError:
        raise ValueError(f"no command-line option sets TrainConfig.{name}") from None


def _help(option: Option) -> str:
    default = option.default
    if option.type is bool:
        shown = "on" if default else None
    else:
        shown = None if default is None else str(default)
    text = option.help
    if shown is not None:
        text = f"{text} (default {shown})" if text else f"default {shown}"
    return text


def add_options(
    parser: argparse.ArgumentParser,
    fields: Iterable[str],
    *,
    none_if_absent: bool = True,
    many: Sequence[str] = (),
    flags: dict[str, str] | None = None,
) -> None:
    """Add the flags of ``fields`` (rows of :data:`TRAIN_OPTIONS`) to ``parser``.

    Args:
        none_if_absent: An option not given is None (so a resume can tell it from one
            given), not TrainConfig's default.
        many: Fields that take several values (``nargs="+"``; ablate's grid); their default
            is ``[TrainConfig's]``.
        flags: Other spellings of a field's flag for this command (``{"synthetic_difficulty":
            "--difficulty"}``).
    """
    for name in fields:
        option = _option(name)
        flag = (flags or {}).get(name, option.flag)
        kwargs: dict[str, Any] = {"dest": name, "help": _help(option)}
        if option.type is bool:
            negatable = option.negatable
            kwargs["action"] = argparse.BooleanOptionalAction if negatable else "store_true"
        else:
            if option.type is not str:
                kwargs["type"] = option.type
            if option.choices is not None:
                kwargs["choices"] = option.choices
            if option.metavar is not None:
                kwargs["metavar"] = option.metavar
        if name in many and option.type is not bool:
            kwargs["nargs"] = "+"
            kwargs["default"] = [option.default]
        else:
            kwargs["default"] = None if none_if_absent else option.default
        parser.add_argument(flag, **kwargs)


def given_options(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields a parsed command line set: ``{field: value}`` of the options
    given (those added with ``none_if_absent``)."""
    return {
        option.field: getattr(args, option.field)
        for option in TRAIN_OPTIONS
        if getattr(args, option.field, None) is not None
    }


def flag_for(name: str, value: Any, flags: dict[str, str] | None = None) -> list[str]:
    """The command-line words that ask for ``name=value``: ``["--lr", "0.5"]``,
    ``["--no-augment"]``; ``flags`` as for :func:`add_options`. A list value (a grid of
    ablate) gives every value after the flag."""
    option = _option(name)
    flag = (flags or {}).get(name, option.flag)
    if option.type is bool:
        if value:
            return [flag]
        return [flag.replace("--", "--no-", 1)] if option.negatable else []
    if option.type is number_pair:  # one value; "=" since it may begin with "-"
        return [f"{flag}={_word(list(value))}"]
    values = value if isinstance(value, list | tuple) else [value]
    return [flag, *map(_word, values)]


def _word(value: Any) -> str:
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, list):  # a pair such as --ct-window
        return ",".join(_word(v) for v in value)
    # str() of a float reads back as the same float; 8.0 is written 8, as typed
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def to_argv(values: dict[str, Any], flags: dict[str, str] | None = None) -> list[str]:
    """``values`` (``{field: value}``) as the flags that give them, in the table's order."""
    unknown = sorted(set(values) - set(_BY_FIELD))
    if unknown:
        raise ValueError(f"no command-line option sets TrainConfig field(s) {unknown}")
    argv: list[str] = []
    for option in TRAIN_OPTIONS:
        if option.field in values:
            argv += flag_for(option.field, values[option.field], flags)
    return argv
