"""What the tests of senet serve share (test_serve.py, test_serve_live.py): small untrained
models that carry a training record (synthetic data, class names of their own), so answers
and cards can be told from FER2013's defaults, and a PNG header claiming more pixels than
the cap."""

import struct
import zlib

CLASSES = ["calm", "cross", "glad", "low", "scared", "shocked", "sick"]
SIDE = 32


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels, with one tiny IDAT (not decodable
    at that size)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def small_classifier(path):
    """Write the model to ``path`` (a .keras file) and return the path."""
    import keras

    from senet.layers.info import with_training_info
    from senet.models import emotion_cnn

    keras.utils.set_random_seed(0)
    model = emotion_cnn((SIDE, SIDE, 1), widths=(4, 8), attention="se")
    record = {
        "task": "classification",
        "dataset": "synthetic",
        "data": "synthetic",
        "image_size": SIDE,
        "channels": 1,
        "input_range": [0, 1],
        "class_names": CLASSES,
    }
    with_training_info(model, record).save(path)
    return path


PARTS = ["background", "eye", "mouth"]
OBJECTS = ["happy", "sad"]


def small_segmenter(path):
    """A small untrained 2-D U-Net (32x32 grey, classes PARTS) with its record."""
    import keras

    from senet.layers.info import with_training_info
    from senet.models import unet

    keras.utils.set_random_seed(0)
    model = unet((SIDE, SIDE, 1), num_classes=len(PARTS), depth=2, base_filters=4)
    record = {"task": "segmentation", "dataset": "synthetic", "image_size": SIDE}
    with_training_info(model, {**record, "channels": 1, "class_names": PARTS}).save(path)
    return path


def small_detector(path):
    """An untrained RetinaNet on ResNet-18 (64x64 grey, classes OBJECTS) with its record."""
    import keras

    from senet.layers.info import with_training_info
    from senet.models.retinanet import retinanet

    keras.utils.set_random_seed(0)
    model = retinanet(len(OBJECTS), backbone="resnet18", image_size=64, channels=1)
    record = {"task": "detection", "dataset": "synthetic", "image_size": 64, "channels": 1}
    with_training_info(model, {**record, "class_names": OBJECTS}).save(path)
    return path
