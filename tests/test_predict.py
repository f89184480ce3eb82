"""senet.predict and `senet predict`: Haar detection on a drawn face, crops, probabilities,
JSON output, annotated images and video frames.

No downloads: the photo is a synthetic face from senet.data.synthetic_expressions, upscaled
to 240x240 on a grey 640x480 canvas; OpenCV's frontal Haar cascade finds it (checked below,
so a change in the drawing or in OpenCV shows up here first).
"""

import json

import cv2
import keras
import numpy as np
import pytest

from photos import FACE_AT, face_photo
from senet import predict
from senet.cli import main
from senet.data import EMOTIONS
from senet.models import emotion_cnn


def _luma(bgr: np.ndarray) -> np.ndarray:
    # ITU-R BT.601 weights (OpenCV's BGR2GRAY), in [0, 1]
    blue, green, red = (bgr[..., k].astype(np.float64) for k in range(3))
    return (0.299 * red + 0.587 * green + 0.114 * blue) / 255.0


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny untrained SE emotion CNN saved once, the face photo and a face-free image."""
    root = tmp_path_factory.mktemp("predict")
    keras.utils.set_random_seed(0)
    model = emotion_cnn(widths=(4, 8), attention="se")
    model.save(root / "model.keras")
    cv2.imwrite(str(root / "photo.png"), face_photo())
    cv2.imwrite(str(root / "blank.png"), np.full((480, 640, 3), 128, np.uint8))
    return {"root": root, "model": model, "path": root / "model.keras"}


def test_haar_finds_the_drawn_face_where_it_was_drawn():
    boxes = predict.detect_faces(face_photo())
    assert len(boxes) == 1
    x, y, w, h = boxes[0]
    fx, fy, side = FACE_AT
    # the cascade's box sits inside the drawn square (a few pixels of slack) and covers most
    assert fx - 4 <= x and fy - 4 <= y
    assert x + w <= fx + side + 4 and y + h <= fy + side + 4
    assert w * h >= 0.4 * side * side


def test_haar_finds_no_face_in_flat_or_noise_images():
    rng = np.random.default_rng(0)
    assert predict.detect_faces(np.full((480, 640, 3), 128, np.uint8)) == []
    assert predict.detect_faces(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)) == []


def test_crop_probabilities_match_reference_and_model_predict(files):
    model, photo = files["model"], face_photo()
    faces = predict.predict_faces(model, photo, EMOTIONS)
    (box,) = predict.detect_faces(photo)
    assert len(faces) == 1 and faces[0].box == box
    x, y, w, h = box
    # reference crop: luma grey in [0, 1], area-averaged down to the model's 48x48
    reference = cv2.resize(
        _luma(photo[y : y + h, x : x + w]).astype(np.float32),
        (48, 48),
        interpolation=cv2.INTER_AREA,
    )
    crops = predict.crop_inputs(photo, [box], 48, 1)
    assert crops.shape == (1, 48, 48, 1)
    # OpenCV rounds grey to uint8 before resizing: half a grey level at most after averaging
    np.testing.assert_allclose(crops[0, ..., 0], reference, atol=1 / 255)
    probabilities = np.array([faces[0].probabilities[name] for name in EMOTIONS])
    assert list(faces[0].probabilities) == list(EMOTIONS)
    np.testing.assert_allclose(probabilities.sum(), 1.0, atol=1e-5)
    expected = model.predict(crops, verbose=0)[0]
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    assert faces[0].label == EMOTIONS[int(np.argmax(expected))]


def test_predict_faces_uses_the_detector_boxes(files, monkeypatch):
    """detect -> crop -> predict with a stand-in detector: every box is cropped and classified."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    boxes = [(10, 20, 60, 60), (90, 30, 40, 40)]  # one shrunk, one enlarged
    monkeypatch.setattr(predict, "detect_faces", lambda image, **options: list(boxes))
    faces = predict.predict_faces(files["model"], image, EMOTIONS)
    assert [face.box for face in faces] == boxes
    crops = np.stack(
        [
            cv2.resize(
                _luma(image[y : y + h, x : x + w]).astype(np.float32),
                (48, 48),
                interpolation=cv2.INTER_AREA if w > 48 else cv2.INTER_LINEAR,
            )
            for x, y, w, h in boxes
        ]
    )[..., None]
    expected = files["model"].predict(crops, verbose=0)
    got = np.array([[face.probabilities[name] for name in EMOTIONS] for face in faces])
    np.testing.assert_allclose(got, expected, atol=2e-3)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)


