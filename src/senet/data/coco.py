"""Detection data: images with boxes and classes, read from COCO files or made synthetic.

A :class:`DetectionSet` holds the images as every reader gives them (float32 in
``[0, 1]``, ``image_size`` square, ``channels`` channels) and, per image, its boxes and
classes padded to one length (the "dense" layout of Keras' box-aware preprocessing
layers and keras-hub's detectors: boxes ``(N, M, 4)`` as ``xyxy`` pixels of the stored
image, labels ``(N, M)``, ``-1`` where there is no box).

Sources:

- a COCO instances file (:func:`read_coco`): ``images``, ``annotations`` (``bbox`` as
  ``[x, y, width, height]`` in pixels) and ``categories``, the images in a folder. Each
  image is scaled so its longer side is ``image_size`` and padded at the right and bottom
  (the boxes scaled alike; ``scales`` maps them back to the file's pixels).
- a folder with ``annotations.json`` and ``images/`` (what :func:`write_coco` writes).
- the synthetic face scenes (:func:`senet.data.scenes.synthetic_scenes`).

Bad input is a :class:`~senet.errors.DataError` of one line naming the file and the
annotation id: a box outside its image (by more than a pixel), of zero or negative size,
or not four finite numbers; an unknown category or image id; an image missing from the
folder or that cannot be decoded. With ``skip_bad`` the bad annotations (and images) are
left out instead, with one warning that counts them. Crowd annotations (``iscrowd``) are
left out, as COCO's own training code does.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from senet.data.base import check_split_fractions, report_problems
from senet.data.images import (
    array_cap,
    check_inputs_fit,
    load_image,
    resize_image,
    to_model_input,
)
from senet.errors import DataError

__all__ = [
    "ANNOTATIONS_FILE",
    "DetectionSet",
    "letterbox",
    "load_detection",
    "pad_boxes",
    "read_coco",
    "write_coco",
]

#: The annotation file of a detection folder (:func:`write_coco`, :func:`read_coco`).
ANNOTATIONS_FILE = "annotations.json"

_BOX_SLACK = 1.0  # pixels a box may pass its image's border by (rounding in annotation tools)


@dataclass
class DetectionSet:
    """Images with their boxes and classes, as every detection reader returns them.

    Attributes:
        x: float32 images ``(N, S, S, C)`` in ``[0, 1]``.
        boxes: float32 ``(N, M, 4)``: ``x0, y0, x1, y1`` in pixels of ``x``; rows past an
            image's last box are 0.
        labels: int32 ``(N, M)``: class index of each box, ``-1`` for padding.
        class_names: Name of each class, indexed by label.
        names: A name per image (its file name), or None.
        image_ids: The COCO id of each image, or None.
        category_ids: The COCO id of each class (for writing results back), or None.
        scales: float32 ``(N,)``: pixels of ``x`` per pixel of the original image, or None
            (the images are as given).
    """

    x: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    names: tuple[str, ...] | None = None
    image_ids: tuple[int, ...] | None = None
    category_ids: tuple[int, ...] | None = None
    scales: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, np.float32)
        self.labels = np.asarray(self.labels, np.int32)
        if self.boxes.shape != (*self.labels.shape, 4) or self.labels.shape[0] != len(self.x):
            raise ValueError(
                f"boxes {self.boxes.shape} and labels {self.labels.shape} do not fit "
                f"{len(self.x)} images"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def y(self) -> dict[str, np.ndarray]:
        """The targets as the training loop and keras-hub's detectors take them:
        ``{"boxes": boxes, "labels": labels}``."""
        return {"boxes": self.boxes, "labels": self.labels}

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def image_boxes(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(boxes (K, 4), labels (K,))`` of image ``index``, without the padding."""
        keep = self.labels[index] >= 0
        return self.boxes[index][keep], self.labels[index][keep]

    def subset(self, index) -> DetectionSet:
        """The images at ``index`` (integer indices), padded to their own longest list."""
        index = np.asarray(index, np.int64)
        labels = self.labels[index]
        width = max(1, int((labels >= 0).sum(axis=1).max(initial=0)))
        return DetectionSet(
            self.x[index],
            self.boxes[index][:, :width],
            labels[:, :width],
            self.class_names,
            None if self.names is None else tuple(self.names[i] for i in index),
            None if self.image_ids is None else tuple(self.image_ids[i] for i in index),
            self.category_ids,
            None if self.scales is None else self.scales[index],
        )


