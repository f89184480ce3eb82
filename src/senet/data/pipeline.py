"""tf.data input pipelines, image augmentation and class weights.

The pipelines are ``tf.data.Dataset`` objects, which ``model.fit`` accepts on every Keras 3
backend (TensorFlow, JAX, PyTorch). Augmentation is built from Keras preprocessing layers
and runs inside the tf.data map, where Keras runs them with TensorFlow whatever the
backend, so it costs the model nothing and works everywhere.

Two kinds of pipeline: :func:`make_dataset`, batches for a loop of your own; and a run's
batches (:func:`epoch_batches`, :func:`eval_batches`), which :func:`senet.train.train` fits
on: every epoch's order and augmentation a function of ``(seed, epoch)`` only, so a resumed
run sees the batches it would have seen, and a distributed run's batches split evenly over
its replicas.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from senet.checks import check_positive
from senet.data.base import ImageSet

__all__ = [
    "PREFETCH",
    "augment_batch",
    "augment_with_masks",
    "sample_patches",
    "augmentation",
    "class_weights",
    "epoch_batches",
    "eval_batches",
    "fixed_prefetch",
    "make_dataset",
    "replica_multiple",
]

# The augmentation's ranges, shared by augmentation() (Keras layers) and augment_batch()
# (stateless TF ops): shift as a fraction of the side, rotation as a fraction of a full turn
# (0.03 = +-10.8 degrees), zoom factor, brightness offset and contrast factor.
_SHIFT = 0.08
_ROTATION = 0.03
_ZOOM = 0.1
_BRIGHTNESS = 0.1
_CONTRAST = 0.2


def augmentation(seed: int = 0) -> keras.Sequential:
    """Random image augmentation for faces in ``[0, 1]``.

    Horizontal flip (expressions are left-right symmetric or, for the synthetic
    disgust, drawn to either side), shift up to 8% of the side, rotation up to
    +-10.8 degrees, zoom +-10% (reflected borders), brightness +-0.1 and contrast
    +-20%, all kept in ``[0, 1]``.

    Args:
        seed: Seed of the layers' random draws.

    Returns:
        A ``keras.Sequential`` of preprocessing layers; call it with ``training=True``.

    Example:
        >>> import numpy as np
        >>> out = augmentation(seed=1)(np.full((2, 48, 48, 1), 0.5, "float32"), training=True)
        >>> tuple(out.shape)
        (2, 48, 48, 1)
    """
    layers = keras.layers
    return keras.Sequential(
        [
            layers.RandomFlip("horizontal", seed=seed),
            layers.RandomTranslation(_SHIFT, _SHIFT, fill_mode="reflect", seed=seed + 1),
            layers.RandomRotation(_ROTATION, fill_mode="reflect", seed=seed + 2),
            layers.RandomZoom(_ZOOM, fill_mode="reflect", seed=seed + 3),
            layers.RandomBrightness(_BRIGHTNESS, value_range=(0.0, 1.0), seed=seed + 4),
            layers.RandomContrast(_CONTRAST, value_range=(0.0, 1.0), seed=seed + 5),
        ],
        name="augmentation",
    )


def augment_batch(images, seed) -> tf.Tensor:
    """The augmentation of :func:`augmentation`, drawn statelessly from ``seed``.

    The same family of random changes (horizontal flip, shift up to 8% of the side,
    rotation up to +-10.8 degrees, zoom +-10% with reflected borders, brightness +-0.1,
    contrast +-20%, clipped to ``[0, 1]``), but every draw is a pure function of ``seed``.
    Training uses it with ``seed=(run seed, epoch, step)`` folded into two integers, so a run
    resumed after a crash sees exactly the batches it would have seen without the crash
    (Keras' preprocessing layers keep their random state in a variable and cannot do that).

    Args:
        images: Float batch ``(B, H, W, C)`` in ``[0, 1]`` (a tensor inside ``tf.data``).
        seed: Two integers (a shape ``(2,)`` int tensor or a pair).

    Returns:
        A float32 tensor of the same shape, in ``[0, 1]``.

    Example:
        >>> import numpy as np
        >>> x = np.full((2, 48, 48, 1), 0.5, "float32")
        >>> tuple(augment_batch(x, seed=(1, 2)).shape)
        (2, 48, 48, 1)
    """
    images = tf.convert_to_tensor(images, tf.float32)
    draw = _draw_augmentation(images, seed)
    images = _transform(tf.where(draw["flip"], tf.reverse(images, axis=[2]), images), draw)
    return _intensity(images, draw)


def augment_with_masks(images, masks, seed) -> tuple[tf.Tensor, tf.Tensor]:
    """:func:`augment_batch` on images and their label maps together.

    The same flip, rotation, zoom and shift move each image and its mask (the mask with
    the nearest label, never a blend of two classes); brightness and contrast change the
    image only. Volumes (``(B, D, H, W, C)``) are flipped along every spatial axis at
    random, turned by a small rotation about each axis and zoomed alike along all three
    (:func:`resample_volumes`: trilinear for the image, nearest voxel for the mask), and
    changed in intensity.

    Args:
        images: Float batch ``(B, H, W, C)`` or ``(B, D, H, W, C)`` in ``[0, 1]``.
        masks: Integer label maps ``(B, H, W)`` or ``(B, D, H, W)``.
        seed: Two integers.

    Returns:
        ``(images, masks)``, shapes and dtypes as given.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    masks = tf.convert_to_tensor(masks)
    if images.shape.rank == 5:
        return _augment_volumes(images, masks, seed)
    draw = _draw_augmentation(images, seed)
    labels = tf.cast(masks, tf.float32)[..., None]
    flip = draw["flip"]
    images = _transform(tf.where(flip, tf.reverse(images, axis=[2]), images), draw)
    labels = _transform(
        tf.where(flip, tf.reverse(labels, axis=[2]), labels), draw, interpolation="NEAREST"
    )
    return _intensity(images, draw), tf.cast(tf.round(labels[..., 0]), masks.dtype)


def box_augmentation(bounding_box_format: str = "xyxy") -> list:
    """The box-aware Keras preprocessing layers :func:`augment_with_boxes` applies, in
    order (new ones each call): a horizontal flip, a shift of up to 10% of each side and a
    zoom of up to 20% in or out, the parts of the image they uncover filled with 0 (a
    reflection would show objects without boxes)."""
    return [
        keras.layers.RandomFlip("horizontal", bounding_box_format=bounding_box_format),
        keras.layers.RandomTranslation(
            0.1, 0.1, fill_mode="constant", bounding_box_format=bounding_box_format
        ),
        keras.layers.RandomZoom(0.2, fill_mode="constant", bounding_box_format=bounding_box_format),
    ]


def augment_with_boxes(images, targets, seed, layers=None, generator=None):
    """A detection batch moved at random by Keras' own box-aware preprocessing layers.

    Each layer (:func:`box_augmentation`: flip, shift, zoom) draws its transformation from
    a Keras ``SeedGenerator`` whose state is set from ``seed`` first, so the draws are a
    function of ``seed`` (two integers) only and a resumed run sees the same batches; then
    it moves the images and their boxes alike (``transform_images`` and
    ``transform_bounding_boxes``). Brightness and contrast change the images only. A box
    that leaves the image, or keeps less than a pixel of width or height, gets label -1
    (no box).

    Args:
        images: Float batch ``(B, H, W, C)`` in ``[0, 1]``.
        targets: ``{"boxes": (B, M, 4) xyxy pixels, "labels": (B, M)}`` (-1: no box).
        seed: Two integers.
        layers: The layers (default: a new :func:`box_augmentation`).
        generator: The ``keras.random.SeedGenerator`` to draw with (default: a new one).
            Call it in one thread at a time: its state is set for each batch.

    Returns:
        ``(images, targets)``, shapes and dtypes as given.
    """
    layers = box_augmentation() if layers is None else layers
    generator = keras.random.SeedGenerator(0) if generator is None else generator
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    generator.state.assign(tf.cast(seed, generator.state.dtype))
    images = tf.convert_to_tensor(images, tf.float32)
    boxes = {"boxes": targets["boxes"], "labels": targets["labels"]}
    for layer in layers:
        data = {"images": images, "bounding_boxes": boxes}
        change = layer.get_random_transformation(data, training=True, seed=generator)
        images = layer.transform_images(images, change, training=True)
        boxes = layer.transform_bounding_boxes(boxes, change, training=True)
    keys = tf.random.experimental.stateless_split(seed, num=2)
    batch = tf.shape(images)[0]
    contrast = tf.random.stateless_uniform([batch], keys[0], 1.0 - _CONTRAST, 1.0 + _CONTRAST)
    brightness = tf.random.stateless_uniform([batch], keys[1], -_BRIGHTNESS, _BRIGHTNESS)
    images = _intensity(
        images,
        {"contrast": contrast[:, None, None, None], "brightness": brightness[:, None, None, None]},
    )
    moved = tf.cast(boxes["boxes"], tf.float32)
    width = moved[..., 2] - moved[..., 0]
    height = moved[..., 3] - moved[..., 1]
    labels = tf.cast(boxes["labels"], targets["labels"].dtype)
    labels = tf.where((width >= 1.0) & (height >= 1.0), labels, -tf.ones_like(labels))
    return images, {"boxes": moved, "labels": labels}


def sample_patches(images, masks, seed, patch: int, foreground: float = 2 / 3):
    """A random ``patch``-sided crop of every image and mask of a batch of volumes.

    For each volume, with probability ``foreground`` the crop is centred on a foreground
    voxel (mask > 0) drawn uniformly, else on any voxel (and on any voxel when the mask
    has no foreground); a crop that would leave the volume is shifted back inside. Every
    draw is a pure function of ``seed`` (two integers), so a resumed run sees the same
    patches. MONAI's ``RandCropByPosNegLabeld`` with ``pos=2, neg=1`` draws alike.

    Args:
        images: ``(B, D, H, W, C)`` float volumes.
        masks: ``(B, D, H, W)`` integer label maps.
        seed: Two integers.
        patch: The crop's side (at most each volume side).
        foreground: The share of crops centred on foreground.

    Returns:
        ``(images, masks)`` of shapes ``(B, P, P, P, C)`` and ``(B, P, P, P)``.
    """
    images = tf.convert_to_tensor(images)
    masks = tf.convert_to_tensor(masks)
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    batch = tf.shape(images)[0]
    spatial = tf.shape(masks)[1:4]
    keys = tf.random.experimental.stateless_split(seed, num=3)
    on_foreground = tf.random.stateless_uniform([batch], keys[0]) < foreground
    pick = tf.random.stateless_uniform([batch], keys[1])
    anywhere = tf.random.stateless_uniform([batch, 3], keys[2])
    half = patch // 2

    def one(index):
        mask = masks[index]
        voxels = tf.where(mask > 0)  # (K, 3) int64
        count = tf.shape(voxels, out_type=tf.int64)[0]
        chosen = tf.minimum(tf.cast(pick[index] * tf.cast(count, tf.float32), tf.int64), count - 1)
        random_centre = tf.cast(anywhere[index] * tf.cast(spatial, tf.float32), tf.int64)
        centre = tf.cond(
            on_foreground[index] & (count > 0),
            lambda: voxels[tf.maximum(chosen, 0)],
            lambda: random_centre,
        )
        start = tf.clip_by_value(centre - half, 0, tf.cast(spatial, tf.int64) - patch)
        start = tf.cast(start, tf.int32)
        image = tf.slice(images[index], tf.concat([start, [0]], 0), [patch, patch, patch, -1])
        label = tf.slice(mask, start, [patch, patch, patch])
        return image, label

    return tf.map_fn(
        one,
        tf.range(batch),
        fn_output_signature=(
            tf.TensorSpec([patch, patch, patch, None], images.dtype),
            tf.TensorSpec([patch, patch, patch], masks.dtype),
        ),
    )


def _augment_volumes(images, masks, seed):
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    batch = tf.shape(images)[0]
    keys = tf.random.experimental.stateless_split(seed, num=7)
    for axis in range(3):
        flip = tf.random.stateless_uniform([batch], keys[axis]) < 0.5
        images = tf.where(flip[:, None, None, None, None], tf.reverse(images, [axis + 1]), images)
        masks = tf.where(flip[:, None, None, None], tf.reverse(masks, [axis + 1]), masks)
    # a small rotation about each axis and an isotropic zoom, about the volume's centre
    angles = tf.random.stateless_uniform([batch, 3], keys[5], -_ROTATION, _ROTATION) * 2 * np.pi
    zoom = tf.random.stateless_uniform([batch], keys[6], 1.0 - _ZOOM, 1.0 + _ZOOM)
    matrices = _rotations(angles) * zoom[:, None, None]
    images = resample_volumes(images, matrices)
    masks = resample_volumes(masks, matrices, nearest=True)
    scale = tf.random.stateless_uniform([batch], keys[3], 1.0 - _CONTRAST, 1.0 + _CONTRAST)
    shift = tf.random.stateless_uniform([batch], keys[4], -_BRIGHTNESS, _BRIGHTNESS)
    images = images * scale[:, None, None, None, None] + shift[:, None, None, None, None]
    return images, masks


def _rotations(angles):
    """``(B, 3, 3)`` rotation matrices ``R_0 @ R_1 @ R_2`` from ``(B, 3)`` angles (radians),
    ``R_k`` turning the plane of the two axes other than ``k``."""
    cos, sin = tf.cos(angles), tf.sin(angles)
    one, zero = tf.ones_like(cos[:, 0]), tf.zeros_like(cos[:, 0])

    def turn(k):
        c, s = cos[:, k], sin[:, k]
        rows = {
            0: [[one, zero, zero], [zero, c, -s], [zero, s, c]],
            1: [[c, zero, s], [zero, one, zero], [-s, zero, c]],
            2: [[c, -s, zero], [s, c, zero], [zero, zero, one]],
        }[k]
        return tf.stack([tf.stack(row, axis=1) for row in rows], axis=1)

    return turn(0) @ turn(1) @ turn(2)


def resample_volumes(volumes, matrices, *, nearest: bool = False):
    """Each volume of a batch resampled through a linear map about its centre.

    The output voxel at ``p`` takes the input's value at ``M (p - c) + c`` (``c`` the
    centre in voxel units), trilinearly interpolated, or the nearest voxel's value when
    ``nearest`` (label maps: never a blend of two classes). Points outside the volume are
    reflected back in, like the 2-D augmentation's ``fill_mode="reflect"``.

    Args:
        volumes: ``(B, D, H, W, C)`` float volumes or ``(B, D, H, W)`` label maps.
        matrices: ``(B, 3, 3)`` maps from output to input voxel offsets.
        nearest: Take the nearest voxel instead of interpolating.

    Returns:
        The resampled batch, shape and dtype as given.

    Example:
        >>> import numpy as np
        >>> x = np.arange(8, dtype="float32").reshape(1, 2, 2, 2, 1)
        >>> same = resample_volumes(x, np.eye(3, dtype="float32")[None])
        >>> bool(np.array_equal(same.numpy(), x))
        True
    """
    volumes = tf.convert_to_tensor(volumes)
    labels = volumes.shape.rank == 4
    if labels:
        volumes = volumes[..., None]
    matrices = tf.cast(tf.convert_to_tensor(matrices), tf.float32)
    spatial = tf.shape(volumes)[1:4]
    size = tf.cast(spatial, tf.float32)
    grid = tf.stack(
        tf.meshgrid(*(tf.range(size[k]) for k in range(3)), indexing="ij"), axis=-1
    )  # (D, H, W, 3)
    centre = (size - 1.0) / 2.0
    coords = tf.einsum("bij,dhwj->bdhwi", matrices, grid - centre) + centre
    # reflect about the outer faces of the edge voxels (... c b a | a b c ... | ... c b a)
    period = 2.0 * size
    folded = tf.math.floormod(coords + 0.5, period)
    coords = tf.clip_by_value(
        tf.where(folded >= size, period - folded, folded) - 0.5, 0.0, size - 1
    )
    # gather from the flattened batch: voxel (b, d, h, w) is row ((b D + d) H + h) W + w
    last = spatial - 1
    channels = tf.shape(volumes)[-1]
    flat = tf.reshape(volumes, [-1, channels])
    base = tf.range(tf.shape(volumes)[0])[:, None, None, None] * tf.reduce_prod(spatial)

    def rows(index):  # (B, D, H, W, 3) voxel indices -> rows of ``flat``
        depth, height, width = (index[..., k] for k in range(3))
        return base + (depth * spatial[1] + height) * spatial[2] + width

    if nearest:
        index = tf.minimum(tf.cast(tf.round(coords), tf.int32), last)
        out = tf.gather(flat, rows(index))
    else:
        low = tf.floor(coords)
        frac = tf.cast(coords - low, volumes.dtype)
        low = tf.cast(low, tf.int32)
        start = rows(low)
        # the step to the next voxel along each axis: its stride, 0 on the last voxel
        strides = (spatial[1] * spatial[2], spatial[2], 1)
        steps = [tf.cast(low[..., k] < last[k], tf.int32) * strides[k] for k in range(3)]
        weights = [(1.0 - frac[..., k], frac[..., k]) for k in range(3)]
        out = 0.0
        for corner in range(8):
            pick = [(corner >> k) & 1 for k in range(3)]
            row = start
            weight = weights[0][pick[0]] * weights[1][pick[1]] * weights[2][pick[2]]
            for k in range(3):
                if pick[k]:
                    row = row + steps[k]
            out = out + weight[..., None] * tf.gather(flat, row)
    return out[..., 0] if labels else out


def _draw_augmentation(images, seed) -> dict[str, tf.Tensor]:
    """The random draws of :func:`augment_batch` for a batch like ``images``: a flip per
    image, a projective transform (rotation about the centre, zoom, shift), brightness and
    contrast, all from ``seed``."""
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    shape = tf.shape(images)
    batch = shape[0]
    height = tf.cast(shape[1], tf.float32)
    width = tf.cast(shape[2], tf.float32)
    keys = tf.random.experimental.stateless_split(seed, num=6)

    def uniform(key, low, high):
        return tf.random.stateless_uniform([batch], key, minval=low, maxval=high)

    flip = uniform(keys[0], 0.0, 1.0) < 0.5
    # one projective transform per image: output pixel -> input pixel (rotation about the
    # centre, zoom, shift), reflected at the borders like the Keras layers
    angle = uniform(keys[1], -_ROTATION, _ROTATION) * 2.0 * np.pi
    zoom = uniform(keys[2], 1.0 - _ZOOM, 1.0 + _ZOOM)
    shift = tf.random.stateless_uniform([batch, 2], keys[3], minval=-_SHIFT, maxval=_SHIFT)
    dx, dy = shift[:, 0] * width, shift[:, 1] * height
    cx, cy = (width - 1.0) / 2.0, (height - 1.0) / 2.0
    cos, sin = tf.cos(angle) * zoom, tf.sin(angle) * zoom
    a0, a1 = cos, -sin
    b0, b1 = sin, cos
    a2 = cx - a0 * cx - a1 * cy - dx
    b2 = cy - b0 * cx - b1 * cy - dy
    zeros = tf.zeros_like(a0)
    return {
        "flip": flip[:, None, None, None],
        "transforms": tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1),
        "output_shape": shape[1:3],
        "brightness": uniform(keys[4], -_BRIGHTNESS, _BRIGHTNESS)[:, None, None, None],
        "contrast": uniform(keys[5], 1.0 - _CONTRAST, 1.0 + _CONTRAST)[:, None, None, None],
    }


