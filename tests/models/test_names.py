"""senet.names: the one table of model names; every name in it is accepted wherever a model
is named, and builds the network its table entry describes."""

import importlib.util
import re

import pytest

from senet import cli, names
from senet.names import MODEL_NAMES, build_model
from senet.train import TrainConfig


def test_every_name_is_accepted_by_training_ablate_and_the_cli():
    assert MODEL_NAMES[0] == "emotion_cnn"
    depths = {*names.IMAGENET_DEPTHS, *names.CIFAR_DEPTHS}
    assert {f"resnet{depth}" for depth in depths} | {"unet", "retinanet"} == set(MODEL_NAMES[1:])
    assert names.SEGMENTATION_MODELS == ("unet",) and names.DETECTION_MODELS == ("retinanet",)
    assert set(names.CLASSIFICATION_MODELS) | {"unet", "retinanet"} == set(MODEL_NAMES)
    parser = cli._parser()
    tasks = {"unet": "segmentation", "retinanet": "detection"}
    for name in MODEL_NAMES:
        task = tasks.get(name, "classification")
        assert TrainConfig(model=name, task=task).model == name
        assert parser.parse_args(["train", "--model", name]).model == name
        assert parser.parse_args(["ablate", "--model", name, "--out", "x"]).model == [name]
    for refused in ("resnet99", "resnet1202", "resnet", "vgg16"):
        with pytest.raises(ValueError, match=f"`model`.*{refused}"):
            TrainConfig(model=refused)
        with pytest.raises(ValueError, match=f"`model`.*{refused}"):
            build_model(refused, input_shape=(32, 32, 3), num_classes=2)
        assert names.resnet_depth(refused) is None


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_name_builds_its_network(name):
    if name in names.DETECTION_MODELS and importlib.util.find_spec("keras_hub") is None:
        pytest.skip("keras-hub is not installed")
    model = build_model(name, input_shape=(32, 32, 3), num_classes=5, attention="se")
    if name in names.DETECTION_MODELS:  # keras-hub's RetinaNet: boxes, classes, scores
        assert model.num_classes == 5 and model.inputs[0].shape[1:] == (32, 32, 3)
        assert any(layer.name.endswith("_se") for layer in model.backbone.image_encoder.layers)
        return
    if name in names.SEGMENTATION_MODELS:  # a class for every pixel
        assert model.output_shape == (None, 32, 32, 5)
        return
    assert model.output_shape == (None, 5)
    depth = names.resnet_depth(name)
    if depth is None:
        return
    # residual blocks end in "conv<stage>_block<i>_out": as many per stage as the table says
    ends = [
        m.groups()
        for m in map(
            re.compile(r"conv(\d)_block(\d+)_out$").match, (layer.name for layer in model.layers)
        )
        if m
    ]
    per_stage = [sum(1 for stage, _ in ends if stage == str(s)) for s in range(2, 6)]
    if names.is_cifar_depth(depth):
        assert per_stage == [names.CIFAR_DEPTHS[depth]] * 3 + [0]
    else:
        assert per_stage == list(names.IMAGENET_DEPTHS[depth][1])
