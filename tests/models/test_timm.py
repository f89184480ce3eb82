"""senet.models.from_timm against PyTorch: timm's module structure, random weights and BN stats.

The reference below is written from timm's published module structure
(timm/models/resnet.py: ResNet, BasicBlock, Bottleneck, downsample_conv/downsample_avg;
timm/layers/squeeze_excite.py: SEModule; timm/layers/eca.py: EcaModule), so its state dict has
timm's tensor names. timm itself needs torchvision, which does not load beside the local
torch; where it imports, the same checks also run against timm.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the PyTorch reference needs torch")
nn = torch.nn

import senet.models.timm as timm_import  # noqa: E402
from senet.models import from_timm, pretrained_config  # noqa: E402
from senet.models.timm import WeightMismatchError, convert_timm, read_state_dict  # noqa: E402

try:
    import timm  # noqa: F401

    HAVE_TIMM, WHY_NO_TIMM = True, ""
except Exception as error:  # ImportError, or torchvision failing against this torch
    HAVE_TIMM, WHY_NO_TIMM = False, f"timm cannot be imported here ({type(error).__name__})"


# --------------------------------------------------------------------------- reference


def make_divisible(value, divisor=8):
    """timm.layers.make_divisible(value, divisor, round_limit=0.)."""
    return max(divisor, int(value + divisor / 2) // divisor * divisor)


class SEModule(nn.Module):
    def __init__(self, channels):
        super().__init__()
        hidden = make_divisible(channels * (1.0 / 16), 8)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=True)
        self.bn = nn.Identity()
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=True)

    def forward(self, x):
        gate = self.fc2(self.act(self.bn(self.fc1(x.mean((2, 3), keepdim=True)))))
        return x * gate.sigmoid()


class EcaModule(nn.Module):
    def __init__(self, channels, gamma=2, beta=1):
        super().__init__()
        t = int(abs(math.log(channels, 2) + beta) / gamma)
        size = max(t if t % 2 else t + 1, 3)
        self.conv = nn.Conv1d(1, 1, size, padding=(size - 1) // 2, bias=False)

    def forward(self, x):
        y = self.conv(x.mean((2, 3)).view(x.shape[0], 1, -1))
        return x * y.sigmoid().view(x.shape[0], -1, 1, 1)


ATTENTION = {"se": SEModule, "eca": EcaModule}


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride, downsample, attn, cardinality, base_width):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.se = ATTENTION[attn](planes)
        self.act2 = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.act1(self.bn1(self.conv1(x)))
        y = self.se(self.bn2(self.conv2(y)))
        return self.act2(y + shortcut)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride, downsample, attn, cardinality, base_width):
        super().__init__()
        width = int(math.floor(planes * (base_width / 64)) * cardinality)
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=cardinality, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.act2 = nn.ReLU()
        self.conv3 = nn.Conv2d(width, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.se = ATTENTION[attn](planes * 4)
        self.act3 = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.act1(self.bn1(self.conv1(x)))
        y = self.act2(self.bn2(self.conv2(y)))
        y = self.se(self.bn3(self.conv3(y)))
        return self.act3(y + shortcut)


def downsample(inplanes, outplanes, stride, avg_down):
    if avg_down:
        pool = (
            nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False)
            if stride != 1
            else nn.Identity()
        )
        conv = nn.Conv2d(inplanes, outplanes, 1, 1, 0, bias=False)
        return nn.Sequential(pool, conv, nn.BatchNorm2d(outplanes))
    conv = nn.Conv2d(inplanes, outplanes, 1, stride, 0, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(outplanes))


class ResNet(nn.Module):
    def __init__(
        self,
        block,
        layers,
        attn,
        cardinality=1,
        base_width=64,
        stem_width=64,
        stem_type="",
        avg_down=False,
        num_classes=1000,
    ):
        super().__init__()
        deep = "deep" in stem_type
        inplanes = stem_width * 2 if deep else 64
        if deep:
            first = 3 * (stem_width // 4) if "tiered" in stem_type else stem_width
            self.conv1 = nn.Sequential(
                nn.Conv2d(3, first, 3, 2, 1, bias=False),
                nn.BatchNorm2d(first),
                nn.ReLU(),
                nn.Conv2d(first, stem_width, 3, 1, 1, bias=False),
                nn.BatchNorm2d(stem_width),
                nn.ReLU(),
                nn.Conv2d(stem_width, inplanes, 3, 1, 1, bias=False),
            )
        else:
            self.conv1 = nn.Conv2d(3, inplanes, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.act1 = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        for index, (planes, count) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
            stride = 1 if index == 0 else 2
            blocks = []
            for number in range(count):
                outplanes = planes * block.expansion
                down = None
                if number == 0 and (stride != 1 or inplanes != outplanes):
                    down = downsample(inplanes, outplanes, stride, avg_down)
                blocks.append(
                    block(
                        inplanes,
                        planes,
                        stride if number == 0 else 1,
                        down,
                        attn,
                        cardinality,
                        base_width,
                    )
                )
                inplanes = outplanes
            self.add_module(f"layer{index + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(inplanes, num_classes)

    def forward(self, x):
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(x.mean((2, 3)))


D = {"stem_width": 32, "stem_type": "deep", "avg_down": True}
T = {"stem_width": 32, "stem_type": "deep_tiered", "avg_down": True}
# timm/models/resnet.py's model definitions.
REFERENCE_ARGS = {
    "seresnet18": (BasicBlock, (2, 2, 2, 2), "se", {}),
    "seresnet34": (BasicBlock, (3, 4, 6, 3), "se", {}),
    "seresnet50": (Bottleneck, (3, 4, 6, 3), "se", {}),
    "seresnet101": (Bottleneck, (3, 4, 23, 3), "se", {}),
    "seresnet152": (Bottleneck, (3, 8, 36, 3), "se", {}),
    "seresnext26d_32x4d": (
        Bottleneck,
        (2, 2, 2, 2),
        "se",
        {"cardinality": 32, "base_width": 4, **D},
    ),
    "seresnext26t_32x4d": (
        Bottleneck,
        (2, 2, 2, 2),
        "se",
        {"cardinality": 32, "base_width": 4, **T},
    ),
    "seresnext50_32x4d": (Bottleneck, (3, 4, 6, 3), "se", {"cardinality": 32, "base_width": 4}),
    "ecaresnet50d": (Bottleneck, (3, 4, 6, 3), "eca", D),
}
# timm's published param_count (millions; results/benchmark-infer-*.csv, results-imagenet.csv).
TIMM_PARAMS_M = {
    "seresnet18": 11.78,
    "seresnet34": 21.96,
    "seresnet50": 28.09,
    "seresnet101": 49.33,
    "seresnet152": 66.82,
    "seresnext26d_32x4d": 16.81,
    "seresnext50_32x4d": 27.56,
    "ecaresnet50d": 25.58,
}


def randomize(module, seed=0):
    """Random weights, biases and BatchNorm statistics, at a scale that keeps logits ~1."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if name.endswith("num_batches_tracked"):
                tensor.fill_(7)
            elif name.endswith("running_var") or name.endswith(".weight") and tensor.ndim == 1:
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
            elif name.endswith("running_mean") or name.endswith(".bias"):
                tensor.copy_(0.1 * torch.randn(tensor.shape, generator=generator))
            else:
                fan_in = tensor[0].numel()
                std = math.sqrt(1.0 / fan_in)
                tensor.copy_(std * torch.randn(tensor.shape, generator=generator))
    return module.eval()


