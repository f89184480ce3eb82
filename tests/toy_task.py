"""A toy task for the task-seam tests: regress an image's mean brightness (one number) with
an attention layer in the model. Importable, so a test can add it through the
``senet.tasks`` entry point of a fake package and run it in fresh processes."""

from __future__ import annotations

import json
from dataclasses import dataclass

import keras
import numpy as np

from senet.layers import attention
from senet.tasks import Task


@dataclass
class Numbers:
    """A split of the toy task: images and one target each."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


class Brightness(Task):
    name = "brightness"
    score = "r2"
    report_files = ("residuals.json",)

    def load_data(self, config):
        rng = np.random.default_rng(config.split_seed)
        size = config.image_size
        # a bright square of random size and level on a dark ground: brightness varies
        x = np.zeros((120, size, size, 1), np.float32)
        for image in x:
            side, level = rng.integers(2, size), rng.uniform(0.2, 1.0)
            image[:side, :side] = level
        x += rng.normal(0, 0.02, x.shape).astype(np.float32)
        y = x.mean(axis=(1, 2, 3))[:, None].astype(np.float32)
        return {
            "train": Numbers(x[:80], y[:80]),
            "val": Numbers(x[80:100], y[80:100]),
            "test": Numbers(x[100:], y[100:]),
        }

    def output_names(self, split):
        return ["brightness"]

    def build_model(self, config, output_names):
        inputs = keras.Input((config.image_size, config.image_size, config.channels))
        x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
        layer = attention(config.attention, reduction=config.reduction)
        x = layer(x) if layer is not None else x
        x = keras.layers.GlobalAveragePooling2D()(x)
        return keras.Model(inputs, keras.layers.Dense(len(output_names))(x))

    def compile_options(self, config, model):
        return {"loss": "mse", "metrics": [keras.metrics.R2Score(name="r2")]}

    def record(self, config, output_names):
        return {"task": self.name, "image_size": config.image_size, "channels": 1}

    def evaluate(self, model, split, *, batch_size):
        predicted = model.predict(split.x, batch_size=batch_size, verbose=0)
        error = predicted - split.y
        total = ((split.y - split.y.mean()) ** 2).sum()
        return {
            "mse": float((error**2).mean()),
            "r2": float(1 - (error**2).sum() / total),
            "num_examples": len(split),
        }

    def report(self, metrics, out_dir, *, title, split, output_names):
        (out_dir / "residuals.json").write_text(json.dumps({"mse": metrics["mse"]}))
        return ["residuals.json"]

    def predictions(self, outputs, output_names):
        return [{"brightness": float(row[0])} for row in np.asarray(outputs)]
