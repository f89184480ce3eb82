"""Outputs on a full disk and special files (issue 20, items 6 and 8).

Outputs that are not regular files (a terminal, a pipe, /dev/stdout, a link to one) are
written through, never replaced by a regular file; ``--json -`` is stdout.

A full disk is made without privileges: ``RLIMIT_FSIZE`` caps the bytes this process may
write to any one file, and with ``SIGXFSZ`` ignored a write past it fails with EFBIG, the
way a full disk fails a write (ENOSPC)."""

import contextlib
import json
import os
import resource
import signal
import stat
import threading

import cv2
import keras
import numpy as np
import pytest

from photos import face_photo
from senet import predict
from senet._files import atomic_write_text
from senet.cli import main
from senet.models import emotion_cnn


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("outputs") / "model.keras"
    keras.utils.set_random_seed(0)
    emotion_cnn(widths=(4, 8), attention="se").save(path)
    return path


@contextlib.contextmanager
def disk_full_after(limit: int):
    """Writes past ``limit`` bytes of any one file fail in this process, as on a full disk."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


def _video(path, frames=12):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 480))
    for _ in range(frames):
        writer.write(face_photo())
    writer.release()
    return path


def test_an_annotated_video_on_a_full_disk_fails_and_leaves_nothing(model, tmp_path, capsys):
    # before: exit 0 with OpenCV's "Failed to write frame" warnings and a truncated video
    # (4 of 20 frames readable) at the final name
    video = _video(tmp_path / "clip.avi")
    out = tmp_path / "annotated"
    out.mkdir()
    with disk_full_after(video.stat().st_size // 3):
        status = main(["predict", str(model), str(video), "--annotate", str(out)])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert status == 2
    assert err.startswith(f"senet predict: error: cannot write {out / 'clip_annotated.avi'}: ")
    assert "of its 12 frames could be read back (disk full?)" in err
    assert list(out.iterdir()) == []  # neither the video nor a temporary file


def test_an_annotated_video_is_whole_when_the_disk_is_not_full(model, tmp_path):
    video = _video(tmp_path / "clip.avi", frames=5)
    out = tmp_path / "annotated"
    results = predict.predict_paths(model, [video], annotate_dir=out)
    assert len(results) == 5
    assert [p.name for p in out.iterdir()] == ["clip_annotated.avi"]
    capture = cv2.VideoCapture(str(out / "clip_annotated.avi"))
    frames = 0
    while capture.read()[0]:
        frames += 1
    capture.release()
    assert frames == 5


def test_an_annotated_image_on_a_full_disk_fails_and_leaves_nothing(model, tmp_path):
    photo = tmp_path / "face.png"
    cv2.imwrite(str(photo), face_photo())
    out = tmp_path / "annotated"
    out.mkdir()
    with disk_full_after(1000), pytest.raises(OSError, match="cannot write .*face_annotated"):
        predict.predict_paths(model, [photo], annotate_dir=out)
    assert list(out.iterdir()) == []


def test_video_frames_over_the_pixel_cap_are_refused_before_decoding(
    model, tmp_path, capsys, monkeypatch
):
    # before: a 2.7 MB video of 12000x12000 frames took 2.2 GB; the declared frame size is
    # now checked against SENET_MAX_IMAGE_PIXELS before a frame is decoded
    video = _video(tmp_path / "clip.avi", frames=2)
    monkeypatch.setenv("SENET_MAX_IMAGE_PIXELS", str(640 * 480 - 1))
    assert main(["predict", str(model), str(video)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"senet predict: error: {video}: video frames of 640x480 pixels are over the cap of "
        f"{640 * 480 - 1} pixels; set SENET_MAX_IMAGE_PIXELS to a larger number to read it"
    )


def test_an_image_file_over_the_byte_cap_is_refused_before_it_is_read(
    model, tmp_path, capsys, monkeypatch
):
    # before: a 3 GiB file starting with a valid 32x32 PNG was read whole (3.89 GB), then a
    # cv2.error traceback; here a sparse 3 GiB file behind the same PNG
    photo = tmp_path / "face.png"
    cv2.imwrite(str(photo), np.zeros((32, 32), np.uint8))
    with open(photo, "r+b") as file:
        file.truncate(3 * 2**30)
    assert main(["predict", str(model), str(photo)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"senet predict: error: {photo}: image file of {3 * 2**30} bytes is over the cap of "
        f"{512 * 2**20} bytes; set SENET_MAX_IMAGE_BYTES to a larger number to read it"
    )
    # the same loader serves training folders
    monkeypatch.setenv("SENET_MAX_IMAGE_BYTES", str(3 * 2**30 - 1))
    from senet.data.images import read_image

    with pytest.raises(ValueError, match="over the cap of 3221225471 bytes"):
        read_image(photo)


# ----------------------------------------------------------- special files as outputs


def test_a_link_to_a_device_is_written_through_not_replaced(tmp_path):
    # before: `--json LINK --overwrite`, LINK -> /proc/self/fd/1, replaced the link with a
    # regular file (as root, `--json /dev/stdout` would have replaced /dev/stdout)
    link = tmp_path / "out.json"
    link.symlink_to("/dev/null")
    atomic_write_text(link, '{"a": 1}\n')
    assert link.is_symlink() and os.readlink(link) == "/dev/null"
    assert list(tmp_path.iterdir()) == [link]  # no temporary file left


def test_a_fifo_is_written_through(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()), daemon=True)
    reader.start()
    atomic_write_text(fifo, "through the pipe")
    reader.join(10)
    assert received == ["through the pipe"] and stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_link_to_a_file_keeps_the_link_and_replaces_the_file(tmp_path):
    target, link = tmp_path / "real.json", tmp_path / "link.json"
    target.write_text("old")
    link.symlink_to(target)
    atomic_write_text(link, "new")
    assert link.is_symlink() and target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "real.json"]


def test_a_directory_is_not_a_file_to_write(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a directory, not a file to write"):
        atomic_write_text(tmp_path, "x")


@pytest.fixture
def quick_bench(monkeypatch):
    from senet import bench

    result = {"model": "emotion_cnn", "rows": [{"batch": 1, "ms": 1.5}]}
    monkeypatch.setattr(bench, "run_bench", lambda *args, **kwargs: result)
    monkeypatch.setattr(bench, "format_bench", lambda result: "TABLE")
    return result


def test_bench_json_dash_prints_only_the_json(quick_bench, capsys):
    assert main(["bench", "--json", "-", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out) == quick_bench


def test_bench_json_to_a_link_to_a_device_needs_no_overwrite_and_keeps_the_link(
    quick_bench, tmp_path, capsys
):
    link = tmp_path / "out.json"
    link.symlink_to("/dev/null")
    assert main(["bench", "--json", str(link), "--quiet"]) == 0
    assert link.is_symlink() and os.readlink(link) == "/dev/null"
    regular = tmp_path / "bench.json"
    regular.write_text("{}")
    assert main(["bench", "--json", str(regular), "--quiet"]) == 2  # a file: --overwrite
    assert "exists; give --overwrite" in capsys.readouterr().err


@pytest.mark.slow  # trains, then resumes
def test_training_onto_a_full_disk_names_the_file_and_the_resume(tmp_path, capsys):
    # before: "senet train: error: [Errno 28] No space left on device", no path, no way on
    run = tmp_path / "run"
    argv = ["train", "--data", "synthetic", "--synthetic-size", "210", "--image-size", "24"]
    argv += ["--epochs", "1", "--batch-size", "32", "--quiet", "--out", str(run)]
    with disk_full_after(50_000):  # config.json fits; the first checkpoint does not
        assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    checkpoint = run / "checkpoints" / "epoch-0001.keras"
    assert err == (
        f"senet train: error: cannot write {checkpoint}: File too large; the run stopped, "
        f"and what it finished is kept: free some space, then `senet train --resume {run}` "
        "continues"
    )
    assert not list(run.rglob(".tmp-*"))
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert checkpoint.is_file() and (run / "model.keras").is_file()
