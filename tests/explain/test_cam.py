"""grad_cam and attention_map: localisation, the CAM identity, class choice, shapes and range."""

import keras
import numpy as np
import pytest

import senet
from senet.explain import attention_map, default_layer, grad_cam


def _numpy(tensor):
    return keras.ops.convert_to_numpy(tensor)


def _quadrant_mask(size: int, quadrant: str) -> np.ndarray:
    mask = np.zeros((1, size, size, 1), "float32")
    half = size // 2
    if quadrant == "top_left":
        mask[:, :half, :half] = 1.0
    else:
        mask[:, half:, half:] = 1.0
    return mask


def _keep(quadrant: str, size: int, name: str):
    mask = _quadrant_mask(size, quadrant)
    return keras.layers.Lambda(lambda t: t * keras.ops.convert_to_tensor(mask), name=name)


def _set_positive_weights(model, rng):
    # Non-negative weights and inputs: every class score grows with the evidence it sees,
    # so each map has positive mass where the model looks.
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            layer.set_weights([np.abs(rng.normal(size=w.shape)).astype("float32") for w in weights])


def _two_quadrant_model(rng):
    """Class 0 sees only the top-left quadrant of the feature map, class 1 only the bottom-right."""
    inputs = keras.Input((16, 16, 3))
    features = keras.layers.Conv2D(
        6, 3, strides=2, padding="same", activation="relu", use_bias=False, name="features"
    )(inputs)  # 8 x 8: the heatmaps are upsampled 2x
    scores = []
    for quadrant in ("top_left", "bottom_right"):
        kept = _keep(quadrant, 8, f"keep_{quadrant}")(features)
        pooled = keras.layers.GlobalAveragePooling2D()(kept)
        scores.append(keras.layers.Dense(1, use_bias=False, name=f"score_{quadrant}")(pooled))
    model = keras.Model(inputs, keras.layers.Concatenate()(scores))
    _set_positive_weights(model, rng)
    return model


def _top_left_model(rng):
    """Conv features, a fixed top-left mask, a 1x1 conv head, GAP and a softmax classifier."""
    inputs = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(
        6, 3, strides=2, padding="same", activation="relu", use_bias=False, name="features"
    )(inputs)
    h = _keep("top_left", 8, "keep_top_left")(h)
    h = keras.layers.Conv2D(5, 1, activation="relu", use_bias=False, name="head_conv")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", use_bias=False)(h))
    _set_positive_weights(model, rng)
    return model


def _energy_share(heatmaps, quadrant):
    mask = _quadrant_mask(heatmaps.shape[1], quadrant)[..., 0]
    return (heatmaps * mask).sum(axis=(1, 2)) / heatmaps.sum(axis=(1, 2))


def _check_range(heatmaps, shape):
    assert heatmaps.shape == shape
    assert heatmaps.dtype == np.float32
    assert np.isfinite(heatmaps).all()
    np.testing.assert_allclose(heatmaps.min(axis=(1, 2)), 0.0, atol=1e-6)
    np.testing.assert_allclose(heatmaps.max(axis=(1, 2)), 1.0, atol=1e-6)


@pytest.mark.parametrize("method", ["gradcam", "gradxact", "gradcam++"])
def test_heatmap_energy_lies_where_the_model_looks(rng, method):
    model = _top_left_model(rng)
    images = rng.uniform(0.0, 1.0, (3, 16, 16, 3)).astype("float32")
    assert default_layer(model) == "head_conv"
    heatmaps = grad_cam(model, images, method=method)
    _check_range(heatmaps, (3, 16, 16))
    assert (_energy_share(heatmaps, "top_left") > 0.8).all()  # the quadrant is 0.25 of the area


def test_class_index_selects_the_class_evidence(rng):
    method = "gradxact"  # Grad-CAM(++) weights whole channels, so only the gradient localises
    model = _two_quadrant_model(rng)
    images = rng.uniform(0.0, 1.0, (2, 16, 16, 3)).astype("float32")
    # Before the masks the activations cover the whole image.
    for class_index, quadrant in [(0, "top_left"), (1, "bottom_right")]:
        heatmaps = grad_cam(model, images, "features", class_index, method=method)
        _check_range(heatmaps, (2, 16, 16))
        assert (_energy_share(heatmaps, quadrant) > 0.8).all()
    per_image = grad_cam(model, images, "features", np.array([1, 0]), method=method)
    assert _energy_share(per_image[:1], "bottom_right")[0] > 0.8
    assert _energy_share(per_image[1:], "top_left")[0] > 0.8


def _cam_model(rng, activation):
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="features")(inputs)
    h = keras.layers.Conv2D(5, 1, name="last_conv")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, keras.layers.Dense(3, activation=activation, name="classes")(h))


def _normalized(maps):
    maps = np.maximum(maps, 0.0)
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    return np.where(span > 0, (maps - low) / np.where(span > 0, span, 1.0), 0.0)


