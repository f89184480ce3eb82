"""Fresh-process half of test_saving.py: load saved .keras files and report what came back.

Usage: ``python check_saved_models.py DIR``. ``DIR`` holds ``<name>.keras`` files and
``expected.npz`` (inputs, outputs and senet-layer weights of each model, written by the
test). The report (JSON on stdout) says, per model, the largest output difference, whether
every senet layer's config and weights are unchanged and the classes it was revived as.
Optional ``networks.json`` names more models (``{name: [model file, arrays file]}``, the
arrays ``x`` and ``y``); for each the report gives the largest output difference and the
layer classes, or the error loading it raised (what some tests check).
Only ``import senet`` (lazy) is done up front: ``senet.load_model`` must register the layers.
"""

import json
import sys
from pathlib import Path

import keras
import numpy as np

import senet


def _normalized(config):
    return json.loads(json.dumps(config))


def check(directory: Path) -> dict:
    expected = np.load(directory / "expected.npz")
    configs = json.loads((directory / "configs.json").read_text())
    report = {"backend": keras.backend.backend(), "models": {}, "networks": {}}
    for model_name, layer_configs in configs.items():
        model = senet.load_model(directory / f"{model_name}.keras")
        x = expected[f"{model_name}/x"]
        output = keras.ops.convert_to_numpy(model(x))
        layers = {layer.name: layer for layer in model.layers}
        weights_equal = all(
            all(
                np.array_equal(w, expected[f"{model_name}/{name}/{i}"])
                for i, w in enumerate(layers[name].get_weights())
            )
            and len(layers[name].get_weights()) == int(expected[f"{model_name}/{name}/count"])
            for name in layer_configs
        )
        report["models"][model_name] = {
            "max_abs_error": float(np.max(np.abs(output - expected[f"{model_name}/y"]))),
            "configs_equal": all(
                _normalized(layers[name].get_config()) == config
                for name, config in layer_configs.items()
            ),
            "weights_equal": weights_equal,
            "classes": {
                name: type(layers[name]).__module__ + "." + type(layers[name]).__name__
                for name in layer_configs
            },
        }
    networks = directory / "networks.json"
    for name, (model_file, arrays_file) in json.loads(
        networks.read_text() if networks.exists() else "{}"
    ).items():
        arrays = np.load(directory / arrays_file)
        try:
            model = senet.load_model(directory / model_file)
        except Exception as error:  # the message is what the test checks
            report["networks"][name] = {"error": f"{type(error).__name__}: {error}"}
            continue
        y = keras.ops.convert_to_numpy(model(arrays["x"], training=False))
        report["networks"][name] = {
            "max_abs_diff": float(np.max(np.abs(y - arrays["y"]))),
            "classes": sorted({type(layer).__name__ for layer in model.layers}),
        }
    return report


if __name__ == "__main__":
    print(json.dumps(check(Path(sys.argv[1]))))