def _transform(images, draw, interpolation: str = "BILINEAR"):
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=draw["transforms"],
        output_shape=draw["output_shape"],
        fill_value=0.0,
        interpolation=interpolation,
        fill_mode="REFLECT",
    )


def _intensity(images, draw):
    mean = tf.reduce_mean(images, axis=[1, 2], keepdims=True)
    images = (images - mean) * draw["contrast"] + mean + draw["brightness"]
    return tf.clip_by_value(images, 0.0, 1.0)


def make_dataset(
    images: ImageSet,
    batch_size: int = 64,
    *,
    shuffle: bool = False,
    augment: bool = False,
    seed: int = 0,
) -> tf.data.Dataset:
    """Batches of ``(x, y)`` from an :class:`ImageSet` for ``model.fit``/``evaluate``.

    ``x`` is float32 ``(B, H, W, C)`` in ``[0, 1]``, ``y`` int32 class indices ``(B,)``
    (use a sparse categorical loss). The last batch may be smaller.

    Args:
        images: The data.
        batch_size: Samples per batch (positive).
        shuffle: Reshuffle the samples every epoch (deterministic for a given ``seed``).
        augment: Apply :func:`augmentation` to every batch (training only).
        seed: Seed of the shuffle and the augmentation.

    Returns:
        A prefetched ``tf.data.Dataset``.

    Example:
        >>> import numpy as np
        >>> data = ImageSet(np.zeros((5, 8, 8, 1), "float32"), np.arange(5), ("a",) * 5)
        >>> [tuple(x.shape) for x, _ in make_dataset(data, batch_size=2)]
        [(2, 8, 8, 1), (2, 8, 8, 1), (1, 8, 8, 1)]
    """
    batch_size = check_positive("batch_size", batch_size, integer=True)
    x = np.asarray(images.x, np.float32)
    y = np.asarray(images.y).astype(np.int32)
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        dataset = dataset.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(int(batch_size))
    if augment:
        augmenter = augmentation(seed)

        def _augment(batch_x, batch_y):
            # layer by layer: each preprocessing layer runs on TensorFlow inside tf.data
            # whatever the Keras backend, a Sequential around them does not
            for layer in augmenter.layers:
                batch_x = layer(batch_x, training=True)
            return tf.clip_by_value(batch_x, 0.0, 1.0), batch_y

        # One map call per batch: the layers are vectorized, per-sample maps are slower.
        dataset = dataset.map(_augment, num_parallel_calls=tf.data.AUTOTUNE)
    return fixed_prefetch(dataset)


