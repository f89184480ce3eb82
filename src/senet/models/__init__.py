"""Networks built from the attention layers; each takes ``attention=<kind or None>``.

``emotion_cnn`` (FER-sized faces), ``resnet`` (ImageNet and CIFAR depths, every SE placement
of the paper) and ``unet`` (2-D/3-D segmentation, attention in the decoder). Layer names are
stable (keras.applications style), attention layers are named ``<block>_<kind>``.
``insert_attention`` retrofits attention into any functional Keras model.
"""

from senet.models.emotion import emotion_cnn
from senet.models.fused import FusedSEResidual, fuse_se
from senet.models.resnet import resnet, resnet_stage_outputs
from senet.models.surgery import insert_attention
from senet.models.unet import unet

__all__ = [
    "FusedSEResidual",
    "emotion_cnn",
    "fuse_se",
    "insert_attention",
    "resnet",
    "resnet_stage_outputs",
    "unet",
]