def reference(arch, num_classes=1000, seed=0):
    block, layers, attn, options = REFERENCE_ARGS[arch]
    torch.manual_seed(seed)
    model = ResNet(block, layers, attn, num_classes=num_classes, **options)
    return randomize(model, seed)


def numpy_state(model):
    return {name: tensor.detach().numpy().copy() for name, tensor in model.state_dict().items()}


def save_safetensors(model, path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy", reason="needs safetensors")
    safetensors_numpy.save_file(numpy_state(model), str(path))
    return path


def logits_pair(model, keras_model, size, seed=1):
    images = np.random.default_rng(seed).normal(size=(2, size, size, 3)).astype("float32")
    with torch.no_grad():
        expected = model(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()
    return np.asarray(keras_model(images, training=False)), expected


# --------------------------------------------------------------------------- parity

# (arch, input size): odd feature maps (72 -> ... 9 -> 5 -> 3) test ResNet-D's ceil-mode pooling.
PARITY = [
    ("seresnet18", 64),
    ("seresnet34", 48),
    ("seresnet50", 64),
    ("seresnext26d_32x4d", 72),
    ("seresnext26t_32x4d", 72),
    ("seresnext50_32x4d", 40),
    ("ecaresnet50d", 72),
]
# Deeper networks repeat the blocks above: seresnet101's mapping is checked below (every
# tensor used, timm's parameter count); a seresnet152 parity run (13 CPU-seconds) proved
# nothing these do not.


@pytest.mark.parametrize(("arch", "size"), PARITY)
def test_logits_match_the_pytorch_reference(arch, size, tmp_path):
    model = reference(arch)
    path = save_safetensors(model, tmp_path / f"{arch}.safetensors")
    result = convert_timm(path, arch, input_shape=(size, size, 3), classifier_activation=None)
    actual, expected = logits_pair(model, result.model, size)
    assert np.abs(expected).max() > 0.1  # a signal survived the depth
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-4)
    trainable = sum(p.numel() for p in model.parameters())
    assert result.params == trainable
    assert len(result.used) == trainable_tensors(model)
    assert result.unused == [] and all(n.endswith("num_batches_tracked") for n in result.ignored)
    if arch in TIMM_PARAMS_M:
        assert round(result.params / 1e6, 2) == TIMM_PARAMS_M[arch]


@pytest.mark.slow
def test_seresnet101_maps_every_tensor(tmp_path):
    # the parity runs above cover the same blocks; here only the mapping of a deep network:
    # every tensor used, every Keras weight set, timm's parameter count.
    model = reference("seresnet101")
    result = convert_timm(numpy_state(model), "seresnet101", input_shape=(32, 32, 3))
    assert len(result.used) == trainable_tensors(model) and result.unused == []
    assert result.params == sum(p.numel() for p in model.parameters())
    assert round(result.params / 1e6, 2) == TIMM_PARAMS_M["seresnet101"]


def trainable_tensors(model):
    return sum(1 for name in model.state_dict() if not name.endswith("num_batches_tracked"))


def test_pth_file_through_weights_only_torch_load(tmp_path):
    model = reference("seresnet18", num_classes=10)
    path = tmp_path / "weights.pth"
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, path)  # a training checkpoint
    keras_model = from_timm(path, "seresnet18", classifier_activation=None)
    assert keras_model.input_shape == (None, 224, 224, 3)
    assert keras_model.output_shape == (None, 10)  # width from the file's fc.weight
    actual, expected = logits_pair(model, keras_model, 224)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-4)


