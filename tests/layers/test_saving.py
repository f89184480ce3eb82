"""model.save(".keras") then load_model in a fresh process (and, from TensorFlow, under JAX and torch).

One set of saved models is shared by every check; the fresh processes run side by side,
because starting Python with a Keras backend is what costs here.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from senet.layers import (
    CBAM,
    ChannelSpatialSqueezeExcite,
    EfficientChannelAttention,
    SpatialSqueezeExcite,
    SqueezeExcite,
)

CHECKER = Path(__file__).with_name("check_saved_models.py")
BACKEND = keras.backend.backend()


def _models():
    """Every layer, 1-D/2-D/3-D, both data formats, names and callables in the config."""
    inputs = keras.Input((6, 5, 8))
    x = SqueezeExcite(4, squeeze="avgmax", gate="hard_sigmoid", name="se")(inputs)
    x = EfficientChannelAttention(kernel_size=3, name="eca")(x)
    x = SpatialSqueezeExcite(gate="tanh", name="sse")(x)
    x = ChannelSpatialSqueezeExcite(reduction=2, name="scse")(x)
    chain_2d = keras.Model(inputs, CBAM(reduction=2, kernel_size=3, name="cbam")(x))

    channels_first_1d = keras.Sequential(
        [
            keras.Input((8, 9)),
            SqueezeExcite(
                units=3,
                use_bias=False,
                gate=keras.activations.tanh,
                data_format="channels_first",
                name="se_cf",
            ),
            CBAM(kernel_size=5, activation="swish", data_format="channels_first", name="cbam_cf"),
        ]
    )

    inputs = keras.Input((4, 3, 4, 8))
    x = ChannelSpatialSqueezeExcite(squeeze="max", name="scse_3d")(inputs)
    volume_3d = keras.Model(inputs, EfficientChannelAttention(name="eca_3d")(x))
    return {"chain_2d": chain_2d, "channels_first_1d": channels_first_1d, "volume_3d": volume_3d}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Save the models with random weights; record inputs, outputs, configs and weights."""
    directory = tmp_path_factory.mktemp("saved")
    rng = np.random.default_rng(0)
    arrays, configs = {}, {}
    for model_name, model in _models().items():
        model.set_weights([rng.normal(scale=0.5, size=w.shape) for w in model.get_weights()])
        x = rng.normal(size=(3, *model.input_shape[1:])).astype("float32")
        arrays[f"{model_name}/x"] = x
        arrays[f"{model_name}/y"] = keras.ops.convert_to_numpy(model(x))
        configs[model_name] = {}
        for layer in model.layers:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            configs[model_name][layer.name] = json.loads(json.dumps(layer.get_config()))
            weights = layer.get_weights()
            arrays[f"{model_name}/{layer.name}/count"] = np.array(len(weights))
            for i, weight in enumerate(weights):
                arrays[f"{model_name}/{layer.name}/{i}"] = weight
        model.save(directory / f"{model_name}.keras")
    np.savez(directory / "expected.npz", **arrays)
    (directory / "configs.json").write_text(json.dumps(configs))
    if BACKEND == "tensorflow":
        _save_fused_networks(directory)
    return directory, configs


def _save_fused_networks(directory):
    """A fused SE-ResNet-18 (random BN statistics and SE biases) saved twice: with the
    portable implementation ("auto") and with the TensorFlow-only one ("tf")."""
    from randomized import randomize
    from senet.models import fuse_se, resnet

    keras.utils.set_random_seed(2)
    model = randomize(resnet(18, input_shape=(32, 32, 3), num_classes=5, attention="se"))
    x = np.random.default_rng(3).normal(size=(2, 32, 32, 3)).astype("float32")
    networks = {}
    for implementation in ("auto", "tf"):
        fused = fuse_se(model, implementation=implementation)
        fused.save(directory / f"fused_{implementation}.keras")
        y = keras.ops.convert_to_numpy(fused(x, training=False))
        np.savez(directory / f"fused_{implementation}.npz", x=x, y=y)
        networks[f"fused_{implementation}"] = [
            f"fused_{implementation}.keras",
            f"fused_{implementation}.npz",
        ]
    (directory / "networks.json").write_text(json.dumps(networks))


def _backends():
    if BACKEND != "tensorflow":
        return [BACKEND]  # the TensorFlow run covers loading across backends
    others = [name for name in ("jax", "torch") if importlib.util.find_spec(name) is not None]
    return [BACKEND, *others]


@pytest.fixture(scope="module")
def reports(saved):
    """Run the checker in one fresh process per backend, all at once."""
    directory, _ = saved
    processes = {
        backend: subprocess.Popen(
            [sys.executable, str(CHECKER), str(directory)],
            env=dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for backend in _backends()
    }
    results = {}
    for backend, process in processes.items():
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, f"{backend}:\n{stdout[-3000:]}\n{stderr[-6000:]}"
        results[backend] = json.loads(stdout.strip().splitlines()[-1])
    return results


@pytest.mark.slow  # a fresh process per backend
@pytest.mark.parametrize("backend", _backends())
def test_saved_models_load_in_a_fresh_process(backend, saved, reports):
    _, configs = saved
    report = reports[backend]
    assert report["backend"] == backend
    assert set(report["models"]) == set(configs)
    # Same backend: the same arithmetic. Across backends convolutions may sum in another order.
    tolerance = 1e-6 if backend == BACKEND else 1e-5
    for model_name, result in report["models"].items():
        assert result["max_abs_error"] <= tolerance, (model_name, result)
        assert result["configs_equal"], (model_name, result)
        assert result["weights_equal"], (model_name, result)
        assert all(path.startswith("senet.layers.") for path in result["classes"].values())
        assert set(result["classes"]) == set(configs[model_name])


# A fresh process shows whether `senet.load_model` alone registers FusedSEResidual.
@pytest.mark.slow  # a fresh process per backend (the same processes as above)
@pytest.mark.skipif(BACKEND != "tensorflow", reason="fused models are saved on TensorFlow")
def test_fused_model_loads_with_senet_load_model_on_every_backend(reports):
    assert "tensorflow" in reports
    for backend, report in reports.items():
        found = report["networks"]["fused_auto"]
        assert "error" not in found, (backend, found)
        assert "FusedSEResidual" in found["classes"], backend
        # Same TF kernels in the fresh process; other backends run other conv kernels.
        tolerance = 1e-5 if backend == "tensorflow" else 1e-4
        assert found["max_abs_diff"] < tolerance, (backend, found)


@pytest.mark.slow  # a fresh process per backend (the same processes as above)
@pytest.mark.skipif(BACKEND != "tensorflow", reason="fused models are saved on TensorFlow")
def test_a_tensorflow_only_fused_model_says_so_on_other_backends(reports):
    assert reports["tensorflow"]["networks"]["fused_tf"]["max_abs_diff"] < 1e-5
    if "jax" not in reports:
        pytest.skip("jax is not installed")
    error = reports["jax"]["networks"]["fused_tf"]["error"]
    assert "`implementation` must be 'auto' or 'ops' on the 'jax' backend" in error
    assert "KERAS_BACKEND=tensorflow" in error
