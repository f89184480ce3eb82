"""Import timm's pretrained SE networks: a PyTorch state dict in, a senet Keras ResNet out.

timm (Wightman, "PyTorch Image Models") publishes ImageNet weights of SE-ResNets,
SE-ResNeXts and ECA-ResNets as ``.safetensors`` (and older ``.pth``) files. senet downloads
nothing: :func:`from_timm` reads a file the user has, builds the matching
:func:`senet.models.resnet` and sets every weight from the file, so the Keras model computes
timm's logits (to float32 rounding) on the same normalised image.

What changes between the two layouts, explicitly:

- convolution kernels: PyTorch ``(out, in / groups, kh, kw)`` to Keras ``(kh, kw, in / groups,
  out)``; images channels_last;
- BatchNorm: ``weight, bias, running_mean, running_var`` to ``gamma, beta, moving_mean,
  moving_variance``, epsilon 1e-5 in both; the ``num_batches_tracked`` step counters have no
  Keras counterpart and are reported as ignored;
- SE: timm's ``se.fc1`` / ``se.fc2`` (1x1 convolutions with bias, bottleneck
  ``make_divisible(C / 16, 8)``) to senet SqueezeExcite's ``reduce`` / ``expand`` Dense;
  ECA: ``se.conv`` (Conv1d, no bias) to EfficientChannelAttention's ``kernel``;
- the classifier ``fc`` (Linear, logits) to ``predictions`` (softmax by default).

Supported (``ARCHITECTURES``): seresnet18/34/50/101/152, seresnet152d,
seresnext26d_32x4d, seresnext26t_32x4d, seresnext50_32x4d, seresnext101_32x4d,
seresnext101_32x8d, seresnext101d_32x8d, seresnext101_64x4d, ecaresnet26t, ecaresnet50d,
ecaresnet50t, ecaresnet101d. Not supported (``UNSUPPORTED`` says why): the pruned
ECA-ResNets, depths 200/269, ecaresnetlight, the anti-aliased ``*aa*`` networks, SENet-154
and timm's ``legacy_se*`` ports.

Reading files: ``.safetensors`` with the ``safetensors`` package (``pip install
"senet[pretrained]"``); ``.pth`` / ``.pt`` / ``.bin`` only through
``torch.load(weights_only=True)`` (``pip install "senet[torch]"``), which refuses to unpickle
anything but tensors and plain containers.
"""

from __future__ import annotations

import math
import re
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from senet.checks import check_choice, fail
from senet.errors import WeightMismatchError
from senet.models.resnet import resnet