def test_softmax_head_and_backbone_use(tmp_path):
    model = reference("seresnet18", num_classes=5)
    state = numpy_state(model)
    probabilities = from_timm(state, "seresnet18", input_shape=(32, 32, 3))
    actual, expected = logits_pair(model, probabilities, 32)
    np.testing.assert_allclose(actual, torch.softmax(torch.from_numpy(expected), -1), atol=1e-5)

    result = convert_timm(state, "seresnet18", include_top=False, pooling="avg")
    assert result.model.output_shape == (None, 512)
    assert sorted(result.unused) == ["fc.bias", "fc.weight"]  # reported, not an error


@pytest.mark.skipif(not HAVE_TIMM, reason=WHY_NO_TIMM or "timm imports")
@pytest.mark.parametrize(("arch", "size"), PARITY)
def test_logits_match_timm_itself(arch, size, tmp_path):
    import timm

    model = randomize(timm.create_model(arch, pretrained=False), seed=0)
    path = save_safetensors(model, tmp_path / f"{arch}.safetensors")
    keras_model = from_timm(path, arch, input_shape=(size, size, 3), classifier_activation=None)
    actual, expected = logits_pair(model, keras_model, size)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-4)


# --------------------------------------------------------------------------- failures


@pytest.fixture(scope="module")
def small_state():
    return numpy_state(reference("seresnet18", num_classes=3))


