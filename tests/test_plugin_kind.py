"""A kind is registered once: a package's attention layer, found through the
``senet.attention`` entry point, runs through `senet train`, `ablate`, `bench`,
``insert_attention`` and `senet export` with nothing else edited; its FLOPs and identity
initialisation come from the class."""

import json

import keras
import numpy as np
import pytest

from senet.bench import count_flops
from senet.cli import main
from senet.layers import registry

TOY_MODULE = '''
import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="senet_toy")
class ToyGate(keras.layers.Layer):
    """y = x * sigmoid(w): one learned gate per channel, the same for every input."""

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = data_format or keras.config.image_data_format()

    def build(self, input_shape):
        axis = -1 if self.data_format == "channels_last" else 1
        self.logit = self.add_weight(name="logit", shape=(input_shape[axis],), initializer="zeros")

    def call(self, x):
        gate = ops.sigmoid(self.logit)
        if self.data_format == "channels_first":
            gate = ops.reshape(gate, (-1,) + (1,) * (len(x.shape) - 2))
        return x * ops.cast(gate, x.dtype)

    def flops(self, input_shape, output_shape=None, *, macs_only=False):
        channels = input_shape[-1 if self.data_format == "channels_last" else 1]
        return 0 if macs_only else int(np.prod(input_shape)) + channels  # scale, gate

    def identity_init(self, gain, *, check_only=False):
        if not check_only:
            self.logit.assign(ops.full(self.logit.shape, float(np.log(gain / (1 - gain)))))

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format}
'''


@pytest.fixture
def toy_kind(tmp_path, monkeypatch):
    """A package `senet_toy` on sys.path whose entry point adds the kind "toy"; the registry
    is restored afterwards."""
    (tmp_path / "senet_toy.py").write_text(TOY_MODULE)
    info = tmp_path / "senet_toy-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: senet-toy\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[senet.attention]\ntoy = senet_toy:ToyGate\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    return tmp_path


def _cli(argv, capsys) -> str:
    status = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    assert status == 0, err
    return out


@pytest.mark.slow  # trains, ablates, times and exports a tiny model
def test_a_kind_from_a_package_runs_through_every_command(toy_kind, tmp_path, capsys):
    from senet.layers import kinds

    assert "toy" in kinds()
    data = ["--data", "synthetic", "--synthetic-size", "140", "--image-size", "16"]
    small = [*data, "--epochs", "1", "--batch-size", "32", "--no-augment"]

    _cli(["train", *small, "--attention", "toy", "--out", tmp_path / "run", "--quiet"], capsys)
    model = keras.models.load_model(tmp_path / "run" / "model.keras")
    toys = [layer for layer in model.layers if type(layer).__name__ == "ToyGate"]
    assert toys and all(layer.name.endswith("_toy") for layer in toys)

    # bench: the toy layers' own FLOPs count, and nothing is left unknown
    out = tmp_path / "bench.json"
    bench = ["bench", "--attention", "toy", "--batch-sizes", "1", "--train-batch", "0"]
    _cli([*bench, "--rounds", "2", "--warmup", "1", "--json", out, "--quiet"], capsys)
    result = json.loads(out.read_text())
    plain, attended = result["flops"]["plain"], result["flops"]["attention"]
    from senet.models import emotion_cnn

    reference = emotion_cnn((48, 48, 1), 7, attention="toy")
    toy_flops = sum(
        count_flops(reference, by_layer=True)[layer.name]
        for layer in reference.layers
        if type(layer).__name__ == "ToyGate"
    )
    assert attended - plain == toy_flops > 0

    # ablate: the toy cell beside its baseline, with the toy's FLOPs
    ablate = ["ablate", "--attention", "toy", "--seeds", "1", *small, "--quiet"]
    _cli([*ablate, "--out", tmp_path / "ablation"], capsys)
    rows = (tmp_path / "ablation" / "results.csv").read_text().splitlines()
    assert len(rows) == 3 and any("toy" in row for row in rows[1:])

    # insert_attention with identity init: the gate starts at the gain the class sets
    base = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="conv"), keras.layers.ReLU()]
    )
    from senet.models import insert_attention

    retro = insert_attention(base, "toy", init="identity", identity_gain=0.9)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(retro(x), 0.9 * np.asarray(base(x)), rtol=1e-5, atol=1e-6)

    # export: the TFLite file holds the toy layers' arithmetic and passes the parity check
    tflite = tmp_path / "model.tflite"
    exported = _cli(
        ["export", tmp_path / "run" / "model.keras", "--format", "tflite", "--out", tflite],
        capsys,
    )
    assert tflite.is_file() and "max abs" in exported


def test_a_broken_plugin_is_skipped_with_a_warning(toy_kind, monkeypatch):
    info = toy_kind / "senet_toy-1.0.dist-info" / "entry_points.txt"
    info.write_text("[senet.attention]\nbroken = senet_toy:NoSuchClass\n")
    with pytest.warns(UserWarning, match=r"'broken' \(senet_toy:NoSuchClass\) could not be"):
        kinds = registry.kinds()
    assert "broken" not in kinds and kinds[:5] == ("se", "eca", "sse", "scse", "cbam")
