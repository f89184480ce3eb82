"""The segmentation loss (soft Dice + cross-entropy) and the Dice metric against NumPy."""

import keras
import numpy as np
import pytest

from senet.layers import DiceCELoss, DiceScore


def _softmax(logits):
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _reference_loss(labels, probabilities, smooth=1e-5):
    k = probabilities.shape[-1]
    target = np.eye(k)[labels]
    axes = tuple(range(1, labels.ndim))
    inter = (probabilities * target).sum(axes)
    total = probabilities.sum(axes) + target.sum(axes)
    dice = 1 - ((2 * inter + smooth) / (total + smooth)).mean(-1)
    ce = (-(target * np.log(np.clip(probabilities, 1e-7, 1))).sum(-1)).mean(axes)
    return (dice + ce).mean()


@pytest.mark.parametrize("spatial", [(6, 5), (4, 3, 5)])
def test_dice_ce_loss_is_the_numpy_formula(spatial):
    rng = np.random.default_rng(len(spatial))
    labels = rng.integers(0, 4, (3, *spatial))
    probabilities = _softmax(rng.normal(size=(3, *spatial, 4))).astype(np.float32)
    got = float(DiceCELoss()(labels, probabilities))
    np.testing.assert_allclose(got, _reference_loss(labels, probabilities), rtol=1e-5)
    # a perfect prediction: no cross-entropy, Dice 1 for every class
    perfect = np.eye(4, dtype=np.float32)[labels]
    assert float(DiceCELoss()(labels, perfect)) < 1e-5


def test_dice_score_pools_batches_and_skips_absent_classes():
    rng = np.random.default_rng(0)
    metric = DiceScore(4)
    labels = [rng.integers(0, 3, (2, 8, 8)) for _ in range(2)]  # class 3 never occurs
    outputs = [_softmax(rng.normal(size=(2, 8, 8, 4))) for _ in range(2)]
    outputs[1][..., 3] = -1.0  # nor is it predicted in the second batch
    for y, p in zip(labels, outputs, strict=True):
        metric.update_state(y, p)
    truth = np.concatenate([y.ravel() for y in labels])
    predicted = np.concatenate([p.argmax(-1).ravel() for p in outputs])
    scores = []
    for k in (1, 2, 3):
        total = (truth == k).sum() + (predicted == k).sum()
        if total:
            scores.append(2 * ((truth == k) & (predicted == k)).sum() / total)
    np.testing.assert_allclose(float(metric.result()), np.mean(scores), rtol=1e-6)
    metric.reset_state()
    assert float(metric.result()) == 0.0


def test_loss_and_metric_survive_saving_a_compiled_model(tmp_path):
    inputs = keras.Input((8, 8, 1))
    outputs = keras.layers.Conv2D(3, 1, activation="softmax")(inputs)
    model = keras.Model(inputs, outputs)
    model.compile("sgd", loss=DiceCELoss(ce_weight=0.5), metrics=[DiceScore(3)])
    x = np.random.default_rng(1).random((4, 8, 8, 1), dtype=np.float32)
    y = np.random.default_rng(2).integers(0, 3, (4, 8, 8))
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.loss.ce_weight == 0.5
    np.testing.assert_allclose(
        loaded.evaluate(x, y, verbose=0), model.evaluate(x, y, verbose=0), rtol=1e-5
    )