@pytest.mark.parametrize("activation", ["softmax", None])
def test_gradcam_equals_cam_for_a_gap_linear_head(rng, activation):
    """With GAP then a linear layer, Grad-CAM and grad x act reduce to CAM: ReLU(sum_k W_kc A_k)."""
    model = _cam_model(rng, activation)
    images = rng.uniform(0.0, 1.0, (4, 8, 8, 3)).astype("float32")
    features = _numpy(keras.Model(model.input, model.get_layer("last_conv").output)(images))
    kernel, bias = model.get_layer("classes").get_weights()
    predicted = (features.mean(axis=(1, 2)) @ kernel + bias).argmax(axis=1)

    def cam(classes):
        return _normalized(np.einsum("bhwk,bk->bhw", features, kernel[:, classes].T))

    for method in ("gradcam", "gradxact"):
        for class_index, classes in [(None, predicted), (2, np.full(4, 2)), ([1, 0, 2, 1], None)]:
            classes = np.asarray(class_index) if classes is None else classes
            heatmaps = grad_cam(model, images, class_index=class_index, method=method)
            np.testing.assert_allclose(heatmaps, cam(classes), atol=2e-5)
    np.testing.assert_allclose(
        grad_cam(model, images, "last_conv", batch_size=3), cam(predicted), atol=2e-5
    )


def test_sequential_model_and_model_left_unchanged(rng):
    model = keras.Sequential(
        [
            keras.Input((12, 12, 1)),
            keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu", name="conv"),
            senet.SqueezeExcite(2, name="se"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    images = rng.uniform(0.0, 1.0, (2, 12, 12, 1)).astype("float32")
    before = _numpy(model(images))
    assert default_layer(model) == "se"
    heatmaps = grad_cam(model, images)
    assert heatmaps.shape == (2, 12, 12)
    assert heatmaps.min() >= 0.0 and heatmaps.max() <= 1.0
    np.testing.assert_allclose(_numpy(model(images)), before, rtol=1e-6)
    for layer in model.layers:
        assert layer.output is not None  # raises if a call added graph nodes


def test_attention_map_is_gate_weighted_output(rng):
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv")(inputs)
    h = senet.SqueezeExcite(2, name="se")(h)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(h)))
    images = rng.uniform(0.0, 1.0, (3, 8, 8, 3)).astype("float32")

    features = _numpy(model.get_layer("conv")(images))
    w1, b1, w2, b2 = model.get_layer("se").get_weights()
    gate = 1.0 / (1.0 + np.exp(-(np.maximum(features.mean(axis=(1, 2)) @ w1 + b1, 0.0) @ w2 + b2)))
    expected = _normalized(np.einsum("bhwc,bc->bhw", features * gate[:, None, None, :], gate))
    np.testing.assert_allclose(attention_map(model, images), expected, atol=2e-5)
    np.testing.assert_allclose(
        attention_map(model, images, "se", batch_size=2), expected, atol=2e-5
    )


def test_flat_map_stays_zero_and_bad_arguments_raise(rng):
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    blind = keras.layers.Lambda(lambda t: t * 0.0, name="blind")(h)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(blind)))
    images = rng.uniform(0.0, 1.0, (2, 8, 8, 3)).astype("float32")
    heatmaps = grad_cam(model, images, "conv", method="gradxact")  # the gradient is 0
    assert heatmaps.shape == (2, 8, 8) and not heatmaps.any()

    with pytest.raises(ValueError, match="method"):
        grad_cam(model, images, method="lime")
    with pytest.raises(ValueError, match="class_index"):
        grad_cam(model, images, "conv", class_index=5)
    with pytest.raises(ValueError, match="layer"):
        grad_cam(model, images, "missing")
    with pytest.raises(ValueError, match="attention"):
        attention_map(model, images)


def test_intgrad_localises_and_equals_gradxact_for_a_linear_head(rng):
    model = _top_left_model(rng)
    images = rng.uniform(0.0, 1.0, (3, 16, 16, 3)).astype("float32")
    heatmaps = grad_cam(model, images, method="intgrad", steps=4)
    _check_range(heatmaps, (3, 16, 16))
    assert (_energy_share(heatmaps, "top_left") > 0.8).all()
    # GAP then a linear layer: the gradient is the same all along the path
    model = _cam_model(rng, "softmax")
    images = rng.uniform(0.0, 1.0, (4, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(
        grad_cam(model, images, method="intgrad", steps=3),
        grad_cam(model, images, method="gradxact"),
        atol=2e-5,
    )


def test_intgrad_attributions_sum_to_the_score_change_from_zero(rng):
    """Completeness: sum(A * mean path gradient) = y(A) - y(0) for a nonlinear head."""
    from senet.explain import _graph, cam

    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="features")(inputs)
    h = keras.layers.Conv2D(6, 3, padding="same", activation="tanh", name="head")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    h = keras.layers.Dense(5, activation="relu")(h)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="classes")(h))
    images = rng.uniform(0.0, 1.0, (2, 8, 8, 3)).astype("float32")
    classes = np.array([0, 2])
    logits = cam._logit_replacement(model)
    activation, gradient = cam._activation_and_gradient(
        model, images, "features", classes, logits, steps=256
    )

    def score(feed):
        out = _numpy(_graph.forward(model, images, {"features": feed, **logits}))
        return out[np.arange(2), classes]

    full = score(lambda layer, *args, **kwargs: layer(*args, **kwargs))
    empty = score(lambda layer, x, *args, **kwargs: keras.ops.zeros_like(layer(x)))
    np.testing.assert_allclose(
        (activation * gradient).sum(axis=(1, 2, 3)), full - empty, rtol=1e-3, atol=1e-4
    )
    with pytest.raises(ValueError, match="steps"):
        grad_cam(model, images, method="intgrad", steps=0)
