"""PyramidEncoder: an image encoder whose feature pyramid survives saving and loading.

keras-hub's detectors (``RetinaNetBackbone``) read ``image_encoder.pyramid_outputs`` (a dict
``{"P2": tensor, ...}`` of the encoder's own intermediate outputs) when they are built, and
again when a saved detector is loaded. A plain functional model loses that attribute in
the file; this registered functional model saves the layer name of each level and rebuilds
the attribute on load. :func:`senet.models.pyramid_encoder` makes one from a ResNet.
"""

from __future__ import annotations

import keras

__all__ = ["KERAS_HUB_INSTALL", "PyramidEncoder"]

#: How to install keras-hub for senet: without its dependencies, which pull in
#: tensorflow-text and a second TensorFlow; the detection extra holds what it imports.
KERAS_HUB_INSTALL = 'pip install "senet[detection]" && pip install --no-deps "keras-hub==0.32.*"'


@keras.saving.register_keras_serializable(package="senet")
class PyramidEncoder(keras.Model):
    """A functional image encoder with ``pyramid_outputs`` that survive a file.

    Args:
        inputs: The encoder's input(s), as for a functional ``keras.Model``.
        outputs: Its output(s).
        name: The model's name.
        pyramid_layers: ``{"P2": "conv2_block2_out", ...}``: the layer whose output is each
            level (keyword, saved in the config).
    """

    def __init__(self, inputs, outputs, name=None, **kwargs):
        layers = kwargs.pop("pyramid_layers", None)
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        if not isinstance(layers, dict) or not layers:
            raise ValueError(f"`pyramid_layers` must name a layer for each level, got {layers!r}")
        self.pyramid_layers = {str(level): str(layer) for level, layer in layers.items()}
        self.pyramid_outputs = {
            level: self.get_layer(layer).output for level, layer in self.pyramid_layers.items()
        }

    def get_config(self):
        config = super().get_config()
        config["pyramid_layers"] = dict(self.pyramid_layers)
        return config
