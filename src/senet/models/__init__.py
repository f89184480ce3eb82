"""Networks built from the attention layers; each takes ``attention=<kind or None>``.

``emotion_cnn`` (FER-sized faces), ``resnet`` (ImageNet and CIFAR depths, every SE placement
of the paper) and ``unet`` (2-D/3-D segmentation, attention in the decoder). Layer names are
stable (keras.applications style), attention layers are named ``<block>_<kind>``.
``insert_attention`` retrofits attention into any functional Keras model. ``from_timm``
imports timm's pretrained SE-ResNets, SE-ResNeXts and ECA-ResNets from a weights file.
"""

from senet.models.emotion import emotion_cnn
from senet.models.fused import FusedSEResidual, fuse_for_inference, fuse_se
from senet.models.resnet import (
    pyramid_encoder,
    pyramid_outputs,
    resnet,
    resnet_stage_outputs,
)
from senet.models.retinanet import retinanet
from senet.models.surgery import insert_attention
from senet.models.timm import convert_timm, from_timm, pretrained_config
from senet.models.unet import unet

__all__ = [
    "FusedSEResidual",
    "convert_timm",
    "emotion_cnn",
    "fuse_for_inference",
    "fuse_se",
    "from_timm",
    "insert_attention",
    "pretrained_config",
    "pyramid_encoder",
    "pyramid_outputs",
    "resnet",
    "resnet_stage_outputs",
    "retinanet",
    "unet",
]
