"""senet.config: every training option is defined once (TrainConfig), and the command
line's flags, ablate's settings and a launched worker's arguments are made from that table."""

import dataclasses

import pytest

from senet import cli, config
from senet.ablate import Settings
from senet.config import TRAIN_OPTIONS, TrainConfig, given_options, to_argv

# TrainConfig fields no flag sets (library and config.json only), named here so that a new
# field must be placed on one side or the other.
NOT_ON_THE_COMMAND_LINE = {
    "split_seed",
    "val_fraction",
    "test_fraction",
    "deterministic",
    "keep_checkpoints",
}
# a value other than the default for every option, as a user would ask for it
ASKED = {
    "task": "detection",
    "data": "faces.npz",
    "model": "retinanet",
    "attention": "cbam",
    "reduction": 16.0,
    "epochs": 3,
    "batch_size": 32,
    "learning_rate": 0.0005,
    "optimizer": "sgd",
    "lr_schedule": "cosine",
    "seed": 7,
    "skip_bad": True,
    "augment": False,
    "class_weights": True,
    "tensorboard": True,
    "distribute": "mirrored",
    "mixed_precision": True,
    "image_size": 32,
    "channels": 3,
    "synthetic_size": 900,
    "synthetic_difficulty": "hard",
    "model_options": {"width": 2, "attention_options": {"gate": "tanh"}},
    "patch_size": 16,
    "ct_window": [-160.0, 240.0],
    "init_from": "start.keras",
    "allow_h5": True,
    "backbone": "resnet50",
}


def test_every_field_is_an_option_or_named_as_library_only():
    from senet.data.synthetic import DIFFICULTIES

    assert config.SYNTHETIC_DIFFICULTIES == DIFFICULTIES  # repeated there: no Keras import
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    options = [option.field for option in TRAIN_OPTIONS]
    assert len(options) == len(set(options))
    assert set(options) | NOT_ON_THE_COMMAND_LINE == fields
    assert not set(options) & NOT_ON_THE_COMMAND_LINE
    assert set(ASKED) == set(options)


def test_flags_written_by_the_table_read_back_as_the_same_config():
    parser = cli._parser()
    defaults = parser.parse_args(["train", "--out", "run"])
    assert given_options(defaults) == {}  # nothing given: a resume keeps the run's values
    argv = to_argv(ASKED)
    assert "--lr" in argv and "--no-augment" in argv and "--augment" not in argv
    args = parser.parse_args(["train", "--out", "run", *argv])
    assert given_options(args) == ASKED
    made = TrainConfig(**given_options(args))
    assert {name: getattr(made, name) for name in ASKED} == ASKED
    # and the worker launcher passes on exactly what was given
    assert cli.training._train_argv(args) == [
        "--out",
        "run",
        *to_argv({k: v for k, v in ASKED.items() if k != "distribute"}),
    ]
    with pytest.raises(ValueError, match="split_seed"):
        to_argv({"split_seed": 1})


def test_help_ablate_and_settings_take_trainconfig_defaults():
    parser = cli._parser()
    train_help = parser._subparsers._group_actions[0].choices["train"].format_help()
    defaults = TrainConfig()
    for option in TRAIN_OPTIONS:
        if option.type is not bool:
            assert option.default == getattr(defaults, option.field)
    assert f"(default {defaults.learning_rate})" in train_help
    assert f"default {defaults.synthetic_size}" in train_help
    ablate = parser.parse_args(["ablate", "--out", "x"])
    for name in cli.training._ABLATE_SETTINGS:
        assert getattr(ablate, name) == getattr(defaults, name), name
    for name in cli.training._ABLATE_GRID:
        assert getattr(ablate, name) == [getattr(defaults, name)], name
    settings = Settings()
    for field in dataclasses.fields(Settings):
        name = "synthetic_difficulty" if field.name == "difficulty" else field.name
        if name in config.DEFAULTS:
            assert getattr(settings, field.name) == config.DEFAULTS[name], name
    # ablate spells the difficulty --difficulty, and writes it so in its command
    args = parser.parse_args(["ablate", "--out", "x", "--difficulty", "hard"])
    assert args.synthetic_difficulty == "hard"
    assert "--difficulty hard" in cli.training._ablate_command(args)


def test_a_task_refuses_the_networks_of_another(capsys):
    argv = ["train", "--task", "segmentation", "--model", "emotion_cnn", "--out", "x", "--quiet"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "a network of the segmentation task" in err and len(err.splitlines()) == 1
    with pytest.raises(ValueError, match="classification task"):
        TrainConfig(model="unet")
