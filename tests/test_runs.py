"""senet.runs: a run directory's files, state and recovery, without training anything."""

import json

import keras
import numpy as np
import pytest

from senet import runs


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(3),
            keras.layers.Dropout(0.5, seed=seed),
            keras.layers.Dense(2),
        ]
    )


def test_history_csv_round_trip_with_the_known_columns_first(tmp_path):
    rows = [
        {"epoch": 1, "zeta": 0.5, "loss": 2.0, "val_accuracy": 0.25, "seconds": 1.5},
        {"epoch": 2, "zeta": 0.25, "loss": 1.0, "val_accuracy": 0.5, "seconds": 1.25},
    ]
    path = tmp_path / "history.csv"
    runs.write_history_csv(path, rows)
    header = path.read_text().splitlines()[0]
    # training metrics after the loss, validation ones after val_loss, then the time
    assert header == "epoch,loss,zeta,val_accuracy,seconds"
    assert runs.read_history_csv(path) == [{k: float(v) for k, v in row.items()} for row in rows]


def test_state_round_trip_and_bad_state_files(tmp_path):
    rows = [{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": 0.5}]
    entries = [{"epoch": 2, "file": runs.checkpoint_name(2), "rng": []}]
    runs.write_state(tmp_path, rows, entries, ["a", "b"])
    state = runs.read_state(tmp_path)
    assert state["epochs_done"] == 2 and state["checkpoint"] == "epoch-0002.keras"
    assert state["history"] == rows and state["class_names"] == ["a", "b"]
    assert runs.holds_run(tmp_path)

    (tmp_path / "state.json").write_text('{"epochs_done": 2, "checkp')
    with pytest.warns(UserWarning, match="unreadable"):
        assert runs.read_state(tmp_path) is None
    (tmp_path / "state.json").write_text(json.dumps({"checkpoints": "epoch-0002.keras"}))
    with pytest.warns(UserWarning, match="malformed"):
        assert runs.read_state(tmp_path) is None
    assert runs.read_state(tmp_path / "elsewhere") is None
    assert not runs.holds_run(tmp_path / "elsewhere")


def test_checkpoint_names_sort_by_epoch():
    names = [runs.checkpoint_name(epoch) for epoch in (10, 2, 1, 100)]
    assert sorted(names) == [
        "epoch-0001.keras",
        "epoch-0002.keras",
        "epoch-0010.keras",
        "epoch-0100.keras",
    ]


def test_remove_temporary_files_keeps_everything_else(tmp_path):
    runs.make_run_dir(tmp_path)
    keep = [tmp_path / "config.json", tmp_path / "checkpoints" / "epoch-0001.keras"]
    drop = [tmp_path / ".tmp-1-state.json", tmp_path / "checkpoints" / ".tmp-7-epoch-0002.keras"]
    for path in keep + drop:
        path.write_text("x")
    runs.remove_temporary_files(tmp_path)
    assert all(path.exists() for path in keep)
    assert not any(path.exists() for path in drop)


def test_find_run_config_beside_or_above_the_model(tmp_path):
    runs.make_run_dir(tmp_path)
    assert runs.find_run_config(tmp_path / "model.keras") is None
    runs.write_config(tmp_path, {"epochs": 3})
    assert runs.find_run_config(tmp_path / "model.keras") == {"epochs": 3}
    assert runs.find_run_config(tmp_path / "checkpoints" / "epoch-0001.keras") == {"epochs": 3}
    (tmp_path / "config.json").write_text("[1, 2]")  # not an object: no config
    assert runs.find_run_config(tmp_path / "model.keras") is None


def test_seed_states_survive_a_save_and_restore(tmp_path):
    model = _model()
    x = np.ones((8, 4), "float32")
    model(x, training=True)  # advances the dropout seed generator
    states = runs.get_seed_states(model)
    assert states, "a Dropout layer has a seed generator state"
    fresh = _model(seed=1)
    runs.set_seed_states(fresh, states)
    assert runs.get_seed_states(fresh) == states
    with pytest.warns(UserWarning, match="seed states"):
        runs.set_seed_states(fresh, states + states)


def test_restore_skips_an_unreadable_checkpoint_and_cuts_the_history(tmp_path):
    runs.make_run_dir(tmp_path)
    model = _model()
    model.compile("sgd", "mse")
    entries = []
    for epoch in (1, 2):
        name = runs.checkpoint_name(epoch)
        model.save(tmp_path / "checkpoints" / name)
        entries.append({"epoch": epoch, "file": name, "rng": runs.get_seed_states(model)})
    (tmp_path / "checkpoints" / entries[1]["file"]).write_bytes(b"PK\x03\x04 cut short")
    rows = [{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": 0.5}]
    runs.write_state(tmp_path, rows, entries, ["a", "b"])

    with pytest.warns(UserWarning, match="unreadable checkpoint"):
        restored = runs.restore(tmp_path, runs.read_state(tmp_path))
    assert restored.epochs_done == 1
    assert restored.rows == rows[:1] and restored.entries == entries[:1]
    for a, b in zip(restored.model.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert runs.restore(tmp_path, None) is None


def test_run_checkpoint_keeps_the_newest_and_records_them(tmp_path):
    runs.make_run_dir(tmp_path)
    model = _model()
    model.compile("sgd", "mse")
    rows, entries = [], []
    checkpoint = runs.RunCheckpoint(tmp_path, rows, entries, keep=2, class_names=["a", "b"])
    x, y = np.ones((8, 4), "float32"), np.zeros((8, 2), "float32")
    model.fit(x, y, epochs=3, batch_size=4, verbose=0, callbacks=[checkpoint])
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "epoch-0002.keras",
        "epoch-0003.keras",
    ]
    state = runs.read_state(tmp_path)
    assert [entry["file"] for entry in state["checkpoints"]] == [
        "epoch-0002.keras",
        "epoch-0003.keras",
    ]
    assert checkpoint.last_checkpoint == tmp_path / "checkpoints" / "epoch-0003.keras"
    assert [row["epoch"] for row in runs.read_history_csv(tmp_path / "history.csv")] == [1, 2, 3]
    assert checkpoint.diverged is None


def test_remove_temporary_files_deletes_only_names_senet_writes(tmp_path):
    runs.make_run_dir(tmp_path)
    theirs = [
        tmp_path / ".tmp-notes.txt",
        tmp_path / ".tmp-12-notes.txt",
        tmp_path / ".tmp-12-epoch-0001.keras",  # a checkpoint name, but not in checkpoints/
        tmp_path / "checkpoints" / ".tmp-3-model.keras",
        tmp_path / "checkpoints" / ".tmp-x-epoch-0001.keras",
    ]
    ours = [tmp_path / ".tmp-12-history.csv", tmp_path / ".tmp-5-curves.png"]
    for path in theirs + ours:
        path.write_text("x")
    runs.remove_temporary_files(tmp_path)
    assert all(path.exists() for path in theirs)
    assert not any(path.exists() for path in ours)


def test_clear_run_deletes_only_senets_own_files(tmp_path):
    runs.make_run_dir(tmp_path)
    senets = [
        "state.json",
        "config.json",
        "history.csv",
        "model.keras",
        "metrics.json",
        "curves.png",
        "confusion.png",
        "checkpoints/epoch-0001.keras",
        "checkpoints/epoch-0012.keras",
        "checkpoints/.tmp-4-epoch-0013.keras",
        "logs/train/events.out.tfevents.1.host",
        "logs/validation/events.out.tfevents.2.host",
    ]
    others = [
        "notes.txt",
        "checkpoints/best.keras",
        "checkpoints/epoch-1.keras",
        "logs/train/readme.txt",
        "logs/mine/events.out.tfevents.3.host",
    ]
    for name in senets + others:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    removed = runs.clear_run(tmp_path, also=("confusion.png",))  # classification's figure
    assert removed[0] == "state.json"  # first: no state may name checkpoints that are gone
    assert sorted(removed) == sorted(name for name in senets if ".tmp-" not in name)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == (
        sorted(others)
    )


def test_is_unused_allows_only_nothing_or_a_killed_start(tmp_path):
    assert runs.is_unused(tmp_path / "new")
    assert runs.is_unused(tmp_path)
    runs.make_run_dir(tmp_path)
    (tmp_path / runs.LOCK_FILE).write_text("{}")
    assert runs.is_unused(tmp_path)  # a lock and an empty checkpoints/: killed at the start
    (tmp_path / "checkpoints" / "x").write_text("x")
    assert not runs.is_unused(tmp_path)
    (tmp_path / "file").write_text("x")
    assert not runs.is_unused(tmp_path / "file")


def test_resume_point_without_state(tmp_path):
    runs.make_run_dir(tmp_path)
    assert runs.resume_point(tmp_path) is None  # killed before its first epoch ended
    model = _model()
    model.compile("sgd", "mse")
    for epoch in (1, 2, 3):
        model.save(tmp_path / "checkpoints" / runs.checkpoint_name(epoch))
    rows = [{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": 0.5}]
    runs.write_history_csv(tmp_path / "history.csv", rows)  # epoch 3 has no row: skipped
    with pytest.warns(UserWarning, match=r"state.json is missing: recovered from .*epoch-0002"):
        restored = runs.resume_point(tmp_path)
    assert restored.epochs_done == 2 and restored.rows == rows
    assert [entry["file"] for entry in restored.entries] == ["epoch-0001.keras", "epoch-0002.keras"]
    (tmp_path / "history.csv").unlink()
    with pytest.raises(runs.RunError, match="no checkpoint .* loads"):
        runs.resume_point(tmp_path)
