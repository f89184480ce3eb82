"""The name -> layer factory: attention(), kinds(), register()."""

import re

import keras
import pytest

import senet
from senet.layers import (
    CBAM,
    ChannelSpatialSqueezeExcite,
    EfficientChannelAttention,
    SpatialSqueezeExcite,
    SqueezeExcite,
    attention,
    kinds,
    register,
    registry,
)
from senet.layers.registry import check_kind

CLASSES = {
    "se": SqueezeExcite,
    "eca": EfficientChannelAttention,
    "sse": SpatialSqueezeExcite,
    "scse": ChannelSpatialSqueezeExcite,
    "cbam": CBAM,
}


@pytest.fixture
def scratch_registry(monkeypatch):
    """register() writes into a copy, so other tests see the stock kinds."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_kinds():
    assert kinds() == ("se", "eca", "sse", "scse", "cbam")


@pytest.mark.parametrize("kind", ["se", "scse", "cbam"])
def test_reduction_reaches_kinds_with_a_bottleneck(kind):
    layer = attention(kind, reduction=16, name=f"block1_{kind}")
    assert type(layer) is CLASSES[kind]
    assert layer.name == f"block1_{kind}"
    assert layer.reduction == 16
    layer.build((None, 4, 4, 64))
    hidden = layer.channel.reduce.units if kind == "scse" else layer.reduce.units
    assert hidden == 64 // 16


@pytest.mark.parametrize("kind", ["eca", "sse"])
def test_reduction_is_ignored_by_kinds_without_one(kind):
    layer = attention(kind, reduction=16, name="block1_att")
    assert type(layer) is CLASSES[kind]
    assert layer.name == "block1_att"
    assert "reduction" not in layer.get_config()


def test_options_and_case():
    layer = attention("SE", reduction=4, squeeze="max", gate="tanh", data_format="channels_first")
    assert isinstance(layer, SqueezeExcite)
    config = layer.get_config()
    assert (config["reduction"], config["squeeze"], config["gate"]) == (4, "max", "tanh")
    assert config["data_format"] == "channels_first"
    # Without a reduction the layer keeps its own default (SE 8, scSE 2, CBAM 16).
    assert [attention(k).reduction for k in ("se", "scse", "cbam")] == [8, 2, 16]


@pytest.mark.parametrize("kind", [None, "none", "None"])
def test_none_means_no_attention(kind):
    assert attention(kind, reduction=16) is None


@pytest.mark.parametrize("kind", [None, "none", "None", "NONE", " none "])
def test_none_means_no_attention_in_the_network_builders_too(kind):
    from senet.models import emotion_cnn
    from senet.models._blocks import check_attention

    assert check_kind("attention", kind) is None
    assert check_attention(kind) is None
    model = emotion_cnn(input_shape=(16, 16, 1), widths=(4, 4), attention=kind)
    assert not [layer for layer in model.layers if isinstance(layer, SqueezeExcite)]


@pytest.mark.parametrize("kind", ["SE", "Se", "se"])
def test_kinds_are_case_insensitive_everywhere(kind):
    from senet.models._blocks import check_attention

    assert check_kind("attention", kind) == check_attention(kind) == "se"
    assert type(attention(kind)) is SqueezeExcite


@pytest.mark.parametrize("kind", ["transformer", "", 3])
def test_unknown_kind(kind):
    with pytest.raises(ValueError, match=rf"`kind` must be .*'se'.*, got {re.escape(repr(kind))}"):
        attention(kind)


def test_bad_reduction_is_reported_by_the_layer():
    with pytest.raises(ValueError, match=r"`reduction` must be .*, got 0$"):
        attention("se", reduction=0)


def test_register_a_class(scratch_registry):
    class Gate(keras.layers.Layer):
        def __init__(self, reduction=1, **kwargs):
            super().__init__(**kwargs)
            self.reduction = reduction

        def call(self, inputs):
            return inputs

    register("MyGate", Gate)
    assert "mygate" in kinds()
    for spelling in ("MyGate", "mygate"):
        layer = attention(spelling, reduction=3, name="g")
        assert type(layer) is Gate and layer.reduction == 3 and layer.name == "g"


def test_register_a_function(scratch_registry):
    calls = []

    def no_reduction(**options):
        calls.append(options)
        return SpatialSqueezeExcite(**options)

    register("plain", no_reduction)
    layer = attention("plain", reduction=8, name="p")
    assert isinstance(layer, SpatialSqueezeExcite)
    assert calls == [{"name": "p"}]  # no `reduction` parameter -> not passed


def test_register_replaces_a_kind(scratch_registry):
    register("se", ChannelSpatialSqueezeExcite)
    assert isinstance(attention("se"), ChannelSpatialSqueezeExcite)


def test_register_leaves_the_stock_registry_alone_here():
    assert type(attention("se")) is SqueezeExcite
    assert "mygate" not in kinds() and "plain" not in kinds()


@pytest.mark.parametrize(
    "kind,factory,match",
    [
        ("none", SqueezeExcite, "`kind` must be .*, got 'none'"),
        ("NONE", SqueezeExcite, "`kind` must be .*, got 'NONE'"),
        ("", SqueezeExcite, "`kind` must be .*, got ''"),
        (None, SqueezeExcite, "`kind` must be .*, got None"),
        ("fine", 3, "`factory` must be .*, got 3"),
    ],
)
def test_register_rejects(kind, factory, match, scratch_registry):
    with pytest.raises(ValueError, match=match):
        register(kind, factory)


def test_top_level_names():
    assert senet.attention is attention
    assert senet.SqueezeExcite is SqueezeExcite
    assert senet.kinds() == kinds()
