"""The model the tests of senet serve run: a small untrained SE emotion CNN that carries a
training record (synthetic data, class names of its own), so answers and cards can be told
from FER2013's defaults. Shared by test_serve.py and test_serve_live.py."""

CLASSES = ["calm", "cross", "glad", "low", "scared", "shocked", "sick"]
SIDE = 32


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
