"""Run directories against hostile or broken files, as issue 10 (items 1-5) describes them.

Every test builds its broken input itself (in tmp_path) and checks, besides the one-line
error or the recovery line, that no file outside the run directory and no good checkpoint
changed (sha256 of every file before and after). One tiny finished run is shared by the
module; each test works on its own copy.
"""

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from senet import runs
from senet.cli import main
from senet.data import synthetic_expressions
from senet.train import train

TINY = {"synthetic_size": 210, "image_size": 24, "epochs": 3, "batch_size": 32, "seed": 1}
#: The same run as TINY on the command line (what `senet train` needs to repeat it).
TINY_FLAGS = [
    "--data",
    "synthetic",
    "--synthetic-size",
    "210",
    "--image-size",
    "24",
    "--batch-size",
    "32",
    "--seed",
    "1",
    "--quiet",
]


def _hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (symlinks by their target text)."""
    found = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            found[key] = "link:" + os.readlink(path)
        elif path.is_file():
            found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _run(argv, capsys) -> tuple[int, str, list[str]]:
    """``senet ARGV`` in this process: (exit status, stdout, stderr lines)."""
    try:
        status = main([str(arg) for arg in argv])
    except SystemExit as stop:  # argparse usage errors
        status = stop.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err.strip().splitlines()


def _one_error_line(err: list[str]) -> str:
    assert len(err) == 1, err
    (line,) = err
    assert line.startswith("senet train: error: "), line
    assert "Traceback" not in line
    return line


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 3-epoch run (checkpoints 2 and 3 kept)."""
    run = tmp_path_factory.mktemp("finished") / "run"
    train(TINY, run, verbose=0)
    return run


@pytest.fixture
def copy(finished, tmp_path):
    """A private copy of the finished run in ``tmp_path/run``."""
    run = tmp_path / "run"
    shutil.copytree(finished, run, symlinks=True)
    return run


def _state(run: Path) -> dict:
    return json.loads((run / "state.json").read_text())


# --------------------------------------------------------------------------- 1: state paths


def _name_outside(run: Path, victim: Path, kind: str) -> str:
    """A checkpoint entry naming ``victim`` (outside the run) the way ``kind`` says."""
    if kind == "dotdot":
        return os.path.relpath(victim, run / "checkpoints")
    if kind == "absolute":
        return str(victim)
    # a checkpoint name senet writes, but a symlink to a file outside the run
    (run / "checkpoints" / "epoch-0001.keras").symlink_to(victim)
    return "epoch-0001.keras"


@pytest.mark.slow  # a copy of the module's tiny trained run
@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_state_naming_a_file_outside_the_run_is_refused_and_nothing_deleted(
    copy, tmp_path, capsys, kind
):
    # a loadable model outside the run: the old code loaded it and, two epochs later,
    # dropped its entry and unlinked it
    victim = tmp_path / "outside" / "victim.keras"
    victim.parent.mkdir()
    shutil.copy(copy / "checkpoints" / "epoch-0002.keras", victim)
    state = _state(copy)
    name = _name_outside(copy, victim, kind)
    state["checkpoints"] = [{"epoch": 1, "file": name, "rng": []}]
    state["history"] = state["history"][:1]
    (copy / "state.json").write_text(json.dumps(state))
    before = _hashes(tmp_path)

    status, _, err = _run(["train", "--resume", copy], capsys)
    assert status == 2
    line = _one_error_line(err)
    assert "state.json" in line and repr(name) in line and "nothing was changed" in line
    assert _hashes(tmp_path) == before


def test_checkpoint_path_accepts_only_names_senet_writes(tmp_path):
    runs.make_run_dir(tmp_path)
    good = runs.checkpoint_path(tmp_path, "epoch-0003.keras")
    assert good == tmp_path / "checkpoints" / "epoch-0003.keras"
    assert runs.checkpoint_path(tmp_path, runs.checkpoint_name(12345)).name == "epoch-12345.keras"
    bad = [
        "../epoch-0001.keras",
        "../../home/user/notes.txt",
        str(tmp_path / "checkpoints" / "epoch-0001.keras"),  # absolute, even inside
        "sub/epoch-0001.keras",
        "epoch-1.keras",
        "epoch-0001.h5",
        "epoch-0001.keras/..",
        "",
        None,
        7,
    ]
    for name in bad:
        with pytest.raises(runs.RunError, match="not a checkpoint senet writes"):
            runs.checkpoint_path(tmp_path, name)


# --------------------------------------------------------------------------- 2: corrupt state


