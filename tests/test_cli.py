"""The `senet` command: fast --help, choices that agree with the library, one-line errors
with exit status 2, `senet explain` (overlays, index.html, --class, --method attention) and
`senet demo` (with senet.demo.run_demo stood in: the test is about the command, not the run).
"""

import importlib.util
import json
import subprocess
import sys
import types

import cv2
import keras
import numpy as np
import pytest

from senet import cli
from senet.cli import main
from senet.data import EMOTIONS, synthetic_expressions
from senet.models import emotion_cnn


def _two_face_photo() -> np.ndarray:
    """640x480 BGR with two drawn synthetic faces (2 and 12 of seed 0) that Haar finds."""
    images, _, _ = synthetic_expressions(14, image_size=48, seed=0)
    canvas = np.full((480, 640), 128, np.uint8)
    for index, x in ((2, 60), (12, 380)):
        face = np.rint(images[index, ..., 0] * 255).astype(np.uint8)
        canvas[140:340, x : x + 200] = cv2.resize(face, (200, 200))
    return cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny untrained SE emotion CNN saved once; a two-face photo, a blank and a non-image."""
    root = tmp_path_factory.mktemp("cli")
    keras.utils.set_random_seed(0)
    model = emotion_cnn(widths=(4, 8), attention="se")
    model.save(root / "model.keras")
    cv2.imwrite(str(root / "faces.png"), _two_face_photo())
    cv2.imwrite(str(root / "blank.png"), np.full((480, 640, 3), 128, np.uint8))
    (root / "broken.png").write_bytes(b"this is not a PNG")
    (root / "clip.avi").write_bytes(b"only its name matters")
    emotion_cnn(widths=(4, 8), attention=None).save(root / "plain.keras")
    return {"root": root, "model": model, "path": str(root / "model.keras")}


def test_help_and_version_do_not_import_tensorflow():
    script = (
        "import json, sys\n"
        "from senet.cli import main\n"
        "codes = []\n"
        "for argv in (['--help'], ['--version'], ['explain', '--help'], ['demo', '--help'],\n"
        "             ['train', '--help'], ['predict', '--help'], []):\n"
        "    try:\n"
        "        codes.append(main(argv))\n"
        "    except SystemExit as stop:\n"
        "        codes.append(stop.code)\n"
        "heavy = [name for name in ('tensorflow', 'keras', 'jax', 'torch') if name in sys.modules]\n"
        "print(json.dumps({'codes': codes, 'heavy': heavy}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"codes": [0, 0, 0, 0, 0, 0, 0], "heavy": []}
    assert "senet 0." in done.stdout and "explain" in done.stdout and "demo" in done.stdout


@pytest.mark.slow  # a fresh process imports TensorFlow and loads the model: ~5-10 s
def test_error_after_tensorflow_loads_is_still_one_line_in_a_real_process(files):
    """TensorFlow's load-time notes on fd 2 are silenced, so stderr is only the error."""
    done = subprocess.run(
        [sys.executable, "-m", "senet", "explain", files["path"], str(files["root"] / "broken.png")]
        + ["--out", str(files["root"] / "real")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("senet explain: error: ") and "broken.png" in line


def test_choices_agree_with_the_library():
    import senet
    from senet.explain_photos import EXPLAIN_METHODS

    assert senet.kinds()[: len(cli.BUILT_IN_KINDS)] == cli.BUILT_IN_KINDS
    assert cli.EXPLAIN_METHOD_CHOICES == EXPLAIN_METHODS


def _run(argv, capsys) -> tuple[int, str, str]:
    try:
        status = main(argv)
    except SystemExit as stop:  # argparse usage errors
        status = stop.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# (argv with {root}/{model} placeholders, text the one-line message must contain)
BAD_INPUTS = [
    ("train --epochs 0", "--epochs"),
    ("train", "--out RUN_DIR"),
    ("train --out {root}/run --data {root}/missing.csv --epochs 1", "missing.csv"),
    ("train --model resnet7 --out {root}/run", "--model"),
    ("evaluate {root}/missing.keras --data synthetic", "missing.keras"),
    ("evaluate {model} --data {root}/nowhere.npz", "nowhere.npz"),
    ("predict {root}/missing.keras {root}/faces.png", "missing.keras"),
    ("predict {model} {root}/missing.png", "missing.png"),
    ("predict {model} {root}/broken.png", "broken.png"),
    ("predict {model} {root}/faces.png --every 0", "--every"),
    ("explain {root}/missing.keras {root}/faces.png --out {root}/x", "missing.keras"),
    ("explain {model} {root}/missing.png --out {root}/x", "missing.png"),
    ("explain {model} {root}/faces.png", "--out"),
    ("explain {model} {root}/faces.png --out {root}/x --method lime", "--method"),
    ("explain {model} {root}/faces.png --out {root}/x --layer nope", "nope"),
    ("explain {model} {root}/faces.png --out {root}/x --method attention --class sad", "class"),
    ("explain {root}/plain.keras {root}/faces.png --out {root}/x --method attention", "attention"),
    ("explain {model} {root}/clip.avi --out {root}/x", "clip.avi"),
    ("demo --seed -1", "--seed"),
    ("demo --out", "--out"),
    ("demo --jobs 0", "--jobs"),
]


@pytest.mark.parametrize("argv, named", BAD_INPUTS, ids=[argv for argv, _ in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2(files, capsys, argv, named):
    argv = argv.format(root=files["root"], model=files["path"]).split()
    status, out, err = _run(argv, capsys)
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"senet {argv[0]}: ") and named in lines[0]
    assert "Traceback" not in out + err
    # explain checks its inputs before it writes anything
    assert not (files["root"] / "x").exists()


def test_explain_bad_class_lists_the_class_names(files, capsys):
    argv = ["explain", files["path"], str(files["root"] / "faces.png"), "--out"]
    status, _, err = _run([*argv, str(files["root"] / "x"), "--class", "joyful"], capsys)
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert "joyful" in err and all(name in err for name in EMOTIONS)


def _crops(files):
    from senet.predict import crop_inputs, detect_faces

    photo = cv2.imread(str(files["root"] / "faces.png"))
    boxes = detect_faces(photo)
    return boxes, crop_inputs(photo, boxes, 48, 1)


def test_explain_writes_one_overlay_per_face_and_an_index(files, tmp_path, capsys):
    from senet.explain import grad_cam

    root, out = files["root"], tmp_path / "explained"
    argv = ["explain", files["path"], str(root / "faces.png"), str(root / "blank.png")]
    status, stdout, err = _run([*argv, "--out", str(out)], capsys)
    assert status == 0, err
    assert "faces.png: 2 faces" in stdout and "blank.png: no face found" in stdout

    overlays = sorted(out.glob("*.png"))
    assert len(overlays) == 2
    for overlay in overlays:
        picture = cv2.imread(str(overlay))
        assert picture is not None and picture.shape == (268, 224, 3)
        assert overlay.name.startswith("faces_face") and "_gradcam_" in overlay.name

    page = (out / "index.html").read_text(encoding="utf-8")
    for overlay in overlays:
        assert f'src="{overlay.name}"' in page
    assert str(root / "blank.png") in page and "no face found" in page

    # the records behind it: predicted class, and exactly grad_cam's maps for those classes
    from senet.explain_photos import explain_photos

    (photo,) = explain_photos(files["path"], [root / "faces.png"], tmp_path / "again")
    boxes, crops = _crops(files)
    probabilities = files["model"].predict(crops, verbose=0)
    predicted = probabilities.argmax(axis=1)
    assert [face.box for face in photo.faces] == boxes
    assert [face.label for face in photo.faces] == [EMOTIONS[k] for k in predicted]
    assert [face.target for face in photo.faces] == [face.label for face in photo.faces]
    np.testing.assert_allclose(
        [face.probability for face in photo.faces], probabilities.max(axis=1), atol=1e-5
    )
    expected = grad_cam(files["model"], crops, class_index=predicted)
    np.testing.assert_allclose(np.stack([f.heatmap for f in photo.faces]), expected, atol=1e-5)
    assert json.loads(json.dumps(photo.to_dict()))["faces"][0]["overlay"].endswith(".png")


def test_explain_and_demo_refuse_to_replace_what_they_did_not_just_write(files, tmp_path, capsys):
    root, out = files["root"], tmp_path / "explained"
    argv = ["explain", files["path"], str(root / "faces.png"), "--out", str(out)]
    assert _run(argv, capsys)[0] == 0
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    status, _, err = _run(argv, capsys)
    assert status == 2 and err.strip().splitlines() == [
        f"senet explain: error: {out} holds an explanation already (index.html); give "
        "--overwrite (overwrite=True) to replace it, or choose another folder"
    ]
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before
    assert _run([*argv, "--overwrite"], capsys)[0] == 0
    # an overlay would replace a file of the same name that is not an explanation's
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / next(iter(n for n in before if n.endswith(".png")))).write_bytes(b"mine")
    status, _, err = _run([*argv[:-1], str(fresh)], capsys)
    assert status == 2 and "exists; give --overwrite" in err
    assert b"mine" in [path.read_bytes() for path in fresh.iterdir()]

    # the demo writes into a new or empty folder, or its own (a rerun), not beside others
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "thesis.tex").write_text("mine")
    status, _, err = _run(["demo", "--quick", "--out", str(mine)], capsys)
    assert status == 2 and err.strip().splitlines() == [
        f"senet demo: error: {mine} holds files the demo did not write (thesis.tex); choose "
        "another folder, or give --overwrite (overwrite=True) to write beside them"
    ]
    assert [path.name for path in mine.iterdir()] == ["thesis.tex"]


def test_explain_class_option_explains_that_class(files, tmp_path):
    from senet.explain import grad_cam
    from senet.explain_photos import explain_photos

    _, crops = _crops(files)
    predicted = files["model"].predict(crops, verbose=0).argmax(axis=1)
    other = next(k for k in range(len(EMOTIONS)) if k not in predicted)
    (photo,) = explain_photos(
        files["path"], [files["root"] / "faces.png"], tmp_path, class_name=EMOTIONS[other]
    )
    heatmaps = np.stack([face.heatmap for face in photo.faces])
    np.testing.assert_allclose(
        heatmaps, grad_cam(files["model"], crops, class_index=other), atol=1e-5
    )
    assert not np.allclose(heatmaps, grad_cam(files["model"], crops, class_index=predicted))
    for face in photo.faces:
        assert face.target == EMOTIONS[other] != face.label
        assert face.probability == face.probabilities[EMOTIONS[other]]
        assert face.overlay.endswith(f"_gradcam_{EMOTIONS[other]}.png")


def test_explain_attention_method_on_an_se_model(files, tmp_path, capsys):
    from senet.explain import attention_map
    from senet.explain_photos import explain_photos

    _, crops = _crops(files)
    (photo,) = explain_photos(
        files["path"], [files["root"] / "faces.png"], tmp_path, method="attention"
    )
    heatmaps = np.stack([face.heatmap for face in photo.faces])
    np.testing.assert_allclose(heatmaps, attention_map(files["model"], crops), atol=1e-5)
    assert heatmaps.shape == (2, 48, 48) and np.isclose(heatmaps.max(), 1.0)

    argv = ["explain", files["path"], str(files["root"] / "faces.png"), "--method", "attention"]
    status, stdout, _ = _run([*argv, "--out", str(tmp_path / "cli")], capsys)
    assert status == 0 and len(list((tmp_path / "cli").glob("*_attention_*.png"))) == 2


def test_explain_keeps_what_it_wrote_before_an_unreadable_photo(files, tmp_path, capsys):
    root = files["root"]
    argv = ["explain", files["path"], str(root / "faces.png"), str(root / "broken.png")]
    status, stdout, err = _run([*argv, "--out", str(tmp_path)], capsys)
    assert status == 2 and "broken.png" in err and len(err.strip().splitlines()) == 1
    assert "faces.png: 2 faces" in stdout
    assert len(list(tmp_path.glob("faces_face*.png"))) == 2
    assert "faces_face1_" in (tmp_path / "index.html").read_text(encoding="utf-8")


def test_demo_calls_run_demo_and_prints_where_and_what(tmp_path, capsys, monkeypatch):
    calls = []
    metrics = {
        "models": {
            "baseline": {"test_accuracy": 0.8125, "params": 295575},
            "se": {"test_accuracy": 0.875, "params": 301285},
        },
        "focus": {
            "baseline": {"energy_in_parts": 0.41, "area_fraction": 0.2},
            "se": {"energy_in_parts": 0.52, "area_fraction": 0.2},
            "image_blind": {"energy_in_parts": 0.3, "area_fraction": 0.2},
        },
    }

    def run_demo(
        out_dir, *, quick=False, seed=0, verbose=False, difficulty="easy", jobs=None, **rest
    ):
        assert difficulty == "easy"  # the default; --difficulty hard is passed through
        assert rest == {"overwrite": False}
        calls.append((str(out_dir), quick, seed, verbose, jobs))
        return metrics

    if importlib.util.find_spec("senet.demo") is not None:
        monkeypatch.setattr("senet.demo.run_demo", run_demo)
    else:  # senet/demo.py not written yet: the command is tested against a stand-in module
        monkeypatch.setitem(sys.modules, "senet.demo", types.SimpleNamespace(run_demo=run_demo))

    status, out, err = _run(["demo", "--out", str(tmp_path), "--quick", "--seed", "3"], capsys)
    assert status == 0, err
    assert calls == [(str(tmp_path), True, 3, True, 2)]
    for name in ("report.html", "report.md", "metrics.json"):
        assert str(tmp_path / name) in out
    assert "0.8125" in out and "0.8750" in out and "52.0%" in out

    _run(["demo"], capsys)
    assert calls[-1] == ("demo_out", False, 0, True, 2)
    _run(["demo", "--jobs", "1"], capsys)
    assert calls[-1] == ("demo_out", False, 0, True, 1)


def test_senet_errors_live_in_one_module_and_the_cli_maps_them_to_exit_statuses(
    monkeypatch, capsys
):
    import inspect

    from senet import errors

    defined = {
        name: cls
        for name, cls in vars(errors).items()
        if inspect.isclass(cls)
        and issubclass(cls, errors.SenetError)
        and cls is not errors.SenetError
    }
    assert len(defined) == 12
    assert all(cls.__module__ == "senet.errors" for cls in defined.values())
    assert not any(hasattr(cls, "exit_status") for cls in defined.values())
    stopped = {cls for cls, _ in cli.EXIT_STATUS}
    for name, cls in defined.items():
        # bad input is a ValueError (exit 2), a run that stopped a RuntimeError (exit 1)
        assert issubclass(cls, ValueError) != (cls in stopped), name

    def raising(error):
        def handler(args):
            raise error

        return handler

    cases = [
        (errors.TrainingDiverged("loss is NaN at epoch 2", epoch=1), 1),
        (errors.WorkerFailed("worker 1 was killed by SIGKILL", index=1, status=-9), 1),
        (errors.ClusterError("the chief stopped"), 1),
        (errors.RunInUse("run r is in use by PID 7"), 2),
        (errors.DataError("faces.csv, row 3: bad pixels"), 2),
    ]
    for error, status in cases:
        parser = cli._parser()
        args = parser.parse_args(["train", "--out", "x"])
        args.handler = raising(error)
        monkeypatch.setattr(cli._Parser, "parse_args", lambda self, argv=None, a=args: a)
        assert cli.main(["train", "--out", "x"]) == status
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"senet train: error: {error}"]