#: Batches a senet dataset makes ahead of the training step.
PREFETCH = 2


def fixed_prefetch(dataset, options=None):
    """``dataset`` with ``options`` (or none), autotuning off, :data:`PREFETCH` batches ahead.

    tf.data's autotuning thread sleeps for a period that grows with the run (up to a
    minute), and the iterator's teardown at the end of ``fit`` waited for it: 16-32 s of
    the demo's 8-epoch runs in worker processes on a 2-core Zen 3. Without autotuning,
    ``num_parallel_calls=AUTOTUNE`` means one call per core.
    """
    options = tf.data.Options() if options is None else options
    options.autotune.enabled = False
    return dataset.with_options(options).prefetch(PREFETCH)


def class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """Balanced class weights ``n / (k * count_c)`` for ``model.fit(class_weight=...)``.

    ``n`` is the number of labels and ``k`` the number of classes that occur, so the
    mean weight over the samples is 1 (scikit-learn's "balanced"). Every class in
    ``range(num_classes)`` gets a key; a class that does not occur gets 0.0 (it has no
    samples to weight).

    Args:
        labels: Integer labels, each in ``[0, num_classes)``.
        num_classes: Number of classes.

    Returns:
        ``{class: weight}`` for every class index.

    Example:
        >>> class_weights([0, 0, 0, 1], 3)
        {0: 0.6666666666666666, 1: 2.0, 2: 0.0}
    """
    num_classes = check_positive("num_classes", num_classes, integer=True)
    labels = np.asarray(labels).reshape(-1)
    if labels.size == 0:
        raise ValueError("`labels` must be non-empty, got labels with 0 entries")
    if (
        not np.issubdtype(labels.dtype, np.integer)
        or labels.min() < 0
        or labels.max() >= num_classes
    ):
        raise ValueError(
            f"`labels` must be integers in [0, {num_classes}), got labels with "
            f"dtype {labels.dtype}, range [{labels.min()}, {labels.max()}]"
        )
    counts = np.bincount(labels, minlength=num_classes)
    present = int((counts > 0).sum())
    return {
        c: float(labels.size / (present * counts[c])) if counts[c] else 0.0
        for c in range(num_classes)
    }


