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