@pytest.mark.slow  # a copy of the module's tiny trained run
def test_corrupt_state_recovers_from_the_newest_checkpoint_that_loads(copy, tmp_path, capsys):
    history = copy / "history.csv"
    old_rows = runs.read_history_csv(history)
    newest = copy / "checkpoints" / "epoch-0003.keras"
    newest.write_bytes(newest.read_bytes()[:1000])  # cut short: does not load
    (copy / "state.json").write_text('{"epochs_done": 3, "checkpoint": "epo')  # truncated
    (copy / "model.keras").unlink()  # the run had not finished
    (copy / "metrics.json").unlink()
    kept = hashlib.sha256((copy / "checkpoints" / "epoch-0002.keras").read_bytes()).hexdigest()
    outside = tmp_path / "outside.txt"
    outside.write_text("not senet's")

    status, out, err = _run(["train", "--resume", copy], capsys)
    assert status == 0, err
    notes = [line for line in err if "recovered" in line]
    assert len(notes) == 1 and notes[0].startswith("senet: warning: "), err
    assert "state.json" in notes[0] and "epoch-0002.keras" in notes[0]
    assert "resumed after epoch 2" in out
    # the good checkpoint is kept (only epoch 3, which did not load, was written again)
    after = hashlib.sha256((copy / "checkpoints" / "epoch-0002.keras").read_bytes()).hexdigest()
    assert after == kept
    assert sorted(os.listdir(copy / "checkpoints")) == ["epoch-0002.keras", "epoch-0003.keras"]
    # history: the rows up to the recovered epoch as they were, then the new epoch 3
    rows = runs.read_history_csv(history)
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    assert rows[:2] == old_rows[:2]
    state = _state(copy)
    assert state["epochs_done"] == 3 and [r["epoch"] for r in state["history"]] == [1, 2, 3]
    assert [entry["file"] for entry in state["checkpoints"]] == [
        "epoch-0002.keras",
        "epoch-0003.keras",
    ]
    assert runs.has_final_files(copy)
    assert outside.read_text() == "not senet's"


@pytest.mark.slow  # a copy of the module's tiny trained run
def test_corrupt_state_and_no_checkpoint_that_loads_stops_and_changes_nothing(
    copy, tmp_path, capsys
):
    for path in (copy / "checkpoints").iterdir():
        path.write_bytes(path.read_bytes()[:1000])
    (copy / "state.json").write_text("[not json")
    before = _hashes(tmp_path)

    status, _, err = _run(["train", "--resume", copy], capsys)
    assert status == 2
    line = _one_error_line([line for line in err if not line.startswith("senet: warning")])
    assert "state.json" in line and "no checkpoint" in line and "nothing was changed" in line
    assert _hashes(tmp_path) == before


# --------------------------------------------------------------------------- 3: --out


@pytest.mark.parametrize("overwrite", [False, True], ids=["plain", "overwrite"])
def test_out_refuses_a_non_empty_folder_that_is_not_a_run(tmp_path, capsys, overwrite):
    folder = tmp_path / "my-photos"
    folder.mkdir()
    (folder / "holiday.png").write_bytes(b"\x89PNG not really")
    (folder / ".tmp-1-state.json").write_text("a user's file, whatever its name")
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "epoch-0001.keras").write_text("the user's, not senet's")
    before = _hashes(tmp_path)

    argv = ["train", *TINY_FLAGS, "--epochs", "1", "--out", folder]
    status, _, err = _run([*argv, "--overwrite"] if overwrite else argv, capsys)
    assert status == 2
    line = _one_error_line(err)
    assert str(folder) in line and "not a senet run" in line
    assert _hashes(tmp_path) == before
    assert sorted(p.name for p in folder.iterdir()) == [
        ".tmp-1-state.json",
        "checkpoints",
        "holiday.png",
    ]


@pytest.mark.slow  # a copy of the module's tiny trained run
def test_overwrite_starts_a_run_afresh_and_keeps_files_senet_did_not_write(copy, capsys):
    mine = {
        copy / "notes.txt": "my notes",
        copy / "checkpoints" / "best-by-hand.keras": "kept aside",
        copy / "logs.txt": "not TensorBoard's",
    }
    for path, text in mine.items():
        path.write_text(text)
    status, out, err = _run(["train", *TINY_FLAGS, "--epochs", "2", "--out", copy], capsys)
    assert status == 2 and "already holds a run" in _one_error_line(err)

    status, out, err = _run(
        ["train", *TINY_FLAGS, "--epochs", "2", "--out", copy, "--overwrite"], capsys
    )
    assert status == 0, err
    assert "resumed" not in out
    # a new 2-epoch run: the old run's epoch-3 checkpoint is gone, the user's files are not
    assert sorted(os.listdir(copy / "checkpoints")) == [
        "best-by-hand.keras",
        "epoch-0001.keras",
        "epoch-0002.keras",
    ]
    assert {path: path.read_text() for path in mine} == mine
    assert json.loads((copy / "config.json").read_text())["epochs"] == 2
    assert [row["epoch"] for row in runs.read_history_csv(copy / "history.csv")] == [1, 2]
    assert _state(copy)["epochs_done"] == 2
    assert json.loads((copy / "metrics.json").read_text())["epochs_run"] == 2