def test_cli_json_lines_schema(files, capsys):
    root = files["root"]
    status = main(["predict", str(files["path"]), str(root / "photo.png"), str(root / "blank.png")])
    assert status == 0
    capsys.readouterr()
    status = main(
        ["predict", str(files["path"]), str(root / "photo.png"), str(root / "blank.png"), "--json"]
    )
    assert status == 0
    lines = capsys.readouterr().out.strip().splitlines()
    records = [json.loads(line) for line in lines]
    assert [set(record) for record in records] == [{"path", "frame", "faces"}] * 2
    assert [record["path"] for record in records] == [
        str(root / "photo.png"),
        str(root / "blank.png"),
    ]
    assert [record["frame"] for record in records] == [None, None]
    (face,) = records[0]["faces"]
    assert set(face) == {"box", "label", "probabilities"}
    assert face["box"] == list(predict.detect_faces(face_photo())[0])
    assert list(face["probabilities"]) == list(EMOTIONS)
    assert face["label"] == max(face["probabilities"], key=face["probabilities"].get)
    assert sum(face["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert records[1]["faces"] == []


def test_cli_annotate_writes_a_readable_image_of_the_same_size(files, tmp_path, capsys):
    root = files["root"]
    status = main(
        ["predict", str(files["path"]), str(root / "photo.png"), "--annotate", str(tmp_path)]
    )
    assert status == 0
    assert "1 face" in capsys.readouterr().out
    annotated = cv2.imread(str(tmp_path / "photo_annotated.png"))
    assert annotated is not None and annotated.shape == (480, 640, 3)
    # the box is drawn in green on the face's left edge; the rest of the photo is untouched
    x, y, w, h = predict.detect_faces(face_photo())[0]
    assert tuple(annotated[y + h // 2, x]) == (0, 220, 0)
    np.testing.assert_array_equal(annotated[:, : x - 5], face_photo()[:, : x - 5])


def test_video_every_n_frames(files, tmp_path, capsys):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 480))
    for _ in range(7):
        writer.write(face_photo())
    writer.release()
    results = predict.predict_paths(files["path"], [video], every=3)
    assert [result.frame for result in results] == [0, 3, 6]
    # MJPG is lossy: the face is still found in every frame looked at
    assert [len(result.faces) for result in results] == [1, 1, 1]

    annotated = tmp_path / "annotated"
    status = main(
        ["predict", str(files["path"]), str(video), "--every", "2", "--json"]
        + ["--annotate", str(annotated)]
    )
    assert status == 0
    records = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [record["frame"] for record in records] == [0, 2, 4, 6]
    capture = cv2.VideoCapture(str(annotated / "clip_annotated.avi"))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    assert len(frames) == 4 and frames[0].shape == (480, 640, 3)


def test_truncated_video_warns_with_the_frames_read(files, tmp_path, capsys):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 480))
    for _ in range(20):
        writer.write(face_photo())
    writer.release()
    capture = cv2.VideoCapture(str(video))
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 20
    capture.release()
    # cut the file in half: the header still says 20 frames, half of them are gone
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])

    with pytest.warns(UserWarning, match=r"clip.avi: read \d+ of the 20 frames") as caught:
        results = predict.predict_paths(files["path"], [video])
    assert 0 < len(results) < 20
    assert f"read {len(results)} of the 20 frames" in str(caught[0].message)

    status = main(["predict", str(files["path"]), str(video), "--json"])
    captured = capsys.readouterr()
    assert status == 0
    assert len(captured.out.strip().splitlines()) == len(results)
    (line,) = captured.err.strip().splitlines()
    assert line == (
        f"senet predict: warning: {video}: read {len(results)} of the 20 frames the file says "
        "it has; the rest could not be decoded (a truncated or damaged file?)"
    )


def test_whole_video_gives_no_warning(files, tmp_path, recwarn):
    video = tmp_path / "whole.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 480))
    for _ in range(5):
        writer.write(face_photo())
    writer.release()
    assert len(predict.predict_paths(files["path"], [video], every=2)) == 3
    assert not [w for w in recwarn if "frames" in str(w.message)]


