"""EfficientChannelAttention against a NumPy reference and ECA-Net's kernel-size rule."""

import keras
import numpy as np
import pytest
from layer_reference import eca, eca_gate, same_correlation

from senet.layers import ECA, EfficientChannelAttention


def test_reference_correlation_is_not_a_convolution():
    # Keras convolutions are cross-correlations: a kernel [0, 0, 1] reads the next element.
    signal = np.array([[1.0, 2.0, 3.0, 4.0]])[..., None]
    shifted = same_correlation(signal, np.array([0.0, 0.0, 1.0]).reshape(3, 1, 1))
    np.testing.assert_array_equal(shifted[0, :, 0], [2.0, 3.0, 4.0, 0.0])


def test_kernel_reads_the_next_channel_like_the_reference():
    layer = EfficientChannelAttention(kernel_size=3, gate="linear")
    x = np.arange(1, 6, dtype="float32").reshape(1, 1, 1, 5) * np.ones((1, 2, 2, 1), "float32")
    layer.build(x.shape)
    layer.set_weights([np.array([0.0, 0.0, 1.0]).reshape(3, 1, 1)])
    gate = keras.ops.convert_to_numpy(layer.excitation(x))
    np.testing.assert_array_equal(gate, [[2.0, 3.0, 4.0, 5.0, 0.0]])  # zero padded at the end


@pytest.mark.parametrize(
    "channels,options,kernel_size",
    [
        (64, {}, 3),  # ECA-Net's table: C=64 -> 3, C=256/512 -> 5
        (256, {}, 5),
        (512, {}, 5),
        (8, {}, 3),  # log rule gives 2 -> made odd (3); tiny C never drops below 3
        (2, {}, 3),
        (1024, {}, 5),  # (10 + 1) / 2 = 5.5 -> 5
        (256, {"gamma": 1, "b": 0}, 9),  # 8 is even -> 9
        (64, {"kernel_size": 7}, 7),  # explicit kernel_size wins
    ],
)
def test_kernel_size_and_parameter_count(channels, options, kernel_size):
    layer = EfficientChannelAttention(**options)
    layer.build((None, 4, 4, channels))
    assert layer.count_params() == kernel_size
    assert layer.get_weights()[0].shape == (kernel_size, 1, 1)
    assert kernel_size % 2 == 1 and kernel_size >= 3


ECA_CASES = [
    pytest.param({}, (2, 9, 32), id="adaptive-1d"),  # C=32 -> k=3
    pytest.param({"kernel_size": 5, "squeeze": "max"}, (2, 4, 5, 16), id="k5-max-2d"),
    pytest.param(
        {"kernel_size": 7, "squeeze": "avgmax", "gate": "tanh"}, (2, 3, 3, 4, 12), id="k7-3d"
    ),
    pytest.param(
        {"gamma": 1, "b": 0, "gate": "hard_sigmoid"}, (3, 4, 4, 64), id="gamma1-2d"
    ),  # k=7
]


@pytest.mark.parametrize("options,shape", ECA_CASES)
def test_matches_numpy_reference(options, shape, rng):
    x = rng.normal(size=shape).astype("float32")
    layer = EfficientChannelAttention(**options)
    layer.build(shape)
    layer.set_weights([rng.normal(size=w.shape) for w in layer.get_weights()])
    (kernel,) = layer.get_weights()
    reference_options = {k: v for k, v in options.items() if k in ("squeeze", "gate")}

    gate = keras.ops.convert_to_numpy(layer.excitation(x))
    np.testing.assert_allclose(
        gate, eca_gate(x.astype("float64"), kernel, **reference_options), rtol=1e-5, atol=1e-5
    )
    output = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(
        output, eca(x.astype("float64"), kernel, **reference_options), rtol=1e-5, atol=1e-5
    )


def test_sigmoid_gate_reaches_both_ends():
    layer = ECA(kernel_size=3)
    x = np.where(np.arange(8) % 2, 4.0, -4.0).astype("float32") * np.ones((1, 5, 5, 8), "float32")
    layer.build(x.shape)
    layer.set_weights([np.array([0.0, 10.0, 0.0]).reshape(3, 1, 1)])
    gate = keras.ops.convert_to_numpy(layer.excitation(x))
    assert gate.min() < 1e-3 and gate.max() > 1 - 1e-3  # a doubled sigmoid stays in (0.5, 0.73)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), x * gate[:, None, None, :])
