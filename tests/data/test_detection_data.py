"""Detection data: the synthetic face scenes and COCO files (senet.data.scenes, .coco)."""

import json

import cv2
import numpy as np
import pytest

from senet.data.base import EMOTIONS
from senet.data.coco import DetectionSet, read_coco, write_coco
from senet.data.scenes import SCENE_PRESETS, synthetic_scenes
from senet.errors import DataError


def _iou(a, b):
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    area = lambda box: (box[2] - box[0]) * (box[3] - box[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


@pytest.mark.parametrize("difficulty", ["easy", "hard"])
def test_scenes_hold_faces_in_their_boxes(difficulty):
    scenes = synthetic_scenes(40, image_size=96, seed=3, difficulty=difficulty)
    again = synthetic_scenes(40, image_size=96, seed=3, difficulty=difficulty)
    np.testing.assert_array_equal(scenes.x, again.x)
    np.testing.assert_array_equal(scenes.boxes, again.boxes)
    assert scenes.x.shape == (40, 96, 96, 1) and scenes.x.dtype == np.float32
    assert scenes.x.min() >= 0.0 and scenes.x.max() <= 1.0
    assert scenes.class_names == tuple(EMOTIONS)
    low, high = SCENE_PRESETS[difficulty].faces
    counts = (scenes.labels >= 0).sum(axis=1)
    assert counts.max() <= high and (counts >= low).mean() > 0.9
    assert counts.sum() >= 40 * (low + high) / 2 * 0.7  # most faces found a place
    seen = set()
    for index in range(len(scenes)):
        boxes, labels = scenes.image_boxes(index)
        seen.update(labels.tolist())
        assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2:] <= 96)
        sides = boxes[:, 2:] - boxes[:, :2]
        lo, hi = SCENE_PRESETS[difficulty].size
        assert np.all(sides[:, 1] >= lo * 96 - 1) and np.all(sides[:, 1] <= hi * 96 + 1)
        if difficulty == "easy":  # faces never overlap: their boxes at most touch corners
            for i in range(len(boxes)):
                for j in range(i):
                    assert _iou(boxes[i], boxes[j]) < 0.2
        # a face is drawn in its box: the box's middle differs from the canvas around it
        for box in boxes.astype(int):
            inside = scenes.x[index, box[1] : box[3], box[0] : box[2], 0]
            assert inside.std() > 0.03
    assert seen == set(range(7))
    with pytest.raises(ValueError, match="image_size"):
        synthetic_scenes(2, image_size=32)


def _coco_folder(tmp_path, annotations, images=((1, "a.png", 200, 100),)):
    (tmp_path / "images").mkdir(exist_ok=True)
    for _, name, width, height in images:
        picture = np.zeros((height, width, 3), np.uint8)
        picture[20:60, 40:120] = (0, 0, 255)  # a red box in OpenCV's order
        cv2.imwrite(str(tmp_path / "images" / name), picture)
    document = {
        "images": [
            {"id": i, "file_name": name, "width": width, "height": height}
            for i, name, width, height in images
        ],
        "annotations": annotations,
        "categories": [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}],
    }
    (tmp_path / "annotations.json").write_text(json.dumps(document))
    return tmp_path / "annotations.json"


def _annotation(number, bbox, category=3, image=1, **extra):
    return {"id": number, "image_id": image, "category_id": category, "bbox": bbox, **extra}


def test_coco_images_are_scaled_to_their_longer_side_and_padded(tmp_path):
    path = _coco_folder(
        tmp_path,
        [_annotation(11, [40, 20, 80, 40]), _annotation(12, [0, 0, 10, 10], category=7)],
    )
    data = read_coco(path, image_size=100, channels=3)
    assert data.x.shape == (1, 100, 100, 3) and data.class_names == ("cat", "dog")
    assert data.category_ids == (3, 7) and data.image_ids == (1,) and data.names == ("a.png",)
    np.testing.assert_allclose(data.scales, [0.5])
    boxes, labels = data.image_boxes(0)
    # [x, y, w, h] in the 200x100 file -> x0 y0 x1 y1 at half size
    np.testing.assert_allclose(boxes, [[20, 10, 60, 30], [0, 0, 5, 5]])
    assert labels.tolist() == [0, 1]
    # the red rectangle sits where its box says, in RGB order; below row 50 is padding
    np.testing.assert_allclose(data.x[0, 12:28, 22:58], np.broadcast_to([1, 0, 0], (16, 36, 3)))
    assert data.x[0, 50:].max() == 0.0
    # the folder itself is a source too
    assert read_coco(tmp_path, image_size=100).x.shape == (1, 100, 100, 3)


def test_written_scenes_read_back(tmp_path):
    scenes = synthetic_scenes(6, image_size=96, seed=1, difficulty="hard")
    write_coco(scenes, tmp_path / "scenes")
    back = read_coco(tmp_path / "scenes", image_size=96, channels=1)
    assert back.names == scenes.names and back.class_names == scenes.class_names
    np.testing.assert_allclose(back.x, scenes.x, atol=1 / 255 + 1e-6)
    for index in range(6):
        expected, labels = scenes.image_boxes(index)
        got, got_labels = back.image_boxes(index)
        np.testing.assert_allclose(got, expected, atol=0.01)
        np.testing.assert_array_equal(got_labels, labels)
    with pytest.raises(FileExistsError, match="annotations.json"):
        write_coco(scenes, tmp_path / "scenes")


