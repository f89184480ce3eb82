import keras
import numpy as np
import pytest

import senet
from senet.models import resnet, resnet_stage_outputs

# torchvision's parameter counts (sum(p.numel() for p in model.parameters())); BN running
# statistics are buffers there and non-trainable weights here.
TORCHVISION_PARAMS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032}
# (block type, blocks per stage) of the ImageNet ResNets; stage widths 64/128/256/512.
IMAGENET = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
}


def trainable_params(model) -> int:
    return sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)


def se_params(channels: int, reduction: float) -> int:
    hidden = max(1, int(channels // reduction))
    return 2 * channels * hidden + hidden + channels


def unit_channels(depth: int):
    """(stage number, input channels, output channels) of every residual unit."""
    if depth in IMAGENET:
        block_type, blocks = IMAGENET[depth]
        widths, expansion, channels = (
            (64, 128, 256, 512),
            4 if block_type == "bottleneck" else 1,
            64,
        )
    else:
        blocks, widths, expansion, channels = ((depth - 2) // 6,) * 3, (16, 32, 64), 1, 16
    units = []
    for stage, (count, width) in enumerate(zip(blocks, widths, strict=True), start=2):
        for _ in range(count):
            units.append((stage, channels, width * expansion))
            channels = width * expansion
    return units


def cifar_params(depth: int, num_classes: int = 10) -> int:
    """He et al.'s CIFAR ResNet with option-B (1x1 conv + BN) projection shortcuts."""
    total = 9 * 3 * 16 + 2 * 16  # 3x3 stem conv + BN (gamma, beta)
    for _, cin, cout in unit_channels(depth):
        total += 9 * cin * cout + 9 * cout * cout + 2 * (2 * cout)
        if cin != cout:
            total += cin * cout + 2 * cout
    return total + 64 * num_classes + num_classes


def producer(tensor) -> str:
    return tensor._keras_history[0].name


def inputs_of(model, name: str) -> list[str]:
    return [producer(tensor) for tensor in keras.tree.flatten(model.get_layer(name).input)]


def consumers_of(model, name: str) -> list[str]:
    return [
        layer.name
        for layer in model.layers
        if not isinstance(layer, keras.layers.InputLayer)
        and name in [producer(tensor) for tensor in keras.tree.flatten(layer.input)]
    ]


def attention_names(model) -> list[str]:
    return [layer.name for layer in model.layers if isinstance(layer, senet.SqueezeExcite)]


@pytest.fixture(scope="module")
def resnet50():
    return resnet(50, input_shape=(224, 224, 3))


@pytest.mark.parametrize("depth", [18, 34])
def test_basic_block_resnets_match_torchvision_parameter_counts(depth):
    assert trainable_params(resnet(depth, input_shape=(64, 64, 3))) == TORCHVISION_PARAMS[depth]


def test_resnet50_matches_torchvision_and_se_adds_the_papers_parameters(resnet50):
    assert trainable_params(resnet50) == TORCHVISION_PARAMS[50]
    assert resnet50.name == "resnet50" and attention_names(resnet50) == []
    se = resnet(50, attention="se", reduction=16, input_shape=(224, 224, 3))
    assert se.name == "se_resnet50"
    added = trainable_params(se) - TORCHVISION_PARAMS[50]
    assert added == sum(se_params(cout, 16) for _, _, cout in unit_channels(50))
    assert added == 2_530_992
    assert len(attention_names(se)) == 16
    assert se.get_layer("conv2_block1_se").input.shape == (None, 56, 56, 256)


def test_stage_outputs_have_the_resnet50_names_and_shapes(resnet50):
    names = resnet_stage_outputs(resnet50)
    assert names == ["conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out"]
    shapes = [resnet50.get_layer(name).output.shape for name in names]
    assert shapes == [
        (None, 56, 56, 256),
        (None, 28, 28, 512),
        (None, 14, 14, 1024),
        (None, 7, 7, 2048),
    ]
    assert resnet50.get_layer("conv1_conv").use_bias is False
    assert resnet50.get_layer("conv1_bn").epsilon == pytest.approx(1e-5)
    assert resnet50.get_layer("conv3_block1_0_conv").strides == (2, 2)
    # v1.5: the stride is on the 3x3 convolution, not on the first 1x1.
    assert resnet50.get_layer("conv3_block1_1_conv").strides == (1, 1)
    assert resnet50.get_layer("conv3_block1_2_conv").strides == (2, 2)


@pytest.mark.parametrize("depth", [20, 56])
def test_cifar_resnets_have_the_option_b_parameter_count(depth):
    model = resnet(depth, input_shape=(32, 32, 3), num_classes=10)
    assert trainable_params(model) == cifar_params(depth)
    assert resnet_stage_outputs(model) == [
        f"conv{s}_block{(depth - 2) // 6}_out" for s in (2, 3, 4)
    ]
    assert model.get_layer(f"conv4_block{(depth - 2) // 6}_out").output.shape == (None, 8, 8, 64)


def test_resnet20_is_about_a_quarter_million_parameters():
    assert 0.26e6 < trainable_params(resnet(20)) < 0.28e6
    assert resnet(20).input_shape == (None, 32, 32, 3)


@pytest.mark.parametrize(
    ("placement", "channels"),
    [("standard", "out"), ("pre", "in"), ("post", "out"), ("identity", "out")],
)
def test_placement_parameter_counts(placement, channels):
    plain = cifar_params(20)
    model = resnet(20, attention="se", reduction=4, placement=placement)
    index = 1 if channels == "in" else 2
    expected = sum(se_params(unit[index], 4) for unit in unit_channels(20))
    assert trainable_params(model) - plain == expected


def test_placements_put_se_where_the_paper_does():
    # conv3_block1 has a projection shortcut, conv3_block2 an identity one.
    standard = resnet(20, attention="se", placement="standard")
    for block in ("conv3_block1", "conv3_block2"):
        assert inputs_of(standard, f"{block}_se") == [f"{block}_2_bn"]
        assert consumers_of(standard, f"{block}_se") == [f"{block}_add"]

    pre = resnet(20, attention="se", placement="pre")
    assert inputs_of(pre, "conv3_block2_se") == ["conv3_block1_out"]
    assert consumers_of(pre, "conv3_block2_se") == ["conv3_block2_1_conv"]
    assert sorted(inputs_of(pre, "conv3_block2_add")) == ["conv3_block1_out", "conv3_block2_2_bn"]
    # The strided unit: SE feeds the residual branch's first 3x3 (through its padding).
    assert [name[:15] for name in consumers_of(pre, "conv3_block1_se")] == ["conv3_block1_1_"]
    assert inputs_of(pre, "conv3_block1_0_conv") == ["conv2_block3_out"]

    post = resnet(20, attention="se", placement="post")
    assert inputs_of(post, "conv3_block2_se") == ["conv3_block2_relu"]
    assert inputs_of(post, "conv3_block2_relu") == ["conv3_block2_add"]
    assert consumers_of(post, "conv3_block2_se") == ["conv3_block2_out"]

    identity = resnet(20, attention="se", placement="identity")
    assert inputs_of(identity, "conv3_block2_se") == ["conv3_block1_out"]
    assert inputs_of(identity, "conv3_block1_se") == ["conv3_block1_0_bn"]
    assert sorted(inputs_of(identity, "conv3_block2_add")) == [
        "conv3_block2_2_bn",
        "conv3_block2_se",
    ]


@pytest.mark.parametrize("placement", ["standard", "pre", "post", "identity"])
def test_each_placement_trains_a_step_and_survives_saving(placement, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((4, 16, 16, 3), dtype="float32")
    y = rng.integers(0, 10, size=4)
    model = resnet(20, input_shape=(16, 16, 3), attention="se", placement=placement)
    model.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy", run_eagerly=True)
    before = [weight.numpy().copy() for weight in model.get_layer("conv4_block3_se").weights]
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss)
    after = model.get_layer("conv4_block3_se").weights
    assert any(not np.allclose(a, b.numpy()) for a, b in zip(before, after, strict=True))
    path = tmp_path / f"{placement}.keras"
    model.save(path)
    loaded = senet.load_model(path)
    assert attention_names(loaded) == attention_names(model)
    np.testing.assert_allclose(loaded(x, training=False), model(x, training=False), atol=1e-6)


def test_backbone_without_top():
    features = resnet(18, input_shape=(64, 64, 3), include_top=False)
    assert features.output_shape == (None, 2, 2, 512)
    assert trainable_params(features) == TORCHVISION_PARAMS[18] - 512 * 1000 - 1000
    averaged = resnet(20, input_shape=(32, 32, 3), include_top=False, pooling="avg")
    assert averaged.output_shape == (None, 64)
    pooled = resnet(20, input_shape=(None, None, 3), include_top=False, pooling="max")
    assert pooled.output_shape == (None, 64)
    assert pooled(np.zeros((2, 24, 40, 3), "float32")).shape == (2, 64)


@pytest.mark.parametrize(
    ("depth", "stages", "expected"),
    [
        (50, (2, 3, 4), {2: 3, 3: 4, 4: 6}),
        (50, (False, False, True, True), {4: 6, 5: 3}),
        (20, (3,), {3: 3}),
        (20, (), {}),
    ],
)
def test_stages_limit_where_attention_goes(depth, stages, expected):
    model = resnet(depth, input_shape=(64, 64, 3), attention="se", stages=stages)
    names = attention_names(model)
    counts = {}
    for name in names:
        counts[int(name[4])] = counts.get(int(name[4]), 0) + 1
    assert counts == expected
    plain = TORCHVISION_PARAMS[50] if depth == 50 else cifar_params(depth)
    assert trainable_params(model) - plain == sum(
        se_params(cout, 16) for stage, _, cout in unit_channels(depth) if stage in expected
    )


@pytest.mark.parametrize("kind", senet.kinds())
def test_every_attention_kind_builds_with_its_name(kind):
    model = resnet(20, input_shape=(8, 8, 3), attention=kind, stages=(4,))
    attention_layers = [layer.name for layer in model.layers if layer.name.endswith(f"_{kind}")]
    assert attention_layers == [f"conv4_block{i}_{kind}" for i in (1, 2, 3)]
    assert model(np.zeros((1, 8, 8, 3), "float32")).shape == (1, 10)


def test_attention_options_reach_the_layers():
    model = resnet(20, attention="se", attention_options={"squeeze": "avgmax"}, stages=(2,))
    assert {model.get_layer(name).squeeze for name in attention_names(model)} == {"avgmax"}


def test_resnet20_loss_goes_down_on_a_fixed_batch():
    rng = np.random.default_rng(0)
    x = rng.random((8, 16, 16, 3), dtype="float32")
    y = rng.integers(0, 10, size=8)
    model = resnet(20, input_shape=(16, 16, 3), attention="se")
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", run_eagerly=True)
    history = model.fit(x, y, batch_size=8, epochs=4, verbose=0).history["loss"]
    assert history[-1] < 0.8 * history[0]


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"depth": 19}, "depth"),
        ({"depth": 50, "placement": "after"}, "placement"),
        ({"depth": 20, "attention": "se", "stages": (5,)}, "stages"),
        ({"depth": 20, "attention": "se", "stages": (True, False)}, "stages"),
        ({"depth": 20, "attention": "squeeze"}, "attention"),
        ({"depth": 20, "include_top": False, "pooling": "mean"}, "pooling"),
        ({"depth": 20, "input_shape": (32, 32)}, "input_shape"),
        ({"depth": 20, "attention_options": {"reduction": 4}}, "attention_options"),
        ({"depth": 18, "normalization": "layer"}, "normalization"),
    ],
)
def test_bad_arguments_raise_value_errors_naming_them(kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        resnet(**kwargs)


def test_group_normalization_is_the_same_in_training_and_inference():
    keras.utils.set_random_seed(0)
    shape = (32, 32, 3)
    batch = resnet(18, input_shape=shape, include_top=False)
    group = resnet(18, input_shape=shape, include_top=False, normalization="group")
    kinds = {type(layer).__name__ for layer in group.layers}
    assert "GroupNormalization" in kinds and "BatchNormalization" not in kinds
    # the same layers by name; GroupNormalization has no running statistics (2 of BN's 4
    # numbers a channel)
    norms = [layer for layer in batch.layers if layer.name.endswith("_bn")]
    assert [layer.name for layer in norms] == [
        layer.name for layer in group.layers if layer.name.endswith("_bn")
    ]
    channels = sum(int(layer.gamma.shape[0]) for layer in norms)
    assert batch.count_params() - group.count_params() == 2 * channels
    assert group.get_layer("conv1_bn").groups == 32
    x = np.random.default_rng(0).random((2, *shape), dtype=np.float32)
    np.testing.assert_allclose(
        np.asarray(group(x, training=True)), np.asarray(group(x, training=False)), atol=1e-5
    )
    # BatchNormalization: batch statistics in training, running ones in inference
    gap = np.abs(np.asarray(batch(x, training=True)) - np.asarray(batch(x, training=False)))
    assert gap.max() > 0.1