__all__ = [
    "ARCHITECTURES",
    "UNSUPPORTED",
    "PretrainedConfig",
    "TimmArchitecture",
    "TimmConversion",
    "WeightMismatchError",
    "convert_timm",
    "expected_tensors",
    "from_timm",
    "pretrained_config",
    "read_state_dict",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class TimmArchitecture:
    """How one timm network is built with :func:`senet.models.resnet`.

    Attributes:
        depth: ResNet depth (26 is timm's (2, 2, 2, 2) bottleneck network).
        attention: ``"se"`` or ``"eca"`` (timm's ``attn_layer``).
        cardinality, base_width: ResNeXt groups and width (1 and 64 for ResNets).
        stem: ``"standard"`` (7x7), ``"deep"`` (timm ``stem_type="deep"``, 32/32/64) or
            ``"tiered"`` (``"deep_tiered"``, 24/32/64).
        downsample: ``"avg"`` for timm's ``avg_down=True``, else ``"conv"``.
        tags: timm's pretrained tags for it, the default (timm's first) first.
    """

    depth: int
    attention: str
    cardinality: int = 1
    base_width: int = 64
    stem: str = "standard"
    downsample: str = "conv"
    tags: tuple[str, ...] = ("untrained",)


_D = {"stem": "deep", "downsample": "avg"}
_T = {"stem": "tiered", "downsample": "avg"}

#: timm model name -> how senet builds it (timm/models/resnet.py's model definitions).
ARCHITECTURES: dict[str, TimmArchitecture] = {
    "seresnet18": TimmArchitecture(18, "se"),
    "seresnet34": TimmArchitecture(34, "se"),
    "seresnet50": TimmArchitecture(50, "se", tags=("a1_in1k", "a2_in1k", "a3_in1k", "ra2_in1k")),
    "seresnet101": TimmArchitecture(101, "se"),
    "seresnet152": TimmArchitecture(152, "se"),
    "seresnet152d": TimmArchitecture(152, "se", **_D, tags=("ra2_in1k",)),
    "seresnext26d_32x4d": TimmArchitecture(26, "se", 32, 4, **_D, tags=("bt_in1k",)),
    "seresnext26t_32x4d": TimmArchitecture(26, "se", 32, 4, **_T, tags=("bt_in1k",)),
    "seresnext50_32x4d": TimmArchitecture(50, "se", 32, 4, tags=("racm_in1k", "gluon_in1k")),
    "seresnext101_32x4d": TimmArchitecture(101, "se", 32, 4, tags=("untrained", "gluon_in1k")),
    "seresnext101_32x8d": TimmArchitecture(101, "se", 32, 8, tags=("ah_in1k",)),
    "seresnext101d_32x8d": TimmArchitecture(101, "se", 32, 8, **_D, tags=("ah_in1k",)),
    "seresnext101_64x4d": TimmArchitecture(101, "se", 64, 4, tags=("gluon_in1k",)),
    "ecaresnet26t": TimmArchitecture(26, "eca", **_T, tags=("ra2_in1k",)),
    "ecaresnet50d": TimmArchitecture(50, "eca", **_D, tags=("miil_in1k",)),
    "ecaresnet50t": TimmArchitecture(
        50, "eca", **_T, tags=("ra2_in1k", "a1_in1k", "a2_in1k", "a3_in1k")
    ),
    "ecaresnet101d": TimmArchitecture(101, "eca", **_D, tags=("miil_in1k",)),
}

#: timm SE/ECA networks senet cannot build yet, and why.
UNSUPPORTED: dict[str, str] = {
    "ecaresnet50d_pruned": "pruned networks have per-layer channel counts resnet() cannot express",
    "ecaresnet101d_pruned": "pruned networks have per-layer channel counts resnet() cannot express",
    "seresnet200d": "depth 200 is not a resnet() depth",
    "seresnet269d": "depth 269 is not a resnet() depth",
    "ecaresnet200d": "depth 200 is not a resnet() depth",
    "ecaresnet269d": "depth 269 is not a resnet() depth",
    "ecaresnetlight": "its (1, 1, 11, 3) stages are not a resnet() depth",
    "seresnetaa50d": "anti-aliased (blur pool) downsampling is not in resnet()",
    "seresnextaa101d_32x8d": "anti-aliased (blur pool) downsampling is not in resnet()",
    "seresnextaa201d_32x8d": "anti-aliased (blur pool) downsampling is not in resnet()",
    "senet154": "halved first bottleneck width and 3x3 projection shortcuts are not in resnet()",
}

# Evaluation settings of timm's default_cfgs (timm/models/resnet.py, _cfg/_tcfg/_ttcfg/_rcfg/
# _r3cfg/_gcfg): (input size, crop_pct, interpolation); every one uses ImageNet's mean/std.
_BICUBIC_224 = ((224, 224), 0.875, "bicubic")
_RSB_224 = ((224, 224), 0.95, "bicubic")
_EVAL = {
    "seresnet50.a1_in1k": _RSB_224,
    "seresnet50.a2_in1k": _RSB_224,
    "seresnet50.a3_in1k": ((160, 160), 0.95, "bicubic"),
    "seresnet152d.ra2_in1k": ((256, 256), 0.95, "bicubic"),
    "seresnext101_32x8d.ah_in1k": _RSB_224,
    "seresnext101d_32x8d.ah_in1k": _RSB_224,
    "ecaresnet26t.ra2_in1k": ((256, 256), 0.875, "bicubic"),
    "ecaresnet50t.ra2_in1k": ((256, 256), 0.875, "bicubic"),
    "ecaresnet50t.a1_in1k": _RSB_224,
    "ecaresnet50t.a2_in1k": _RSB_224,
    "ecaresnet50t.a3_in1k": ((160, 160), 0.95, "bicubic"),
}


@dataclass(frozen=True)
class PretrainedConfig:
    """How timm evaluates a pretrained network: the preprocessing its predictions assume.

    Resize the shorter side to ``input_size / crop_pct`` with ``interpolation``, centre-crop
    ``input_size``, scale to [0, 1], then :meth:`normalize`.

    Attributes:
        arch: timm model name, e.g. ``"seresnet50"``.
        tag: Pretrained tag, e.g. ``"a1_in1k"`` (``"untrained"``: timm publishes no weights).
        input_size: ``(height, width, channels)``, channels last.
        crop_pct: Centre-crop fraction.
        interpolation: ``"bicubic"`` or ``"bilinear"``.
        mean, std: Per-channel RGB normalisation of [0, 1] images.
        num_classes: Classifier width of the published weights (ImageNet-1k: 1000).
    """

    arch: str
    tag: str
    input_size: tuple[int, int, int]
    crop_pct: float
    interpolation: str
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    num_classes: int = 1000

    def normalize(self, images) -> np.ndarray:
        """``(images / 255 - mean) / std`` in float32, for RGB images with values in [0, 255].

        Args:
            images: ``(..., H, W, 3)`` RGB array, values in [0, 255] (as decoded from a file).

        Returns:
            The network's input, float32, same shape.
        """
        images = np.asarray(images, dtype=np.float32) / 255.0
        return (images - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        return {
            "arch": self.arch,
            "tag": self.tag,
            "input_size": list(self.input_size),
            "crop_pct": self.crop_pct,
            "interpolation": self.interpolation,
            "mean": list(self.mean),
            "std": list(self.std),
            "num_classes": self.num_classes,
        }


def _split_arch(arch: str) -> tuple[str, str]:
    """``"seresnet50.a3_in1k"`` -> ``("seresnet50", "a3_in1k")``; no tag: timm's default tag."""
    if not isinstance(arch, str):
        raise fail("arch", f"one of {tuple(ARCHITECTURES)} (optionally .<tag>)", arch)
    name, _, tag = arch.strip().lower().partition(".")
    if name in UNSUPPORTED:
        raise fail("arch", f"a supported timm network ({name}: {UNSUPPORTED[name]})", arch)
    name = check_choice("arch", name, tuple(ARCHITECTURES))
    tags = ARCHITECTURES[name].tags
    if tag:
        check_choice("arch", tag, tags)
    return name, tag or tags[0]


def pretrained_config(arch: str) -> PretrainedConfig:
    """timm's evaluation settings for ``arch`` (a model name, optionally ``.<tag>``).

    Args:
        arch: e.g. ``"seresnet50"`` (timm's default tag, ``a1_in1k``) or
            ``"seresnet50.a3_in1k"``.

    Returns:
        A :class:`PretrainedConfig`; feed the model ``config.normalize(rgb_0_255)``.

    Example:
        >>> config = pretrained_config("seresnext26d_32x4d")
        >>> config.input_size, config.crop_pct, config.mean
        ((224, 224, 3), 0.875, (0.485, 0.456, 0.406))
    """
    name, tag = _split_arch(arch)
    (height, width), crop_pct, interpolation = _EVAL.get(f"{name}.{tag}", _BICUBIC_224)
    return PretrainedConfig(name, tag, (height, width, 3), crop_pct, interpolation)


# --------------------------------------------------------------------------- reading


def _missing_package(package: str, extra: str, suffix: str) -> ImportError:
    return ImportError(
        f'reading {suffix} files needs the {package} package: pip install "senet[{extra}]"'
    )


def _to_numpy(name: str, value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch.Tensor, without importing torch
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        value = value.numpy()
    array = np.asarray(value)
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_
    ):
        raise ValueError(f"tensor {name!r} is not numeric (dtype {array.dtype})")
    return array


def _unwrap(checkpoint, source: str) -> Mapping:
    """The state dict inside a training checkpoint (``state_dict``/``model`` key) or itself."""
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{source} holds a {type(checkpoint).__name__}, not a state dict")
    for key in ("state_dict", "model", "state_dict_ema"):
        if key in checkpoint and isinstance(checkpoint[key], Mapping):
            return checkpoint[key]
    return checkpoint


def read_state_dict(source) -> dict[str, np.ndarray]:
    """A PyTorch state dict as NumPy arrays, from a file or a mapping.

    Args:
        source: A ``.safetensors`` file (read with ``safetensors.numpy``), a ``.pth`` /
            ``.pt`` / ``.bin`` file (read with ``torch.load(weights_only=True)``: tensors and
            plain containers only, never arbitrary pickled objects), or a mapping of names
            to tensors/arrays. A training checkpoint's ``state_dict`` / ``model`` entry is
            used, and a ``module.`` prefix (DistributedDataParallel) is dropped.

    Returns:
        ``{name: array}`` in PyTorch layout.

    Raises:
        ImportError: The package for the file type is missing (the message names the extra).
        ValueError: An unknown file type, a corrupt file, or a file that holds no state dict.
        FileNotFoundError: ``source`` does not exist.
    """
    if isinstance(source, Mapping):
        state, where = _unwrap(source, "the mapping"), "the mapping"
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"weights file not found: {path}")
        suffix = path.suffix.lower()
        where = str(path)
        if suffix == ".safetensors":
            try:
                from safetensors.numpy import load_file
            except ImportError:
                raise _missing_package("safetensors", "pretrained", suffix) from None
            try:
                state = load_file(str(path))
            except Exception as error:  # SafetensorError: a corrupt header, shape or offsets
                raise ValueError(
                    f"{path} is not a readable .safetensors file "
                    f"({' '.join(str(error).split())[:200]})"
                ) from error
        elif suffix in (".pth", ".pt", ".bin"):
            try:
                import torch
            except ImportError:
                raise _missing_package("torch", "torch", suffix) from None
            try:
                checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
            except Exception as error:  # UnpicklingError for anything but tensors/containers
                raise ValueError(
                    f"{path} is not a plain PyTorch state dict (torch.load(weights_only=True) "
                    f"refused it: {' '.join(str(error).split())[:200]})"
                ) from error
            state = _unwrap(checkpoint, where)
        else:
            raise ValueError(
                f"{path}: expected a .safetensors, .pth, .pt or .bin weights file, got {suffix!r}"
            )
    names = list(state)
    if not names:
        raise ValueError(f"{where} holds no tensors")
    if all(isinstance(name, str) and name.startswith("module.") for name in names):
        state = {name.removeprefix("module."): value for name, value in state.items()}
    return {str(name): _to_numpy(str(name), value) for name, value in state.items()}


# --------------------------------------------------------------------------- mapping


@dataclass(frozen=True)
class _Assignment:
    timm_name: str
    variable: object  # a keras.Variable
    keras_name: str
    to_keras: object  # (array) -> array in the variable's layout
    torch_shape: tuple[int, ...]  # the shape the file must have


_BLOCK = re.compile(r"^conv(\d+)_block(\d+)_(.+)$")
_BRANCH = {
    "1_conv": "conv1",
    "1_bn": "bn1",
    "2_conv": "conv2",
    "2_bn": "bn2",
    "3_conv": "conv3",
    "3_bn": "bn3",
    "se": "se",
    "eca": "se",
}
_DEEP_STEM = {
    "conv1_1_conv": "conv1.0",
    "conv1_1_bn": "conv1.1",
    "conv1_2_conv": "conv1.3",
    "conv1_2_bn": "conv1.4",
    "conv1_3_conv": "conv1.6",
}


def _timm_prefix(layer_name: str, downsample: str) -> str | None:
    """timm's module path for a senet layer with weights (``conv3_block2_2_conv`` -> ``layer2.1.conv2``)."""
    if layer_name in _DEEP_STEM:
        return _DEEP_STEM[layer_name]
    fixed = {"conv1_conv": "conv1", "conv1_bn": "bn1", "predictions": "fc"}
    if layer_name in fixed:
        return fixed[layer_name]
    match = _BLOCK.match(layer_name)
    if not match:
        return None
    stage, block, part = int(match.group(1)) - 1, int(match.group(2)) - 1, match.group(3)
    prefix = f"layer{stage}.{block}."
    if part in _BRANCH:
        return prefix + _BRANCH[part]
    # downsample = Sequential(conv, bn), or (pool, conv, bn) with avg_down.
    offset = 1 if downsample == "avg" else 0
    shortcut = {"0_conv": offset, "0_bn": offset + 1}
    if part in shortcut:
        return f"{prefix}downsample.{shortcut[part]}"
    return None


def _conv_kernel(array):
    return np.transpose(array, (2, 3, 1, 0))  # (O, I/g, kh, kw) -> (kh, kw, I/g, O)


def _matrix(array):
    return np.transpose(array.reshape(array.shape[0], -1))  # (O, I[, 1, 1]) -> (I, O)


def _same(array):
    return array


def _layer_assignments(layer, prefix: str) -> list[_Assignment]:
    """(timm tensor, Keras variable, layout change) for every weight of ``layer``."""

    def one(suffix, variable, to_keras, torch_shape):
        return _Assignment(
            f"{prefix}.{suffix}", variable, variable.path, to_keras, tuple(torch_shape)
        )

    if isinstance(layer, keras.layers.Conv2D):
        kh, kw, cin, cout = layer.kernel.shape
        return [one("weight", layer.kernel, _conv_kernel, (cout, cin, kh, kw))]
    if isinstance(layer, keras.layers.BatchNormalization):
        if not math.isclose(layer.epsilon, 1e-5):
            raise ValueError(f"{layer.name} has BatchNorm epsilon {layer.epsilon}, timm uses 1e-5")
        (channels,) = layer.moving_mean.shape
        pairs = [
            ("weight", layer.gamma),
            ("bias", layer.beta),
            ("running_mean", layer.moving_mean),
            ("running_var", layer.moving_variance),
        ]
        return [
            one(suffix, variable, _same, (channels,))
            for suffix, variable in pairs
            if variable is not None
        ]
    if isinstance(layer, keras.layers.Dense):
        fan_in, units = layer.kernel.shape
        found = [one("weight", layer.kernel, _matrix, (units, fan_in))]
        if layer.bias is not None:
            found.append(one("bias", layer.bias, _same, (units,)))
        return found
    kind = type(layer).__name__
    if kind == "SqueezeExcite":
        found = []
        for dense, conv in ((layer.reduce, "fc1"), (layer.expand, "fc2")):
            fan_in, units = dense.kernel.shape
            found.append(one(f"{conv}.weight", dense.kernel, _matrix, (units, fan_in, 1, 1)))
            if dense.bias is not None:
                found.append(one(f"{conv}.bias", dense.bias, _same, (units,)))
        return found
    if kind == "EfficientChannelAttention":
        size = layer.kernel.shape[0]
        return [
            one("conv.weight", layer.kernel, lambda a: np.transpose(a, (2, 1, 0)), (1, 1, size))
        ]
    raise ValueError(f"senet cannot map the weights of layer {layer.name} ({kind}) to timm")


def _assignments(model: keras.Model, spec: TimmArchitecture) -> list[_Assignment]:
    found = []
    for layer in model.layers:
        if not layer.weights:
            continue
        prefix = _timm_prefix(layer.name, spec.downsample)
        if prefix is None:
            raise ValueError(f"senet has no timm name for layer {layer.name}")
        found.extend(_layer_assignments(layer, prefix))
    return found


def _names(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _load(model, spec, state, arch, *, strict: bool, include_top: bool):
    """Set every weight of ``model`` from ``state``; returns (used, unused, ignored) names."""
    assignments = _assignments(model, spec)
    missing = [a.timm_name for a in assignments if a.timm_name not in state]
    if missing:
        raise WeightMismatchError(
            f"the weights file lacks {len(missing)} tensor(s) {arch} needs: {_names(missing)}"
        )
    for a in assignments:
        shape = tuple(state[a.timm_name].shape)
        if shape != a.torch_shape:
            raise WeightMismatchError(
                f"tensor {a.timm_name} has shape {shape} in the file, {arch} needs "
                f"{a.torch_shape} (PyTorch layout; Keras weight {a.keras_name}, shape "
                f"{tuple(a.variable.shape)})"
            )
    used = {a.timm_name for a in assignments}
    ignored = sorted(
        name for name in state if name not in used and name.endswith(".num_batches_tracked")
    )
    unused = [name for name in state if name not in used and name not in ignored]
    dropped_top = {"fc.weight", "fc.bias"} if not include_top else set()
    unexpected = [name for name in unused if name not in dropped_top]
    if unexpected and strict:
        raise WeightMismatchError(
            f"the weights file has {len(unexpected)} tensor(s) {arch} does not use: "
            f"{_names(unexpected)} (a different architecture? strict=False loads anyway)"
        )
    assigned = set()
    for a in assignments:
        value = a.to_keras(state[a.timm_name]).astype(a.variable.dtype)
        a.variable.assign(value)
        assigned.add(id(a.variable))
    unset = [variable.path for variable in model.weights if id(variable) not in assigned]
    if unset:
        raise WeightMismatchError(
            f"{len(unset)} weight(s) of the Keras model have no tensor in the file: {_names(unset)}"
        )
    return sorted(used), unused, ignored


def _build(spec, name, config, num_classes, include_top, pooling, input_shape, activation):
    """The senet network for a timm architecture (``spec``), no weights set yet."""
    return resnet(
        spec.depth,
        input_shape=config.input_size if input_shape is None else input_shape,
        num_classes=num_classes,
        attention=spec.attention,
        reduction=16,
        include_top=include_top,
        pooling=pooling,
        name=name,
        cardinality=spec.cardinality,
        base_width=spec.base_width,
        stem=spec.stem,
        downsample=spec.downsample,
        units_divisor=8 if spec.attention == "se" else None,
        classifier_activation=activation,
    )


def expected_tensors(arch: str, *, num_classes: int | None = None) -> dict[str, tuple]:
    """The tensors a timm state dict for ``arch`` must hold: ``{name: PyTorch shape}``.

    What :func:`from_timm` checks a file against (BatchNorm's ``num_batches_tracked``
    counters are not listed: they are ignored). Useful to inspect a file that does not
    fit, or to make a random state dict for a test or a benchmark.

    Example:
        >>> expected_tensors("seresnet18")["layer1.0.se.fc1.weight"]
        (8, 64, 1, 1)
    """
    name, tag = _split_arch(arch)
    spec = ARCHITECTURES[name]
    config = pretrained_config(f"{name}.{tag}")
    classes = config.num_classes if num_classes is None else num_classes
    model = _build(spec, name, config, classes, True, None, None, "softmax")
    return {a.timm_name: a.torch_shape for a in _assignments(model, spec)}


# --------------------------------------------------------------------------- public


@dataclass
class TimmConversion:
    """What :func:`convert_timm` did.

    Attributes:
        model: The Keras network with timm's weights.
        config: timm's preprocessing for it (:class:`PretrainedConfig`).
        used: File tensors set into the model.
        unused: File tensors not used (the classifier with ``include_top=False``; others only
            with ``strict=False``).
        ignored: BatchNorm ``num_batches_tracked`` counters (no Keras counterpart).
        params: Trainable parameters (timm's ``param_count`` counts these).
        seconds: Wall time to read the file, build the model and set its weights.
        path: Where the model was saved, if ``out`` was given.
    """

    model: keras.Model
    config: PretrainedConfig
    used: list[str]
    unused: list[str]
    ignored: list[str]
    params: int
    seconds: float
    path: str | None = None

    def to_dict(self) -> dict:
        """JSON-ready summary (no model)."""
        return {
            "arch": self.config.arch,
            "tag": self.config.tag,
            "model": self.model.name,
            "path": self.path,
            "params": self.params,
            "tensors_used": len(self.used),
            "tensors_unused": list(self.unused),
            "tensors_ignored": len(self.ignored),
            "seconds": round(self.seconds, 3),
            "preprocessing": self.config.to_dict(),
        }


def convert_timm(
    weights,
    arch: str = "seresnet50",
    *,
    num_classes: int | None = None,
    include_top: bool = True,
    pooling: str | None = None,
    input_shape: Sequence[int | None] | None = None,
    classifier_activation: str | None = "softmax",
    strict: bool = True,
    out=None,
    overwrite: bool = False,
) -> TimmConversion:
    """Build ``arch`` with senet and load timm's weights into it; optionally save it.

    Arguments as in :func:`from_timm`, plus:

    Args:
        out: Save the model here (a ``.keras`` file, written atomically).
        overwrite: Replace an existing ``out``; without it an existing file is refused.

    Returns:
        A :class:`TimmConversion` (model, preprocessing, tensors used/unused, time).
    """
    name, tag = _split_arch(arch)
    spec = ARCHITECTURES[name]
    if out is not None:
        out = Path(out)
        if out.suffix != ".keras":
            raise fail("out", "a path ending in .keras", str(out))
        if out.exists() and not overwrite:
            raise FileExistsError(f"{out} exists (pass overwrite=True / --overwrite to replace it)")
    start = time.perf_counter()
    state = read_state_dict(weights)
    config = pretrained_config(f"{name}.{tag}")
    if num_classes is None and include_top:
        classifier = state.get("fc.weight")
        num_classes = int(classifier.shape[0]) if classifier is not None else config.num_classes
    model = _build(
        spec, name, config, num_classes, include_top, pooling, input_shape, classifier_activation
    )
    used, unused, ignored = _load(model, spec, state, name, strict=strict, include_top=include_top)
    seconds = time.perf_counter() - start
    params = sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)
    result = TimmConversion(model, config, used, unused, ignored, params, seconds)
    if out is not None:
        from senet._files import atomic_write

        atomic_write(out, model.save)
        result.path = str(out)
    return result


def from_timm(
    weights,
    arch: str = "seresnet50",
    *,
    num_classes: int | None = None,
    include_top: bool = True,
    pooling: str | None = None,
    input_shape: Sequence[int | None] | None = None,
    classifier_activation: str | None = "softmax",
    strict: bool = True,
) -> keras.Model:
    """A senet Keras network with timm's pretrained weights, read from a file the user has.

    The model is :func:`senet.models.resnet` with timm's variant options (SE layers
    ``<block>_se``, ECA layers ``<block>_eca``, channels_last). Its input is what timm's
    is after preprocessing: see :func:`pretrained_config` (ImageNet mean/std, input size,
    crop and interpolation of each variant) and ``PretrainedConfig.normalize``.

    Args:
        weights: A ``.safetensors`` / ``.pth`` / ``.bin`` file or a state dict mapping
            (see :func:`read_state_dict`).
        arch: A timm model name from ``ARCHITECTURES`` (``"seresnet50"``,
            ``"seresnext26d_32x4d"``, ``"ecaresnet50d"``, ...), optionally ``.<tag>``.
        num_classes: Classifier width; default the file's (``fc.weight``). A different
            width fails: use ``include_top=False`` and add your own head to fine-tune.
        include_top: Keep timm's classifier (``predictions``); False drops it (its tensors
            are then reported as unused, not an error).
        pooling: Without the top: None (feature map), ``"avg"`` or ``"max"``.
        input_shape: ``(H, W, 3)``; default the variant's evaluation size. Spatial sizes
            may be None.
        classifier_activation: ``"softmax"`` (probabilities) or None (timm's logits).
        strict: Fail on tensors the network does not use (default). With False they are
            reported in a warning.

    Returns:
        A functional ``keras.Model`` named ``arch``.

    Raises:
        WeightMismatchError: A tensor is missing, unexpected (``strict``) or wrongly shaped;
            the message names it (and both shapes).
        ValueError: An unsupported ``arch`` (``UNSUPPORTED`` says why) or a bad file.
        ImportError: ``safetensors`` / ``torch`` is missing for the file type.

    Example:
        >>> model = from_timm("seresnet50.safetensors", "seresnet50")  # doctest: +SKIP
        >>> config = pretrained_config("seresnet50")
        >>> probabilities = model.predict(config.normalize(rgb_224))  # doctest: +SKIP
    """
    result = convert_timm(
        weights,
        arch,
        num_classes=num_classes,
        include_top=include_top,
        pooling=pooling,
        input_shape=input_shape,
        classifier_activation=classifier_activation,
        strict=strict,
    )
    unexpected = [name for name in result.unused if include_top or not name.startswith("fc.")]
    if unexpected:
        warnings.warn(
            f"{len(unexpected)} tensor(s) of the weights file are unused: {_names(unexpected)}",
            stacklevel=2,
        )
    return result.model