# --------------------------------------------------------------------------- a run's batches


def epoch_batches(
    images,
    *,
    batch_size: int,
    seed: int,
    first_epoch: int,
    epochs: int,
    augment,
    sample_weights: np.ndarray | None,
    replicas: int = 1,
    whole_batches: bool = False,
):
    """Batches of epochs ``first_epoch .. epochs-1``, each epoch's order and augmentation a
    function of ``(seed, epoch)`` only, so a resumed run sees exactly the batches it would
    have seen had it not stopped. Fit it with ``steps_per_epoch=ceil(N / batch_size)``
    (``floor`` with ``whole_batches``: every epoch leaves out the last ``N % batch_size``
    images of its order, for a JAX cluster, which splits every batch over the processes).
    ``images`` is a split (``x``, ``y``); ``augment`` None or the task's
    ``augment(x, y, seed)`` (:meth:`senet.tasks.Task.augment`).
    """
    count = len(images)
    # the images an epoch uses: whole batches (a JAX cluster) or a multiple of the replicas
    used = count - count % batch_size if whole_batches else replica_multiple(count, replicas)
    x = tf.constant(images.x)
    # y: an array, or a structure of arrays (detection: boxes and labels)
    y = tf.nest.map_structure(tf.constant, images.y)
    weights = None if sample_weights is None else tf.constant(sample_weights, tf.float32)

    def epoch_batches(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(count), seed=tf.stack([tf.constant(seed, tf.int64), epoch])
        )
        # different images left out every epoch: the order is shuffled
        order = order[:used]
        batches = tf.data.Dataset.from_tensor_slices(order).batch(batch_size).enumerate()
        return batches.map(lambda step, index: (epoch, step, index))

    def gather(epoch, step, index):
        batch_x = tf.gather(x, index)
        batch_y = tf.nest.map_structure(lambda t: tf.gather(t, index), y)
        if augment is not None:
            batch_x, batch_y = augment(batch_x, batch_y, tf.stack([seed * 1_000_003 + epoch, step]))
        if weights is None:
            return batch_x, batch_y
        return batch_x, batch_y, tf.gather(weights, index)

    dataset = tf.data.Dataset.range(first_epoch, epochs).flat_map(epoch_batches)
    dataset = dataset.map(gather)
    if whole_batches:
        # the same batches, with the static batch size Keras' JAX sharding reads
        dataset = dataset.unbatch().batch(batch_size, drop_remainder=True)
    return _with_options(dataset)


