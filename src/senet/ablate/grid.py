"""The grid of an ablation: its axes, the cells (one setting each) and the settings every cell
shares, a view of :class:`senet.config.TrainConfig`; :func:`cell_config` is one cell-seed's
TrainConfig.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from senet.checks import check_choice, check_number, check_positive, fail, is_none
from senet.config import DEFAULTS, SYNTHETIC_DIFFICULTIES, TrainConfig

#: The grid's axes, in the order of a cell's name and of the tables.
AXES = ("model", "attention", "reduction", "squeeze", "gate", "placement", "stages")


SQUEEZES = ("avg", "max", "avgmax")


SCHEMA = 1


@dataclass(frozen=True)
class Cell:
    """One setting of the grid. Options that do not apply are None.

    Attributes:
        model: A name from ``senet.train.MODEL_NAMES``.
        attention: An attention kind or ``"none"``.
        reduction: Reduction ratio (kinds with a bottleneck: se, scse, cbam).
        squeeze: ``"avg"``, ``"max"`` or ``"avgmax"`` (kinds that take it).
        gate: The gate's Keras activation (``"sigmoid"``, ``"tanh"``, ...).
        placement: Where attention sits in a residual unit (ResNets).
        stages: ``"all"`` or the stage numbers with attention, ``"2"``, ``"3,4"`` (ResNets).
    """

    model: str
    attention: str
    reduction: float | None = None
    squeeze: str | None = None
    gate: str | None = None
    placement: str | None = None
    stages: str | None = None

    @property
    def name(self) -> str:
        """A file-safe name: ``emotion_cnn-se-r8-avg-sigmoid``."""
        parts = [self.model, self.attention]
        if self.reduction is not None:
            parts.append(f"r{number_text(self.reduction)}")
        parts += [v for v in (self.squeeze, self.gate, self.placement) if v is not None]
        if self.stages is not None:
            parts.append("stages" + self.stages.replace(",", "+"))
        return "-".join(parts)

    def model_options(self) -> dict[str, Any]:
        """The builder's further arguments (``TrainConfig.model_options``)."""
        options: dict[str, Any] = {}
        layer = {k: v for k, v in (("squeeze", self.squeeze), ("gate", self.gate)) if v}
        if layer:
            options["attention_options"] = layer
        if self.placement is not None:
            options["placement"] = self.placement
        if self.stages not in (None, "all"):
            options["stages"] = [int(s) for s in self.stages.split(",")]
        return options

    def value(self, axis: str) -> Any:
        return getattr(self, axis)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "name": self.name}


def number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _layer_options(kind: str) -> set[str]:
    """The options (reduction, squeeze, gate) that attention ``kind``'s layer takes."""
    from senet.layers import attention

    config = attention(kind, reduction=8).get_config()
    return {option for option in ("reduction", "squeeze", "gate") if option in config}


def _parse_stages(value) -> str:
    if is_none(value) or (isinstance(value, str) and value.strip().lower() == "all"):
        return "all"
    if isinstance(value, str):
        parts = value.replace("+", ",").split(",")
    elif isinstance(value, int) and not isinstance(value, bool):
        parts = [value]
    else:
        parts = list(value)
    try:
        numbers = sorted({int(p) for p in parts})
    except (TypeError, ValueError):
        raise fail("stages", "'all' or stage numbers such as 2, '3,4' or (3, 4)", value) from None
    if not numbers or min(numbers) < 1:
        raise fail("stages", "'all' or stage numbers such as 2, '3,4' or (3, 4)", value)
    return ",".join(map(str, numbers))


def _as_list(argument: str, values) -> list:
    if isinstance(values, str | int | float) or values is None:
        values = [values]
    values = list(values)
    if not values:
        raise fail(argument, "a non-empty list", values)
    return values


