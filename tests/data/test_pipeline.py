"""tf.data pipelines, augmentation and class weights."""

from pathlib import Path

import keras
import numpy as np
import pytest

from senet.data import ImageSet, augmentation, class_weights, make_dataset

ROOT = Path(__file__).resolve().parents[2]


def _images(n=10, size=16, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, size, size, channels)).astype(np.float32)
    return ImageSet(x, (np.arange(n) % 3).astype(np.int64), ("a", "b", "c"))


# --------------------------------------------------------------------- class weights


def test_class_weights_balanced_by_hand():
    labels = np.array([0, 0, 0, 1, 2, 2])
    # n = 6 samples, k = 3 classes present: w_c = 6 / (3 * count_c); class 3 is absent.
    expected = {0: 6 / 9, 1: 6 / 3, 2: 6 / 6, 3: 0.0}
    weights = class_weights(labels, 4)
    assert weights.keys() == expected.keys()
    for c, w in expected.items():
        assert weights[c] == pytest.approx(w)
    # The balanced weights give every class the same total weight and a mean of 1.
    per_sample = np.array([weights[c] for c in labels])
    assert per_sample.mean() == pytest.approx(1.0)
    totals = [per_sample[labels == c].sum() for c in range(3)]
    assert totals == pytest.approx([2.0, 2.0, 2.0])


def test_class_weights_uniform_when_balanced():
    assert class_weights(np.arange(14) % 7, 7) == pytest.approx({c: 1.0 for c in range(7)})