@pytest.mark.slow  # a copy of the module's tiny trained run
def test_overwrite_with_resume_is_refused(copy, capsys):
    before = _hashes(copy)
    status, _, err = _run(["train", "--resume", copy, "--overwrite"], capsys)
    assert status == 2 and "--overwrite" in _one_error_line(err)
    assert _hashes(copy) == before


# --------------------------------------------------------------------------- 4: lock

_GATED = """
import sys, time
from pathlib import Path
from senet import runs
from senet.cli import main

gate = Path(sys.argv[1])
original = runs.RunCheckpoint.on_epoch_end

def gated(self, epoch, logs=None):
    original(self, epoch, logs)
    deadline = time.monotonic() + 300
    while epoch == 0 and not gate.exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # epoch 1 is saved: wait here until the test opens the gate

runs.RunCheckpoint.on_epoch_end = gated
sys.exit(main(sys.argv[2:]))
"""


def _senet(*argv, timeout=240) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, "-m", "senet", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.mark.slow  # a second process trains 3 tiny epochs
def test_a_second_training_on_a_run_in_use_refuses_while_the_first_finishes(tmp_path, capsys):
    run, gate = tmp_path / "run", tmp_path / "gate"
    script = tmp_path / "gated.py"
    script.write_text(_GATED)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    first = subprocess.Popen(
        [sys.executable, str(script), str(gate), "train", *TINY_FLAGS, "--epochs", "3"]
        + ["--out", str(run)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not (run / "history.csv").exists():
            if first.poll() is not None:
                pytest.fail(f"the first training died: {first.stderr.read()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("no epoch finished after 300 s")
            time.sleep(0.2)
        # the first is inside its run, after epoch 1, with a write of epoch 2 under way
        (run / "checkpoints" / f".tmp-{first.pid}-epoch-0002.keras").write_bytes(b"PK half")
        before = _hashes(tmp_path)

        # the second trainings run in this process (the lock is the other process's)
        capsys.readouterr()
        for argv in (
            ["train", "--resume", run, "--quiet"],
            ["train", *TINY_FLAGS, "--epochs", "2", "--out", run, "--overwrite"],
        ):
            status = main([str(arg) for arg in argv])
            err = capsys.readouterr().err
            assert status == 2, err
            line = _one_error_line(err.strip().splitlines())
            assert f"run {run} is in use by PID {first.pid}" in line
            assert _hashes(tmp_path) == before

        gate.write_text("go")
        out, err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, err[-2000:]
    assert "run directory:" in out
    assert runs.has_final_files(run)
    assert [row["epoch"] for row in runs.read_history_csv(run / "history.csv")] == [1, 2, 3]
    assert _state(run)["epochs_done"] == 3
    assert not (run / runs.LOCK_FILE).exists()
    assert not list(run.rglob(".tmp-*"))


def _dead_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(timeout=60)
    return process.pid


def _write_lock(run: Path, pid: int, host: str | None = None) -> None:
    lock = {"pid": pid, "host": host or socket.gethostname()}
    (run / runs.LOCK_FILE).write_text(json.dumps(lock))


@pytest.mark.slow  # a copy of the module's tiny trained run
def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_note(copy, capsys):
    (copy / "metrics.json").unlink()  # a finished run: resuming rewrites its results
    pid = _dead_pid()
    _write_lock(copy, pid)
    status, _, err = _run(["train", "--resume", copy], capsys)
    assert status == 0, err
    notes = [line for line in err if "stale lock" in line]
    assert len(notes) == 1 and notes[0].startswith("senet: warning: "), err
    assert f"PID {pid}" in notes[0]
    assert not (copy / runs.LOCK_FILE).exists()
    assert (copy / "metrics.json").is_file()


_HOLDER = """
import sys, time
from senet import runs
with runs.lock_run(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""


def _holder(run: Path) -> subprocess.Popen:
    """A process that holds ``run``'s lock (:func:`runs.lock_run`) until it is killed."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(run)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline() == "locked\n"
    return holder


def test_lock_refuses_a_live_holder_and_is_released_on_errors(tmp_path):
    runs.make_run_dir(tmp_path)
    holder = _holder(tmp_path)
    try:
        before = _hashes(tmp_path)
        in_use = f"run {tmp_path} is in use by PID {holder.pid}$"
        with pytest.raises(runs.RunInUse, match=in_use), runs.lock_run(tmp_path):
            pass
        with pytest.raises(runs.RunInUse, match=in_use):
            runs.check_unlocked(tmp_path)
        assert _hashes(tmp_path) == before
    finally:
        holder.kill()
        holder.wait(timeout=60)
    # another host's lock file: its holder cannot be checked from here (a shared file
    # system's flock may not reach it), so it counts as held while the file is there
    _write_lock(tmp_path, _dead_pid(), host="elsewhere.example")
    with (
        pytest.raises(runs.RunInUse, match="in use by PID .* on host elsewhere.example"),
        runs.lock_run(tmp_path),
    ):
        pass
    with pytest.raises(runs.RunInUse, match="in use by PID .* on host elsewhere.example"):
        runs.check_unlocked(tmp_path)  # the quick check says what the lock says
    assert (tmp_path / runs.LOCK_FILE).exists()
    (tmp_path / runs.LOCK_FILE).unlink()
    # held for the block, removed after it even when the block raises
    with pytest.raises(KeyError), runs.lock_run(tmp_path):
        lock = json.loads((tmp_path / runs.LOCK_FILE).read_text())
        assert lock["pid"] == os.getpid() and lock["host"] == socket.gethostname()
        with pytest.raises(runs.RunInUse, match=f"in use by PID {os.getpid()}"):
            runs.check_unlocked(tmp_path)
        with (
            pytest.raises(runs.RunInUse, match=f"in use by PID {os.getpid()}"),
            runs.lock_run(tmp_path),  # a run inside a run of this very process
        ):
            pass
        raise KeyError("boom")
    assert not (tmp_path / runs.LOCK_FILE).exists()
    runs.check_unlocked(tmp_path)


def test_the_lock_of_a_killed_process_is_free_even_if_its_pid_runs_again(tmp_path):
    """The kernel ends a lock with its process: after ``kill -9`` the run is free at once,
    with a note, and a PID that runs again (reused, or a process that never held the lock)
    does not keep it taken."""
    runs.make_run_dir(tmp_path)
    holder = _holder(tmp_path)
    holder.kill()  # SIGKILL: no finally block runs, run.lock stays on disk
    holder.wait(timeout=60)
    assert json.loads((tmp_path / runs.LOCK_FILE).read_text())["pid"] == holder.pid
    runs.check_unlocked(tmp_path)
    with (
        pytest.warns(UserWarning, match=f"took over the stale lock of PID {holder.pid},"),
        runs.lock_run(tmp_path),
    ):
        pass
    assert not (tmp_path / runs.LOCK_FILE).exists()

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        _write_lock(tmp_path, sleeper.pid)  # alive, but holds no lock
        runs.check_unlocked(tmp_path)
        with (
            pytest.warns(UserWarning, match=f"stale lock of PID {sleeper.pid},"),
            runs.lock_run(tmp_path),
        ):
            assert json.loads((tmp_path / runs.LOCK_FILE).read_text())["pid"] == os.getpid()
    finally:
        sleeper.kill()
        sleeper.wait(timeout=60)


# --------------------------------------------------------------------------- 5: --resume


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--lr", "0.5"], "--lr"),
        (["--batch-size", "16"], "--batch-size"),
        (["--no-augment"], "--no-augment"),
        (["--image-size", "32"], "--image-size"),
        (["--model", "resnet20", "--optimizer", "sgd"], "--model"),
    ],
    ids=["lr", "batch-size", "no-augment", "image-size", "model"],
)
@pytest.mark.slow  # a copy of the module's tiny trained run
def test_resume_refuses_flags_it_cannot_apply(copy, tmp_path, capsys, flags, named):
    before = _hashes(tmp_path)
    status, _, err = _run(["train", "--resume", copy, *flags], capsys)
    assert status == 2
    line = _one_error_line(err)
    assert named in line and "cannot resume" in line
    if "--optimizer" in flags:
        assert "--optimizer" in line
    assert _hashes(tmp_path) == before


@pytest.mark.slow  # a copy of the module's tiny trained run
def test_resume_accepts_flags_equal_to_the_runs(copy, capsys):
    (copy / "metrics.json").unlink()
    status, _, err = _run(["train", "--resume", copy, *TINY_FLAGS, "--epochs", "3"], capsys)
    assert status == 0, err
    assert (copy / "metrics.json").is_file()


@pytest.mark.slow  # a copy of the module's tiny trained run
def test_resume_with_more_epochs_continues_to_the_new_total(copy, tmp_path, capsys):
    old_rows = runs.read_history_csv(copy / "history.csv")
    third = hashlib.sha256((copy / "checkpoints" / "epoch-0003.keras").read_bytes()).hexdigest()
    status, out, err = _run(["train", "--resume", copy, "--epochs", "4"], capsys)
    assert status == 0, err
    notes = [line for line in err if "epochs" in line]
    assert len(notes) == 1 and notes[0].startswith("senet: warning: "), err
    assert "3" in notes[0] and "4" in notes[0]
    assert "resumed after epoch 3" in out
    rows = runs.read_history_csv(copy / "history.csv")
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4] and rows[:3] == old_rows
    assert json.loads((copy / "config.json").read_text())["epochs"] == 4
    assert json.loads((copy / "metrics.json").read_text())["epochs_run"] == 4
    # epoch 2's checkpoint was replaced by epoch 4's; epoch 3's is untouched
    assert sorted(os.listdir(copy / "checkpoints")) == ["epoch-0003.keras", "epoch-0004.keras"]
    after = hashlib.sha256((copy / "checkpoints" / "epoch-0003.keras").read_bytes()).hexdigest()
    assert after == third