def make_grid(
    *,
    models: Sequence[str] | str = ("emotion_cnn",),
    attentions: Sequence[str] | str = ("se",),
    reductions: Sequence[float] | float = (8,),
    squeezes: Sequence[str] | str = ("avg",),
    gates: Sequence[str] | str = ("sigmoid",),
    placements: Sequence[str] | str = ("standard",),
    stages: Sequence | str = ("all",),
) -> list[Cell]:
    """The cells of a grid: every combination, each model's no-attention baseline first.

    Options a cell cannot use are dropped (None) and the duplicates this makes removed: the
    baseline has none, ECA/sSE take no reduction, sSE/CBAM no squeeze, networks other than
    the ResNets (``emotion_cnn``, ``unet``) no placement or stages. The first value of each axis is the base setting the per-axis
    tables vary one option from.

    Raises:
        ValueError: An unknown model, kind, squeeze or placement, a reduction that is not
            positive, or placements/stages asked without a ResNet in ``models``.

    >>> [cell.name for cell in make_grid(reductions=(4, 8))]
    ['emotion_cnn-none', 'emotion_cnn-se-r4-avg-sigmoid', 'emotion_cnn-se-r8-avg-sigmoid']
    """
    from senet.layers.registry import check_kind
    from senet.models.resnet import PLACEMENTS
    from senet.names import resnet_depth
    from senet.train import MODEL_NAMES

    models = [check_choice("models", m, MODEL_NAMES) for m in _as_list("models", models)]
    kinds = [check_kind("attentions", a) or "none" for a in _as_list("attentions", attentions)]
    reductions = [check_positive("reductions", r) for r in _as_list("reductions", reductions)]
    squeezes = [check_choice("squeezes", s, SQUEEZES) for s in _as_list("squeezes", squeezes)]
    gates = _as_list("gates", gates)
    for gate in gates:
        if not isinstance(gate, str) or not gate.strip():
            raise fail("gates", "Keras activation names such as 'sigmoid' or 'tanh'", gate)
    gates = [g.strip().lower() for g in gates]
    placements = [
        check_choice("placements", p, PLACEMENTS) for p in _as_list("placements", placements)
    ]
    stage_sets = [_parse_stages(s) for s in _as_list("stages", stages)]
    if all(resnet_depth(m) is None for m in models):
        for argument, values, default in (
            ("placements", placements, "standard"),
            ("stages", stage_sets, "all"),
        ):
            if values != [default]:
                raise fail(argument, f"[{default!r}] unless a ResNet is in `models`", values)
    options = {kind: _layer_options(kind) for kind in kinds if kind != "none"}

    cells: dict[Cell, None] = {}
    for model in models:
        resnet = resnet_depth(model) is not None
        cells[Cell(model, "none")] = None
        for kind, r, squeeze, gate, placement, stage in itertools.product(
            kinds, reductions, squeezes, gates, placements, stage_sets
        ):
            if kind == "none":
                continue
            takes = options[kind]
            cell = Cell(
                model,
                kind,
                reduction=float(r) if "reduction" in takes else None,
                squeeze=squeeze if "squeeze" in takes else None,
                gate=gate if "gate" in takes else None,
                placement=placement if resnet else None,
                stages=stage if resnet else None,
            )
            cells[cell] = None
    return list(cells)


@dataclass
class Settings:
    """What every cell of an ablation shares (``OUT/ablation.json``): a view of
    :class:`senet.config.TrainConfig` (its fields and defaults; ``difficulty`` is its
    ``synthetic_difficulty``), and the latency measurement's two."""

    task: str = DEFAULTS["task"]
    data: str = DEFAULTS["data"]
    difficulty: str = DEFAULTS["synthetic_difficulty"]
    synthetic_size: int = DEFAULTS["synthetic_size"]
    image_size: int = DEFAULTS["image_size"]
    channels: int = DEFAULTS["channels"]
    epochs: int = DEFAULTS["epochs"]
    batch_size: int = DEFAULTS["batch_size"]
    learning_rate: float = DEFAULTS["learning_rate"]
    optimizer: str = DEFAULTS["optimizer"]
    lr_schedule: str = DEFAULTS["lr_schedule"]
    augment: bool = DEFAULTS["augment"]
    split_seed: int = DEFAULTS["split_seed"]
    #: Builder arguments every cell shares (``{"depth": 3}`` for a U-Net); a cell's own
    #: (:meth:`Cell.model_options`) are added to them.
    model_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    latency_batch: int = 1
    latency_rounds: int = 10

    def __post_init__(self):
        from senet.tasks import task_names

        self.task = check_choice("task", self.task, task_names())
        self.data = os.fspath(self.data)
        self.difficulty = check_choice("difficulty", self.difficulty, SYNTHETIC_DIFFICULTIES)
        for name in ("latency_batch", "latency_rounds"):
            setattr(self, name, check_number(name, getattr(self, name), integer=True, minimum=1))

    @classmethod
    def from_train_fields(cls, values: dict[str, Any], **latency) -> Settings:
        """Settings from TrainConfig's field names (``synthetic_difficulty``, ...)."""
        renamed = {train: own for own, train in _TRAIN_NAMES.items()}
        return cls(**{renamed.get(name, name): value for name, value in values.items()}, **latency)

    def train_fields(self) -> dict[str, Any]:
        """The shared settings as TrainConfig fields (``difficulty`` is
        ``synthetic_difficulty``); the latency measurement's two are not training's."""
        return {
            _TRAIN_NAMES.get(f.name, f.name): getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in _LATENCY_FIELDS
        }


#: Settings fields TrainConfig names otherwise, and those that are not training's.
_TRAIN_NAMES = {"difficulty": "synthetic_difficulty"}
_LATENCY_FIELDS = ("latency_batch", "latency_rounds")


def cell_config(cell: Cell, seed: int, settings: Settings):
    """The :class:`senet.config.TrainConfig` of one cell-seed: the cell's model and
    attention, the shared settings (:meth:`Settings.train_fields`), ``seed``."""
    shared = settings.train_fields()
    model_options = {**shared.pop("model_options"), **cell.model_options()}
    return TrainConfig(
        **shared,
        model=cell.model,
        attention=cell.attention,
        reduction=cell.reduction if cell.reduction is not None else 8,
        seed=seed,
        keep_checkpoints=1,
        model_options=model_options,
    )
