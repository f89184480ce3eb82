"""The attention layer family and the name -> layer factory.

Importing this module registers every layer with Keras' serialization, so
models that contain them can be saved and loaded; the segmentation loss and metric
(:mod:`senet.layers.losses`) too, so a compiled checkpoint loads.
"""

from senet.layers.cbam import CBAM
from senet.layers.eca import ECA, EfficientChannelAttention
from senet.layers.fused import FusedSEResidual
from senet.layers.info import TrainingInfo, training_info, with_training_info
from senet.layers.losses import DiceCELoss, DiceScore
from senet.layers.pyramid import PyramidEncoder
from senet.layers.registry import ModelLoadError, attention, kinds, load_model, register
from senet.layers.spatial import ChannelSpatialSqueezeExcite, SpatialSqueezeExcite
from senet.layers.squeeze_excite import SEModule, SqueezeExcite, bottleneck_units

__all__ = [
    "CBAM",
    "DiceCELoss",
    "DiceScore",
    "ECA",
    "ChannelSpatialSqueezeExcite",
    "EfficientChannelAttention",
    "FusedSEResidual",
    "ModelLoadError",
    "PyramidEncoder",
    "SEModule",
    "SpatialSqueezeExcite",
    "SqueezeExcite",
    "TrainingInfo",
    "attention",
    "bottleneck_units",
    "kinds",
    "load_model",
    "register",
    "training_info",
    "with_training_info",
]