def pad_boxes(
    boxes: Sequence[np.ndarray], labels: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Lists of per-image ``(K_i, 4)`` boxes and ``(K_i,)`` labels as the dense arrays of
    :class:`DetectionSet` (padded with zero boxes and label ``-1``)."""
    width = max([1, *(len(b) for b in boxes)])
    out_boxes = np.zeros((len(boxes), width, 4), np.float32)
    out_labels = np.full((len(boxes), width), -1, np.int32)
    for index, (box, label) in enumerate(zip(boxes, labels, strict=True)):
        out_boxes[index, : len(box)] = box
        out_labels[index, : len(label)] = label
    return out_boxes, out_labels


def read_coco(
    annotations: str | os.PathLike,
    images: str | os.PathLike | None = None,
    *,
    image_size: int = 320,
    channels: int = 3,
    skip_bad: bool = False,
) -> DetectionSet:
    """Read a COCO instances file and its images.

    Args:
        annotations: The JSON file, or a folder holding ``annotations.json`` (and, unless
            ``images`` says otherwise, ``images/``).
        images: The folder of the images (``file_name`` is relative to it); default
            ``images/`` beside the JSON file if there is one, else the JSON's folder.
        image_size: Side of the stored square images: the longer side of each image is
            scaled to it and the rest padded with 0.
        channels: 1 (gray) or 3 (RGB).
        skip_bad: Leave bad annotations and unreadable or missing images out (one warning
            counting them) instead of stopping at the first.

    Returns:
        A :class:`DetectionSet` in the file's image order, class indices in the order of
        the category ids.

    Raises:
        DataError: One line naming the file and the annotation (or image) at fault.
    """
    path = Path(annotations)
    if path.is_dir():
        path = path / ANNOTATIONS_FILE
    if not path.is_file():
        raise DataError(f"{path}: no such COCO annotation file")
    if images is None:
        beside = path.parent / "images"
        folder = beside if beside.is_dir() else path.parent
    else:
        folder = Path(images)
        if not folder.is_dir():
            raise DataError(f"{folder}: no such image folder")
    if path.stat().st_size > array_cap():
        raise DataError(
            f"{path}: {path.stat().st_size} bytes is over the cap of {array_cap()} "
            "(SENET_MAX_ARRAY_BYTES)"
        )
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: not a JSON file ({error})") from None
    entries, categories, by_image, problems = _parse(document, path)
    ordered = sorted(categories)
    index_of = {category: k for k, category in enumerate(ordered)}
    kept, missing = [], []
    for entry in entries:
        file = folder / entry["file_name"]
        if not file.is_file():
            missing.append(f"{path}: image {entry['id']}: {file} not found")
            continue
        kept.append(entry)
    report_problems(problems + missing, skip_bad, what=f"{path}: skipped {{count}} bad item(s)")
    check_inputs_fit(str(path), len(kept), image_size, image_size, channels)
    x = np.zeros((len(kept), image_size, image_size, channels), np.float32)
    all_boxes, all_labels, names, ids, scales = [], [], [], [], []
    unreadable = []
    for entry in kept:
        file = folder / entry["file_name"]
        try:
            image = load_image(file)
        except DataError as error:
            unreadable.append(str(error))
            continue
        row = len(names)
        x[row], scale = letterbox(image, image_size, channels, source=str(file))
        annotations_here = by_image.get(entry["id"], [])
        boxes = np.array([a["box"] for a in annotations_here], np.float32).reshape(-1, 4)
        all_boxes.append(boxes * np.float32(scale))
        all_labels.append(np.array([index_of[a["category"]] for a in annotations_here], np.int32))
        names.append(str(entry["file_name"]))
        ids.append(int(entry["id"]))
        scales.append(scale)
    report_problems(unreadable, skip_bad, what=f"{path}: skipped {{count}} unreadable image(s)")
    boxes, labels = pad_boxes(all_boxes, all_labels)
    return DetectionSet(
        x[: len(names)],
        boxes,
        labels,
        tuple(categories[c] for c in ordered),
        tuple(names),
        tuple(ids),
        tuple(ordered),
        np.asarray(scales, np.float32),
    )


def letterbox(
    image: np.ndarray, image_size: int, channels: int, *, source: str = "image"
) -> tuple[np.ndarray, float]:
    """A decoded (BGR) image as a detector sees it, and the scale from the file's pixels.

    The longer side is scaled to ``image_size`` and the rest padded with 0 at the right
    and bottom, so a box in the returned image's pixels divided by ``scale`` is a box in
    the file's. Resized by the one rule (:func:`senet.data.images.resize_image`), then
    brought to the model's colours and range as every reader does (``to_model_input``).

    Returns:
        ``(float32 (image_size, image_size, channels) in [0, 1], scale)``.

    Example:
        >>> x, scale = letterbox(np.full((10, 20, 3), 255, np.uint8), 8, 1)
        >>> x.shape, scale, float(x[3, 0, 0]), float(x[4, 0, 0])
        ((8, 8, 1), 0.4, 1.0, 0.0)
    """
    height, width = image.shape[:2]
    scale = image_size / max(height, width)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    out = np.zeros((image_size, image_size, channels), np.float32)
    out[:new_h, :new_w] = to_model_input(
        resize_image(image, (new_h, new_w)), None, channels, order="bgr", source=source
    )
    return out, scale


def _parse(document, path: Path):
    """The images, categories and per-image annotations of a COCO document, and the
    problems found (one line each, naming the annotation id)."""
    if not isinstance(document, dict) or not all(
        isinstance(document.get(key), list) for key in ("images", "annotations", "categories")
    ):
        raise DataError(f"{path}: a COCO file needs 'images', 'annotations' and 'categories' lists")
    categories: dict[int, str] = {}
    for number, category in enumerate(document["categories"]):
        if not isinstance(category, dict) or not _is_int(category.get("id")):
            raise DataError(f"{path}: category #{number} has no integer 'id'")
        categories[int(category["id"])] = str(category.get("name", category["id"]))
    if not categories:
        raise DataError(f"{path}: no categories")
    entries, sizes = [], {}
    for number, entry in enumerate(document["images"]):
        if not (
            isinstance(entry, dict)
            and _is_int(entry.get("id"))
            and isinstance(entry.get("file_name"), str)
            and _is_int(entry.get("width"))
            and _is_int(entry.get("height"))
        ):
            raise DataError(
                f"{path}: image #{number} needs an integer 'id', 'width', 'height' and a "
                "'file_name'"
            )
        if Path(entry["file_name"]).is_absolute() or ".." in Path(entry["file_name"]).parts:
            raise DataError(
                f"{path}: image {entry['id']}: file_name {entry['file_name']!r} "
                "leaves the image folder"
            )
        entries.append(entry)
        sizes[int(entry["id"])] = (int(entry["width"]), int(entry["height"]))
    by_image: dict[int, list[dict]] = {}
    problems = []
    for number, annotation in enumerate(document["annotations"]):
        if not isinstance(annotation, dict):
            problems.append(f"{path}: annotation #{number} is not an object")
            continue
        name = f"{path}: annotation {annotation.get('id', '#' + str(number))}"
        if annotation.get("iscrowd"):
            continue
        image_id, category = annotation.get("image_id"), annotation.get("category_id")
        if not _is_int(image_id) or int(image_id) not in sizes:
            problems.append(f"{name}: unknown image id {image_id!r}")
            continue
        if not _is_int(category) or int(category) not in categories:
            problems.append(f"{name}: unknown category id {category!r}")
            continue
        box = annotation.get("bbox")
        if not (
            isinstance(box, list)
            and len(box) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)
            and all(math.isfinite(v) for v in box)
        ):
            problems.append(f"{name}: bbox {box!r} is not four finite numbers [x, y, w, h]")
            continue
        x, y, w, h = (float(v) for v in box)
        if w <= 0 or h <= 0:
            problems.append(f"{name}: bbox {box} has zero or negative size")
            continue
        width, height = sizes[int(image_id)]
        if (
            x < -_BOX_SLACK
            or y < -_BOX_SLACK
            or x + w > width + _BOX_SLACK
            or (y + h > height + _BOX_SLACK)
        ):
            problems.append(f"{name}: bbox {box} lies outside its {width}x{height} image")
            continue
        x0, y0 = max(x, 0.0), max(y, 0.0)
        x1, y1 = min(x + w, float(width)), min(y + h, float(height))
        by_image.setdefault(int(image_id), []).append(
            {"box": (x0, y0, x1, y1), "category": int(category)}
        )
    return entries, categories, by_image, problems


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def write_coco(
    dataset: DetectionSet, folder: str | os.PathLike, *, overwrite: bool = False
) -> Path:
    """Write a :class:`DetectionSet` as a COCO folder: ``images/NAME.png`` and
    ``annotations.json`` (boxes in the stored images' pixels, ``[x, y, width, height]``;
    image and annotation ids from 1; the set's category ids, else 1 to K).

    Returns:
        The annotation file. Refuses to replace one that exists unless ``overwrite``.
    """
    from senet.data.images import to_bgr8, write_image

    folder = Path(folder)
    target = folder / ANNOTATIONS_FILE
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists; pass overwrite=True to replace it")
    (folder / "images").mkdir(parents=True, exist_ok=True)
    category_ids = dataset.category_ids or tuple(range(1, dataset.num_classes + 1))
    images, annotations = [], []
    for index in range(len(dataset)):
        name = dataset.names[index] if dataset.names else f"{index:06d}.png"
        image_id = dataset.image_ids[index] if dataset.image_ids else index + 1
        write_image(folder / "images" / name, to_bgr8(dataset.x[index]))
        side = dataset.x.shape[1:3]
        images.append({"id": image_id, "file_name": name, "width": side[1], "height": side[0]})
        for box, label in zip(*dataset.image_boxes(index), strict=True):
            x0, y0, x1, y1 = (round(float(v), 2) for v in box)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(category_ids[label]),
                    "bbox": [x0, y0, round(x1 - x0, 2), round(y1 - y0, 2)],
                    "area": round((x1 - x0) * (y1 - y0), 2),
                    "iscrowd": 0,
                }
            )
    categories = [
        {"id": int(c), "name": name}
        for c, name in zip(category_ids, dataset.class_names, strict=True)
    ]
    document = {"images": images, "annotations": annotations, "categories": categories}
    partial = target.with_name(target.name + ".partial")
    partial.write_text(json.dumps(document), encoding="utf-8")
    partial.replace(target)
    return target


def load_detection(
    source: str | os.PathLike,
    *,
    image_size: int = 128,
    channels: int = 1,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    skip_bad: bool = False,
    synthetic_size: int = 2000,
    synthetic_difficulty: str = "easy",
) -> dict[str, DetectionSet]:
    """Load a detection source and split it at random into ``{"train", "val", "test"}``.

    Args:
        source: ``"synthetic"`` (the face scenes, :func:`senet.data.scenes.synthetic_scenes`),
            a COCO instances file, or a folder with ``annotations.json`` and ``images/``.
        image_size: Side of the stored square images.
        channels: 1 or 3.
        val_fraction: Fraction of the images held out for validation.
        test_fraction: Fraction held out for test.
        seed: Seed of the split and of the synthetic scenes.
        skip_bad: Leave bad annotations and images out with one warning instead of raising.
        synthetic_size: Number of synthetic scenes.
        synthetic_difficulty: ``"easy"`` or ``"hard"``.

    Returns:
        The three splits, sharing class names.
    """
    from senet.data.masks import split_random

    check_split_fractions(val_fraction, test_fraction)
    if source == "synthetic":
        from senet.data.scenes import synthetic_scenes

        data = synthetic_scenes(
            synthetic_size,
            image_size=image_size,
            seed=seed,
            difficulty=synthetic_difficulty,
            channels=channels,
        )
    else:
        path = Path(source)
        if not path.exists():
            raise DataError(
                f"{path}: detection data not found (expected 'synthetic', a COCO .json file "
                "or a folder with annotations.json and images/)"
            )
        data = read_coco(path, image_size=image_size, channels=channels, skip_bad=skip_bad)
    return split_random(data, val_fraction, test_fraction, seed=seed)