@pytest.mark.parametrize(
    "labels,num_classes,name",
    [
        ([0, 3], 3, "labels"),
        ([-1, 0], 3, "labels"),
        ([], 3, "labels"),
        ([0.5], 3, "labels"),
        ([0], 0, "num_classes"),
    ],
)
def test_class_weights_bad_arguments(labels, num_classes, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        class_weights(np.array(labels), num_classes)


# ---------------------------------------------------------------------- augmentation


def test_augmentation_keeps_shape_and_range_and_changes_images():
    x = _images(8, 32).x
    out = np.asarray(augmentation(seed=3)(x, training=True))
    assert out.shape == x.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    changed = np.abs(out - x).reshape(8, -1).mean(axis=1)
    assert (changed > 0.01).all()
    again = np.asarray(augmentation(seed=3)(x, training=True))
    np.testing.assert_array_equal(again, out)  # a fixed seed repeats
    other = np.asarray(augmentation(seed=4)(x, training=True))
    assert not np.array_equal(other, out)


def test_augmentation_is_identity_at_inference():
    x = _images(4, 24).x
    np.testing.assert_allclose(np.asarray(augmentation()(x, training=False)), x, atol=1e-6)


def test_augmentation_layers():
    names = [type(layer).__name__ for layer in augmentation().layers]
    assert names == [
        "RandomFlip",
        "RandomTranslation",
        "RandomRotation",
        "RandomZoom",
        "RandomBrightness",
        "RandomContrast",
    ]
    assert augmentation().layers[0].mode == "horizontal"


# --------------------------------------------------------------------- make_dataset


def test_make_dataset_batches_in_order():
    data = _images(10, 16, channels=3)
    batches = list(make_dataset(data, batch_size=4))
    assert [tuple(x.shape) for x, _ in batches] == [(4, 16, 16, 3), (4, 16, 16, 3), (2, 16, 16, 3)]
    assert all(x.dtype.name == "float32" and y.dtype.name == "int32" for x, y in batches)
    np.testing.assert_array_equal(np.concatenate([x.numpy() for x, _ in batches]), data.x)
    np.testing.assert_array_equal(np.concatenate([y.numpy() for _, y in batches]), data.y)


def test_make_dataset_shuffles_pairs_each_epoch():
    data = _images(12)
    dataset = make_dataset(data, batch_size=5, shuffle=True, seed=1)
    orders = []
    for _ in range(2):
        batches = list(dataset)  # one pass is one epoch: x and y from the same pass
        x = np.concatenate([b[0].numpy() for b in batches])
        y = np.concatenate([b[1].numpy() for b in batches])
        # Each image still carries its own label: find it in the source.
        index = [int(np.flatnonzero((data.x == image).all(axis=(1, 2, 3)))[0]) for image in x]
        assert sorted(index) == list(range(12))
        np.testing.assert_array_equal(y, data.y[index])
        orders.append(index)
    assert orders[0] != list(range(12)) and orders[0] != orders[1]
    repeat = make_dataset(data, batch_size=5, shuffle=True, seed=1)
    first = np.concatenate([b[1].numpy() for b in repeat])
    np.testing.assert_array_equal(first, data.y[orders[0]])


def test_make_dataset_augments():
    data = _images(6, 20)
    batches = list(make_dataset(data, batch_size=6, augment=True, seed=2))
    x, y = batches[0][0].numpy(), batches[0][1].numpy()
    assert x.shape == data.x.shape and x.min() >= 0.0 and x.max() <= 1.0
    assert np.abs(x - data.x).mean() > 0.01
    np.testing.assert_array_equal(y, data.y)


def test_make_dataset_bad_batch_size():
    with pytest.raises(ValueError, match="`batch_size`"):
        make_dataset(_images(), batch_size=0)


def test_fit_on_a_dataset():
    """The tf.data pipeline, augmentation included, feeds model.fit; tests/test_backends.py
    runs this test on JAX and PyTorch too."""
    data = _images(16, 12)
    model = keras.Sequential(
        [keras.Input((12, 12, 1)), keras.layers.Flatten(), keras.layers.Dense(3)]
    )
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(
        make_dataset(data, 8, shuffle=True, augment=True),
        epochs=2,
        verbose=0,
        shuffle=False,  # the dataset shuffles itself; Keras warns about its own default
        class_weight=class_weights(data.y, 3),
    )
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()


# --------------------------------------------------------------------- augment_batch


def test_augment_batch_is_a_pure_function_of_the_seed():
    from senet.data import augment_batch

    x = np.random.default_rng(0).random((8, 24, 24, 1), dtype=np.float32)
    first = augment_batch(x, seed=(3, 4)).numpy()
    assert first.shape == x.shape and first.dtype == np.float32
    assert first.min() >= 0.0 and first.max() <= 1.0
    np.testing.assert_array_equal(first, augment_batch(x, seed=(3, 4)).numpy())
    assert np.abs(first - augment_batch(x, seed=(3, 5)).numpy()).mean() > 0.01
    assert np.abs(first - x).mean() > 0.01


def test_augment_batch_keeps_a_constant_image_constant_up_to_brightness_and_contrast():
    """Flip, shift, rotation and zoom with reflected borders move no new value in: a constant
    image stays constant, changed only by brightness (+-0.1) and contrast (about its mean)."""
    from senet.data import augment_batch

    x = np.full((16, 20, 20, 1), 0.5, np.float32)
    out = augment_batch(x, seed=(0, 1)).numpy()
    per_image = out.reshape(16, -1)
    np.testing.assert_allclose(per_image.max(1), per_image.min(1), atol=1e-5)
    assert np.all(np.abs(per_image[:, 0] - 0.5) <= 0.1 + 1e-6)


def test_augment_batch_moves_a_bright_spot_by_at_most_the_shift_rotation_and_zoom():
    from senet.data import augment_batch

    x = np.zeros((32, 41, 41, 1), np.float32)
    x[:, 20, 20] = 1.0  # the centre: rotation and zoom keep it, flip maps it to itself
    out = augment_batch(x, seed=(7, 0)).numpy()[..., 0]
    for image in out:
        row, col = np.unravel_index(np.argmax(image), image.shape)
        # shift up to 8% of 41 px (3.3 px); contrast/brightness do not move the maximum
        assert abs(row - 20) <= 4 and abs(col - 20) <= 4