@pytest.mark.slow  # a copy of the module's tiny trained run
def test_resume_refuses_fewer_epochs_than_done_and_a_longer_cosine_schedule(copy, tmp_path, capsys):
    before = _hashes(tmp_path)
    status, _, err = _run(["train", "--resume", copy, "--epochs", "2"], capsys)
    assert status == 2
    line = _one_error_line(err)
    assert "--epochs 2" in line and "3 epochs" in line
    assert _hashes(tmp_path) == before

    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "lr_schedule": "cosine"}))
    before = _hashes(tmp_path)
    status, _, err = _run(["train", "--resume", copy, "--epochs", "5"], capsys)
    assert status == 2
    line = _one_error_line(err)
    assert "--epochs 5" in line and "cosine" in line
    assert _hashes(tmp_path) == before


def _npz(path: Path, class_names) -> Path:
    images, labels, _ = synthetic_expressions(70, image_size=24, seed=0)
    labels = labels % len(class_names)
    np.savez(path, x=images, y=labels, class_names=np.asarray(class_names))
    return path


@pytest.mark.slow  # a copy of the module's tiny trained run
@pytest.mark.parametrize("change", ["class-names", "class-count", "image-size"])
def test_resume_with_data_that_no_longer_matches_the_run(copy, tmp_path, capsys, change):
    # the run's data path now holds other data (or its config another image size)
    config = json.loads((copy / "config.json").read_text())
    if change == "class-names":
        names = ["cat", "dog", "bird", "fish", "cow", "hen", "owl"]
        config["data"] = str(_npz(tmp_path / "data.npz", names))
    elif change == "class-count":
        config["data"] = str(_npz(tmp_path / "data.npz", ["no", "yes"]))
    else:
        config["image_size"] = 32
    (copy / "config.json").write_text(json.dumps(config))
    (copy / "metrics.json").unlink()
    before = _hashes(tmp_path)

    status, _, err = _run(["train", "--resume", copy], capsys)
    assert status == 2
    line = _one_error_line([line for line in err if not line.startswith("senet: warning")])
    assert "no longer matches" in line
    if change == "image-size":
        assert "24" in line and "32" in line
    else:
        assert "class" in line
    assert _hashes(tmp_path) == before


# --------------------------------------------------------------------------- warnings


def test_cli_prints_warnings_as_one_line(monkeypatch, capsys):
    import senet.train

    def warn_then_fail(*args, **kwargs):
        warnings.warn("first line\n   and the second", UserWarning, stacklevel=2)
        raise ValueError("stopped")

    monkeypatch.setattr(senet.train, "train", warn_then_fail)
    shown = warnings.showwarning
    status, _, err = _run(["train", "--out", "unused-dir"], capsys)
    assert status == 2
    assert err == ["senet: warning: first line and the second", "senet train: error: stopped"]
    assert warnings.showwarning is shown  # put back after the command