def test_annotate_names_are_unique_across_folders(files, tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    cv2.imwrite(str(tmp_path / "a" / "x.png"), face_photo())
    cv2.imwrite(str(tmp_path / "b" / "x.png"), np.full((480, 640, 3), 128, np.uint8))
    out = tmp_path / "out"
    argv = ["predict", str(files["path"]), str(tmp_path / "a" / "x.png")]
    status = main([*argv, str(tmp_path / "b" / "x.png"), "--annotate", str(out)])
    assert status == 0, capsys.readouterr().err
    assert sorted(path.name for path in out.iterdir()) == ["x_2_annotated.png", "x_annotated.png"]
    # the first is the face photo with its box drawn, the second the blank image untouched
    first = cv2.imread(str(out / "x_annotated.png"))
    x, y, w, h = predict.detect_faces(face_photo())[0]
    assert tuple(first[y + h // 2, x]) == (0, 220, 0)
    second = cv2.imread(str(out / "x_2_annotated.png"))
    np.testing.assert_array_equal(second, np.full((480, 640, 3), 128, np.uint8))
    assert predict.annotated_names(["a/x.jpg", "b/X.jpg", "c.mp4", "d/c.mov", "x_2.jpg"]) == [
        "x_annotated.jpg",
        "X_2_annotated.jpg",
        "c_annotated.avi",
        "c_2_annotated.avi",
        "x_2_2_annotated.jpg",
    ]


def test_annotate_refuses_to_overwrite_without_the_flag(files, tmp_path, capsys):
    root, out = files["root"], tmp_path / "out"
    out.mkdir()
    existing = out / "photo_annotated.png"
    existing.write_bytes(b"mine")
    argv = ["predict", str(files["path"]), str(root / "photo.png"), "--annotate", str(out)]
    status = main(argv)
    captured = capsys.readouterr()
    assert status == 2 and captured.out == ""
    (line,) = captured.err.strip().splitlines()
    assert line.startswith("senet predict: error: ") and str(existing) in line
    assert "--overwrite" in line and "Traceback" not in captured.err
    assert existing.read_bytes() == b"mine"
    with pytest.raises(FileExistsError, match="photo_annotated.png already exists"):
        predict.predict_paths(files["path"], [root / "photo.png"], annotate_dir=out)

    assert main([*argv, "--overwrite"]) == 0
    assert "1 face" in capsys.readouterr().out
    assert cv2.imread(str(existing)).shape == (480, 640, 3)


@pytest.mark.slow  # builds and fuses an SE-ResNet-50
def test_predict_runs_the_fused_inference_path_by_default(tmp_path, monkeypatch):
    from senet.models import fused, resnet

    keras.utils.set_random_seed(0)
    model = resnet(18, input_shape=(48, 48, 1), num_classes=7, attention="se")
    for layer in model.layers:  # random BN statistics: folding them must not change a thing
        if isinstance(layer, keras.layers.BatchNormalization):
            rng = np.random.default_rng(len(layer.name))
            channels = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.5, channels).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, channels).astype("float32"))
    model.save(tmp_path / "se_resnet.keras")
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), face_photo())
    calls = []
    original = fused.fuse_for_inference

    def spy(keras_model):
        result = original(keras_model)
        calls.append(result[1])
        return result

    monkeypatch.setattr(fused, "fuse_for_inference", spy)
    (default,) = predict.predict_paths(tmp_path / "se_resnet.keras", [photo])
    assert calls == [True]  # the SE tails were fused
    (as_trained,) = predict.predict_paths(tmp_path / "se_resnet.keras", [photo], fuse=False)
    assert calls == [True]
    assert len(default.faces) == len(as_trained.faces) >= 1
    for a, b in zip(default.faces, as_trained.faces, strict=True):
        assert a.label == b.label
        assert list(a.probabilities) == list(b.probabilities)
        np.testing.assert_allclose(
            list(a.probabilities.values()), list(b.probabilities.values()), atol=1e-4
        )


def test_predict_and_explain_load_a_model_outside_a_run_once(files, tmp_path, monkeypatch):
    # a model outside a run is loaded to read its task; the command then uses that model
    import senet.layers

    loads = []
    real = senet.layers.load_model

    def counting(*args, **kwargs):
        loads.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(senet.layers, "load_model", counting)
    photo = str(files["root"] / "photo.png")
    assert main(["predict", str(files["path"]), photo, "--json"]) == 0
    assert len(loads) == 1
    assert main(["explain", str(files["path"]), photo, "--out", str(tmp_path / "x")]) == 0
    assert len(loads) == 2


def test_threads_find_faces_at_once_each_with_its_own_detector():
    # a CascadeClassifier shared by threads is not safe; senet serve finds faces in several
    import threading

    from senet.faces import _cascade, detect_faces

    photo = face_photo()
    expected = detect_faces(photo)
    assert len(expected) == 1
    seen, found = [], []

    def look():
        seen.append(_cascade())
        for _ in range(5):
            found.append(detect_faces(photo))

    threads = [threading.Thread(target=look) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(cascade) for cascade in seen}) == 4 and _cascade() not in seen
    assert _cascade() is _cascade()  # one per thread, loaded once
    assert found == [expected] * 20