@pytest.mark.parametrize(
    ("annotation", "message"),
    [
        (_annotation(5, [150, 50, 80, 20]), "annotation 5: bbox .* outside its 200x100 image"),
        (_annotation(6, [10, 10, 0, 5]), "annotation 6: bbox .* zero or negative size"),
        (_annotation(7, [10, 10, -4, 5]), "annotation 7: bbox .* zero or negative size"),
        (_annotation(8, [10, 10, 5, 5], category=99), "annotation 8: unknown category id 99"),
        (_annotation(9, [10, 10, 5, 5], image=42), "annotation 9: unknown image id 42"),
        (_annotation(10, [10, "x", 5, 5]), "annotation 10: bbox .* not four finite numbers"),
    ],
)
def test_bad_annotations_are_one_line_errors_or_skipped(tmp_path, annotation, message):
    good = _annotation(1, [40, 20, 80, 40])
    path = _coco_folder(tmp_path, [good, annotation])
    with pytest.raises(DataError, match=f"annotations.json: {message}") as error:
        read_coco(path, image_size=64)
    assert "\n" not in str(error.value)
    with pytest.warns(UserWarning, match="skipped 1 bad item"):
        data = read_coco(path, image_size=64, skip_bad=True)
    assert len(data.image_boxes(0)[0]) == 1  # the good box stays


def test_missing_images_crowds_and_escaping_names(tmp_path):
    images = ((1, "a.png", 200, 100), (2, "b.png", 50, 50))
    path = _coco_folder(
        tmp_path,
        [_annotation(1, [1, 1, 5, 5]), _annotation(2, [1, 1, 5, 5], image=2, iscrowd=1)],
        images,
    )
    data = read_coco(path, image_size=32)
    assert len(data) == 2 and len(data.image_boxes(1)[0]) == 0  # the crowd box is left out
    (tmp_path / "images" / "b.png").unlink()
    with pytest.raises(DataError, match=r"image 2: .*b\.png not found"):
        read_coco(path, image_size=32)
    with pytest.warns(UserWarning, match="skipped 1 bad item"):
        assert read_coco(path, image_size=32, skip_bad=True).names == ("a.png",)
    document = json.loads(path.read_text())
    document["images"][0]["file_name"] = "../a.png"
    path.write_text(json.dumps(document))
    with pytest.raises(DataError, match="leaves the image folder"):
        read_coco(path, image_size=32)
    with pytest.raises(DataError, match="no such COCO annotation file"):
        read_coco(tmp_path / "nothing.json")


def test_subsets_keep_their_boxes():
    boxes = np.zeros((3, 2, 4), np.float32)
    boxes[0, 0] = [1, 2, 3, 4]
    labels = np.array([[0, -1], [-1, -1], [1, -1]], np.int32)
    data = DetectionSet(np.zeros((3, 8, 8, 1), np.float32), boxes, labels, ("a", "b"))
    part = data.subset([2, 0])
    assert part.labels.tolist() == [[1], [0]]
    np.testing.assert_array_equal(part.boxes[1, 0], [1, 2, 3, 4])
    with pytest.raises(ValueError, match="do not fit"):
        DetectionSet(np.zeros((2, 8, 8, 1)), boxes, labels, ("a", "b"))


def test_box_augmentation_moves_boxes_with_the_pixels():
    import keras

    from senet.data.pipeline import augment_with_boxes, box_augmentation

    rng = np.random.default_rng(4)
    images = np.zeros((6, 64, 64, 1), np.float32)
    boxes = np.zeros((6, 2, 4), np.float32)
    labels = np.full((6, 2), -1, np.int32)
    for index in range(6):  # one white rectangle an image, its box exact
        x0, y0 = rng.integers(8, 30, 2)
        w, h = rng.integers(10, 24, 2)
        images[index, y0 : y0 + h, x0 : x0 + w] = 1.0
        boxes[index, 0] = [x0, y0, x0 + w, y0 + h]
        labels[index, 0] = index % 3
    targets = {"boxes": boxes, "labels": labels}
    layers, generator = box_augmentation(), keras.random.SeedGenerator(0)
    x, y = augment_with_boxes(images, targets, (3, 1), layers, generator)
    again_x, again_y = augment_with_boxes(images, targets, (3, 1), layers, generator)
    np.testing.assert_array_equal(x.numpy(), again_x.numpy())  # a function of the seed
    other, _ = augment_with_boxes(images, targets, (4, 1), layers, generator)
    assert not np.allclose(other.numpy(), x.numpy())
    x, moved, kept = x.numpy()[..., 0], y["boxes"].numpy(), y["labels"].numpy()
    assert kept[:, 1].tolist() == [-1] * 6  # padding stays padding
    checked = 0
    for index in range(6):
        if kept[index, 0] < 0:
            continue
        assert kept[index, 0] == index % 3
        # the bright pixels (brightness and contrast keep them brightest) fill the box
        bright = x[index] > (x[index].max() + x[index].min()) / 2
        rows, cols = np.flatnonzero(bright.any(axis=1)), np.flatnonzero(bright.any(axis=0))
        found = [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]
        np.testing.assert_allclose(found, moved[index, 0], atol=2.0)
        checked += 1
    assert checked >= 4