def _with_options(dataset):
    """``dataset`` sharded by batch across workers (in-memory data: by batch, not by file),
    with :func:`senet.data.pipeline.fixed_prefetch` (no autotuning)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return fixed_prefetch(dataset, options)


def replica_multiple(count: int, replicas: int) -> int:
    """How many of ``count`` images a distributed step can use: a multiple of ``replicas``.

    An empty shard breaks a distributed step (a last batch smaller than the replica count
    gives some replica nothing), so distributed training and validation leave out up to
    ``replicas - 1`` images per pass; metrics on the test split use every image.
    """
    if replicas <= 1 or count < replicas:
        return count
    return count - count % replicas


def _even_batch_size(batch_size: int, count: int, replicas: int) -> int:
    """A batch size whose first batch splits evenly over ``replicas``.

    Keras' TF trainer reduces the first batch across replicas to build the model, which fails
    when a short split (fewer images than a batch) gives replicas batches of unequal size.
    """
    if replicas <= 1 or count < replicas:
        return batch_size
    return max(replicas, min(batch_size, count) // replicas * replicas)


def eval_batches(images, batch_size: int, replicas: int = 1, *, whole_batches: bool = False):
    """Validation batches; with ``whole_batches`` (a JAX cluster) every batch has the same
    size, a multiple of ``replicas``, and up to a batch of images is left out."""
    batch_size = _even_batch_size(batch_size, len(images), replicas)
    used = replica_multiple(len(images), replicas)
    if whole_batches:
        batch_size = min(batch_size, used)
        used -= used % batch_size
    dataset = tf.data.Dataset.from_tensor_slices((images.x, images.y))
    dataset = dataset.take(used).batch(batch_size, drop_remainder=whole_batches)
    return _with_options(dataset)
