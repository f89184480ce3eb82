"""The commands that train ask TensorFlow for oneDNN; the user's own setting wins."""

import sys

import pytest

from senet import _tf, cli


@pytest.fixture
def tensorflow_not_loaded(monkeypatch):
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)


def test_onednn_is_turned_on_before_tensorflow_loads(tensorflow_not_loaded):
    import os

    assert _tf.prefer_onednn() is True
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "1"


def test_the_users_setting_wins(tensorflow_not_loaded, monkeypatch):
    import os

    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    assert _tf.prefer_onednn() is False
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "0"


def test_nothing_changes_once_tensorflow_is_loaded(monkeypatch):
    import os

    pytest.importorskip("tensorflow")
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    assert _tf.prefer_onednn() is False
    assert "TF_ENABLE_ONEDNN_OPTS" not in os.environ


@pytest.mark.parametrize(
    "argv,asked",
    [
        (["train", "--resume", "RUN"], True),
        (["demo"], True),
        (["ablate", "--out", "OUT"], True),
        (["predict", "model.keras", "photo.png"], False),
        (["evaluate", "model.keras", "--data", "synthetic"], False),
        (["bench", "emotion_cnn"], False),
    ],
)
def test_only_the_training_commands_ask(argv, asked, monkeypatch):
    calls = []
    monkeypatch.setattr(cli, "prefer_onednn", lambda: calls.append(True))
    handler = f"_run_{argv[0]}"
    home = cli.training if hasattr(cli.training, handler) else cli.models
    monkeypatch.setattr(home, handler, lambda args: 0)  # the choice comes before the work
    assert cli.main(argv) == 0
    assert bool(calls) is asked
    assert (argv[0] in cli.TRAINING_COMMANDS) is asked