def test_missing_tensor_is_named(small_state):
    state = dict(small_state)
    del state["layer2.1.se.fc1.bias"]
    with pytest.raises(WeightMismatchError, match=r"lacks 1 tensor.*layer2\.1\.se\.fc1\.bias"):
        from_timm(state, "seresnet18", input_shape=(32, 32, 3))


def test_extra_tensor_is_named(small_state):
    state = {**small_state, "layer5.0.conv1.weight": np.zeros((8, 8, 3, 3), "float32")}
    with pytest.raises(WeightMismatchError, match=r"does not use.*layer5\.0\.conv1\.weight"):
        from_timm(state, "seresnet18", input_shape=(32, 32, 3))
    with pytest.warns(UserWarning, match=r"layer5\.0\.conv1\.weight"):
        from_timm(state, "seresnet18", input_shape=(32, 32, 3), strict=False)


def test_wrongly_shaped_tensor_is_named_with_both_shapes(small_state):
    state = {**small_state, "layer1.0.conv2.weight": np.zeros((64, 64, 1, 1), "float32")}
    with pytest.raises(
        WeightMismatchError,
        match=r"layer1\.0\.conv2\.weight has shape \(64, 64, 1, 1\).*needs \(64, 64, 3, 3\)",
    ):
        from_timm(state, "seresnet18", input_shape=(32, 32, 3))


def test_se_width_of_another_rounding_is_a_shape_error(small_state):
    # senet's own default width C // 16 = 4 for 64 channels; timm rounds to 8.
    state = {**small_state, "layer1.0.se.fc1.weight": np.zeros((4, 64, 1, 1), "float32")}
    with pytest.raises(WeightMismatchError, match=r"layer1\.0\.se\.fc1\.weight.*\(8, 64, 1, 1\)"):
        from_timm(state, "seresnet18", input_shape=(32, 32, 3))


def test_a_different_architecture_fails(small_state):
    with pytest.raises(WeightMismatchError, match=r"lacks 112 tensor.*layer1\.2\.conv1\.weight"):
        from_timm(small_state, "seresnet34", input_shape=(32, 32, 3))


def test_classifier_width_mismatch_names_fc(small_state):
    with pytest.raises(WeightMismatchError, match=r"fc\.weight has shape \(3, 512\)"):
        from_timm(small_state, "seresnet18", num_classes=7, input_shape=(32, 32, 3))


class _Hostile:
    """Unpickling this would create a file: torch.load(weights_only=True) must refuse it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickled_objects_are_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        pickle.dump({"fc.weight": _Hostile(marker)}, handle, protocol=2)
    with pytest.raises(ValueError, match="weights_only"):
        read_state_dict(path)
    assert not marker.exists()


def test_unknown_files_and_archs(tmp_path):
    path = tmp_path / "weights.h5"
    path.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"\.safetensors, \.pth"):
        read_state_dict(path)
    with pytest.raises(FileNotFoundError):
        read_state_dict(tmp_path / "absent.safetensors")
    with pytest.raises(ValueError, match="`arch`.*pruned"):
        pretrained_config("ecaresnet50d_pruned")
    with pytest.raises(ValueError, match="`arch`"):
        pretrained_config("resnet50")


def test_missing_package_error_names_the_extra(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_safetensors(name, *args, **kwargs):
        if name.startswith("safetensors"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    path = tmp_path / "w.safetensors"
    path.write_bytes(b"x")
    monkeypatch.setattr(builtins, "__import__", no_safetensors)
    with pytest.raises(ImportError, match=r'pip install "senet\[pretrained\]"'):
        read_state_dict(path)


# --------------------------------------------------------------------------- preprocessing


def test_pretrained_config_is_timms_default_cfg():
    config = pretrained_config("seresnet50")
    assert (config.tag, config.input_size, config.crop_pct) == ("a1_in1k", (224, 224, 3), 0.95)
    assert config.interpolation == "bicubic"
    assert pretrained_config("seresnet50.a3_in1k").input_size == (160, 160, 3)
    assert pretrained_config("ecaresnet50d").crop_pct == 0.875
    assert pretrained_config("seresnet152d").input_size == (256, 256, 3)
    pixels = np.array([[[0, 128, 255]]], dtype=np.uint8)
    expected = (np.array([0, 128, 255]) / 255 - np.array(config.mean)) / np.array(config.std)
    np.testing.assert_allclose(config.normalize(pixels)[0, 0], expected, rtol=1e-6)
    for arch in timm_import.ARCHITECTURES:
        assert pretrained_config(arch).mean == (0.485, 0.456, 0.406)


# --------------------------------------------------------------------------- builder options


def test_resnet_variant_options_are_checked():
    from senet.models import resnet

    with pytest.raises(ValueError, match="`cardinality`"):
        resnet(18, cardinality=32, base_width=4)
    with pytest.raises(ValueError, match="`units_divisor`"):
        resnet(50, attention="eca", units_divisor=8)
    with pytest.raises(ValueError, match="`stem`"):
        resnet(50, stem="wide")
    with pytest.raises(ValueError, match="`downsample`"):
        resnet(50, downsample="max")
    with pytest.raises(ValueError, match="`stem`"):
        resnet(20, stem="deep")


def test_resnet_variant_layers_and_default_name():
    from senet.models import resnet

    model = resnet(
        26,
        input_shape=(64, 64, 3),
        attention="se",
        cardinality=32,
        base_width=4,
        stem="deep",
        downsample="avg",
        units_divisor=8,
    )
    assert model.name == "se_resnext26d_32x4d"
    assert model.get_layer("conv1_3_conv").kernel.shape == (3, 3, 32, 64)
    assert model.get_layer("conv2_block1_2_conv").groups == 32
    assert model.get_layer("conv3_block1_0_pool").strides == (2, 2)
    assert model.get_layer("conv2_block1_se").reduce.units == 16  # make_divisible(256 / 16, 8)
    assert model.get_layer("conv5_block2_out").output.shape == (None, 2, 2, 2048)


# --------------------------------------------------------------------------- command line


def test_senet_convert_writes_a_model_with_timms_logits(tmp_path, capsys):
    import senet
    from senet import cli

    model = reference("seresnet18", num_classes=4)
    weights = save_safetensors(model, tmp_path / "seresnet18.safetensors")
    out = tmp_path / "model.keras"
    argv = ["convert", str(weights), "--arch", "seresnet18", "--out", str(out)]
    argv += ["--input-size", "32", "--logits"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "seresnet18.untrained" in printed and "mean [0.485, 0.456, 0.406]" in printed
    actual, expected = logits_pair(model, senet.load_model(out), 32)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-4)

    assert cli.main(argv) == 2  # an existing file is not replaced without --overwrite
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("arch", ["seresnet18", "ecaresnet50d"])
def test_expected_tensors_are_the_references_state_dict(arch):
    state = numpy_state(reference(arch))
    wanted = {
        name: tuple(value.shape)
        for name, value in state.items()
        if not name.endswith("num_batches_tracked")
    }
    assert timm_import.expected_tensors(arch) == wanted
