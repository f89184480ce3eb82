"""senet.ablate: the table's arithmetic against a hand computation, resuming after a kill, the
grid's rules, and the report and CLI on a grid whose training is replaced by a stand-in."""

import csv
import dataclasses
import json
import math

import keras
import numpy as np
import pytest

from senet import ablate, cli
from senet import train as training
from senet.ablate import Cell, make_grid, run_ablation, summarize
from senet.stats import paired_interval, t_quantile

TINY = dict(
    seeds=2,
    synthetic_size=140,
    image_size=16,
    epochs=1,
    batch_size=32,
    augment=False,
    latency_rounds=1,
)


def _hand_mean_std(values):
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _read_csv(path):
    with open(path, newline="") as file:
        return {row["name"]: row for row in csv.DictReader(file)}


# --------------------------------------------------------------------------- statistics


def test_t_quantile_table_and_expansion():
    assert t_quantile(1) == 12.7062
    assert t_quantile(4) == 2.7764
    # published t(0.975) values beyond the table
    assert t_quantile(40) == pytest.approx(2.0211, abs=2e-4)
    assert t_quantile(120) == pytest.approx(1.9799, abs=2e-4)
    with pytest.raises(ValueError, match="`df` must be"):
        t_quantile(0)


def test_paired_interval_by_hand():
    cell = {0: 0.80, 1: 0.70, 2: 0.90, 7: 0.5}
    base = {0: 0.75, 1: 0.72, 2: 0.80}  # seed 7 has no pair
    differences = [0.05, -0.02, 0.10]
    mean, sd = _hand_mean_std(differences)
    half = 4.3027 * sd / math.sqrt(3)  # t(0.975, 2)
    got = paired_interval(cell, base)
    assert got[3] == 3
    assert got[:3] == pytest.approx((mean, mean - half, mean + half))
    assert paired_interval({0: 0.9}, {0: 0.8})[1:] == (None, None, 1)
    assert paired_interval({0: 0.9}, {1: 0.8}) == (None, None, None, 0)


def _record(cell, seed, accuracy, params=100, flops=1000):
    return {
        "cell": cell.to_dict(),
        "seed": seed,
        "accuracy": accuracy,
        "params": params,
        "flops": flops,
        "train_seconds_per_epoch": 1.0 + seed,
        "latency_ms": 2.0,
    }


def test_summarize_hand_computation_and_verdicts():
    none = Cell("emotion_cnn", "none")
    noisy = Cell("emotion_cnn", "se", 8.0, "avg", "sigmoid")
    clear = Cell("emotion_cnn", "se", 4.0, "avg", "sigmoid")
    single = Cell("emotion_cnn", "se", 2.0, "avg", "sigmoid")
    records = [
        _record(none, 0, 0.70),
        _record(none, 1, 0.74),
        _record(none, 2, 0.72),
        _record(noisy, 0, 0.75, params=110, flops=1010),
        _record(noisy, 1, 0.70, params=110, flops=1010),
        _record(noisy, 2, 0.76, params=110, flops=1010),
        _record(clear, 0, 0.80),
        _record(clear, 1, 0.85),
        _record(clear, 2, 0.81),
        _record(single, 0, 0.9),
    ]
    rows = {row["name"]: row for row in summarize(records, [none, noisy, clear, single])}
    mean, std = _hand_mean_std([0.75, 0.70, 0.76])
    assert rows[noisy.name]["accuracy_mean"] == pytest.approx(mean)
    assert rows[noisy.name]["accuracy_std"] == pytest.approx(std)
    differences = [0.05, -0.04, 0.04]
    d_mean, d_sd = _hand_mean_std(differences)
    half = 4.3027 * d_sd / math.sqrt(3)
    assert rows[noisy.name]["diff_mean"] == pytest.approx(d_mean)
    assert rows[noisy.name]["diff_low"] == pytest.approx(d_mean - half)
    assert rows[noisy.name]["diff_high"] == pytest.approx(d_mean + half)
    assert rows[noisy.name]["verdict"] == "within noise"
    assert rows[clear.name]["verdict"] == "better"  # differences 0.10, 0.11, 0.09
    assert rows[single.name]["verdict"] == "n/a (1 seed)"
    assert rows[single.name]["accuracy_std"] is None
    assert rows[none.name]["verdict"] == "baseline"
    assert rows[noisy.name]["params_overhead_pct"] == pytest.approx(10.0)
    assert rows[noisy.name]["flops_overhead_pct"] == pytest.approx(1.0)
    assert rows[none.name]["train_seconds_per_epoch"] == pytest.approx(2.0)


# --------------------------------------------------------------------------- the grid


def test_make_grid_drops_options_a_cell_cannot_use():
    cells = make_grid(
        models=("emotion_cnn", "resnet20"),
        attentions=("se", "eca", "none"),
        reductions=(4, 8),
        placements=("standard", "pre"),
    )
    names = [cell.name for cell in cells]
    assert names[0] == "emotion_cnn-none" and "resnet20-none" in names
    assert len(names) == len(set(names))
    # ECA has no reduction: one cell per model (and placement) instead of two
    assert [n for n in names if n.startswith("emotion_cnn-eca")] == ["emotion_cnn-eca-avg-sigmoid"]
    assert "resnet20-se-r4-avg-sigmoid-pre-stagesall" in names
    assert not any("pre" in n for n in names if n.startswith("emotion_cnn"))
    se_pre = next(c for c in cells if c.name == "resnet20-se-r4-avg-sigmoid-pre-stagesall")
    assert se_pre.model_options() == {
        "attention_options": {"squeeze": "avg", "gate": "sigmoid"},
        "placement": "pre",
    }
    assert Cell("resnet20", "se", 8.0, stages="3,4").model_options()["stages"] == [3, 4]


def test_make_grid_refuses_resnet_options_without_a_resnet_and_bad_values():
    with pytest.raises(ValueError, match="`placements` must be"):
        make_grid(placements=("pre",))
    # a U-Net has no residual units: no placement or stages in its cells (its builder takes
    # neither)
    unet = make_grid(models=("unet",), attentions=("scse", "sse"))
    names = ["unet-none", "unet-scse-r8-avg-sigmoid", "unet-sse-sigmoid"]
    assert [cell.name for cell in unet] == names
    assert all(cell.model_options().keys() <= {"attention_options"} for cell in unet)
    with pytest.raises(ValueError, match="`stages` must be"):
        make_grid(stages=("2",))
    with pytest.raises(ValueError, match="`squeezes` must be one of"):
        make_grid(squeezes=("mean",))
    with pytest.raises(ValueError, match="`reductions` must be"):
        make_grid(reductions=(0,))


# --------------------------------------------------------------------------- real training


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory):
    """A 2 cells x 2 seeds grid killed in its second cell-seed, then run again."""
    out = tmp_path_factory.mktemp("ablation")
    real = training.train
    calls = []

    def killed_in_second(config, run_dir, **kwargs):
        calls.append((config.attention, config.seed))
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return real(config, run_dir, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training, "train", killed_in_second)
        with pytest.raises(KeyboardInterrupt):
            run_ablation(out, **TINY)
    first = out / "cells" / "emotion_cnn-none" / "seed0.json"
    before = (first.stat().st_mtime_ns, first.read_bytes())
    done_before = sorted(p.relative_to(out).as_posix() for p in out.glob("cells/*/*.json"))

    again = []

    def counted(config, run_dir, **kwargs):
        again.append((config.attention, config.seed))
        return real(config, run_dir, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training, "train", counted)
        result = run_ablation(out, **TINY)
    return dict(out=out, first=first, before=before, done_before=done_before, calls=again,
                result=result)  # fmt: skip


@pytest.mark.slow  # trains a grid, is killed, resumes
def test_resume_after_kill_trains_only_the_missing_cells(killed_and_resumed):
    run = killed_and_resumed
    assert run["done_before"] == ["cells/emotion_cnn-none/seed0.json"]
    assert run["calls"] == [("none", 1), ("se", 0), ("se", 1)]
    first = run["first"]
    assert (first.stat().st_mtime_ns, first.read_bytes()) == run["before"]
    assert (run["result"].trained, run["result"].skipped) == (3, 1)
    assert len(list(run["out"].glob("cells/*/seed*.json"))) == 4


def test_table_arithmetic_matches_a_hand_computation(killed_and_resumed):
    out = killed_and_resumed["out"]
    records = {}
    for path in out.glob("cells/*/seed*.json"):
        record = json.loads(path.read_text())
        records[(record["cell"]["name"], record["seed"])] = record
    base = [records[("emotion_cnn-none", s)]["accuracy"] for s in (0, 1)]
    se = [records[("emotion_cnn-se-r8-avg-sigmoid", s)]["accuracy"] for s in (0, 1)]
    rows = _read_csv(out / "results.csv")
    for name, values in (("emotion_cnn-none", base), ("emotion_cnn-se-r8-avg-sigmoid", se)):
        mean = (values[0] + values[1]) / 2
        std = abs(values[0] - values[1]) / math.sqrt(2)  # n - 1 = 1
        assert float(rows[name]["accuracy_mean"]) == pytest.approx(mean, abs=1e-12)
        assert float(rows[name]["accuracy_std"]) == pytest.approx(std, abs=1e-12)
    differences = [se[0] - base[0], se[1] - base[1]]
    d_mean = sum(differences) / 2
    half = 12.706 * (abs(differences[0] - differences[1]) / math.sqrt(2)) / math.sqrt(2)
    row = rows["emotion_cnn-se-r8-avg-sigmoid"]
    assert float(row["diff_mean"]) == pytest.approx(d_mean, abs=1e-12)
    assert float(row["diff_low"]) == pytest.approx(d_mean - half, abs=1e-3)
    assert float(row["diff_high"]) == pytest.approx(d_mean + half, abs=1e-3)
    crosses = d_mean - half <= 0 <= d_mean + half
    assert (row["verdict"] == "within noise") == crosses
    record = records[("emotion_cnn-se-r8-avg-sigmoid", 0)]
    assert record["params"] > records[("emotion_cnn-none", 0)]["params"]
    assert record["flops"] > 0 and record["latency_ms"] > 0
    assert record["train_seconds_per_epoch"] > 0
    markdown = (out / "ablation.md").read_text()
    assert "23.30" in markdown
    assert any(verdict in markdown for verdict in ("within noise", "better", "worse"))
    assert (out / "ablation.html").is_file() and (out / "seeds.csv").is_file()


# --------------------------------------------------------------------------- stand-in


def _stand_in_train(config, run_dir, **kwargs):
    """A RunResult without training: a tiny model, an accuracy set by the cell and seed."""
    inputs = keras.Input((config.image_size, config.image_size, config.channels))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    width = 3 if config.attention == "none" else 4
    model = keras.Model(inputs, keras.layers.Dense(width)(x))
    options = json.dumps(config.model_options, sort_keys=True)
    bonus = (
        0.0 if config.attention == "none" else 0.01 * (len(options) % 5) + config.reduction / 1e3
    )
    accuracy = 0.6 + bonus + 0.01 * config.seed
    return training.RunResult(
        out_dir=run_dir,
        model=model,
        history=[{"epoch": 1, "seconds": 0.5}],
        metrics={"test_accuracy": accuracy},
        epochs_run=1,
        config=config,
    )


@pytest.fixture
def stand_in(monkeypatch):
    """Training replaced by :func:`_stand_in_train`, latency by a constant."""
    from senet import bench

    monkeypatch.setattr(training, "train", _stand_in_train)
    monkeypatch.setattr(
        bench, "latency_interleaved", lambda models, x, **kw: {n: {"ms": 1.5} for n in models}
    )


def test_report_per_axis_tables_paper_numbers_and_plots(tmp_path, stand_in):
    out = tmp_path / "abl"
    result = run_ablation(
        out,
        models=("resnet20",),
        reductions=(16, 4),
        placements=("standard", "pre"),
        stages=("all", "3"),
        **{**TINY, "seeds": 3},
    )
    # baseline + 2 r x 2 placements x 2 stage sets
    assert len(result.rows) == 1 + 8 and result.trained == 9 * 3
    markdown = (out / "ablation.md").read_text()
    for title in ("Reduction ratio r", "Integration strategy", "Stages"):
        assert f"## {title}" in markdown
    for paper in ("23.30", "22.28", "22.25", "22.23", "23.04"):
        assert paper in markdown
    for name in ("accuracy_vs_reduction.png", "options_stages.png", "options_placement.png"):
        assert (out / name).stat().st_size > 1000
    rows = _read_csv(out / "results.csv")
    assert float(rows["resnet20-none"]["accuracy_std"]) == pytest.approx(0.01)
    # the stand-in adds the same bonus to every seed: differences have no spread
    row = rows["resnet20-se-r4-avg-sigmoid-pre-stages3"]
    assert float(row["diff_low"]) == pytest.approx(float(row["diff_high"]))


def test_rerun_with_other_settings_or_foreign_directory_is_refused(tmp_path, stand_in):
    out = tmp_path / "abl"
    run_ablation(out, **{**TINY, "seeds": 1})
    with pytest.raises(ValueError, match="other settings: epochs 2"):
        run_ablation(out, **{**TINY, "seeds": 1, "epochs": 2})
    # more seeds reuse the finished one
    assert run_ablation(out, **TINY).skipped == 2
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty and holds no ablation"):
        run_ablation(foreign, **TINY)


def test_cli_ablate_prints_rows_and_refuses_in_one_line(tmp_path, stand_in, capsys):
    out = tmp_path / "abl"
    args = ["ablate", "--out", str(out), "--reduction", "4", "8", "--seeds", "2",
            "--synthetic-size", "140", "--image-size", "16", "--epochs", "1", "--quiet"]  # fmt: skip
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "emotion_cnn-none: accuracy" in printed and "emotion_cnn-se-r4-avg-sigmoid" in printed
    assert "wrote" in printed and (out / "results.csv").is_file()
    assert "Command: `senet ablate --out" in (out / "ablation.md").read_text()
    assert cli.main([*args[:-1], "--placement", "pre"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "`placements` must be" in error


def test_hard_difficulty_is_passed_through_or_refused():
    cell = Cell("emotion_cnn", "se", 8.0, "avg", "sigmoid")
    settings = ablate.Settings(difficulty="hard")
    fields = {f.name for f in dataclasses.fields(training.TrainConfig)}
    if "synthetic_difficulty" in fields:
        assert ablate.cell_config(cell, 0, settings).synthetic_difficulty == "hard"
    else:
        with pytest.raises(ValueError, match="synthetic_difficulty"):
            ablate.cell_config(cell, 0, settings)
    config = ablate.cell_config(cell, 3, ablate.Settings())
    assert config.model_options == {"attention_options": {"squeeze": "avg", "gate": "sigmoid"}}
    assert config.seed == 3 and np.isclose(config.reduction, 8)


def test_a_grid_over_kinds_reports_the_kind_only(tmp_path, stand_in):
    # ECA and sSE take no reduction or squeeze (None): that is not a second value, so the
    # report has no reduction or squeeze table holding the base row alone
    out = tmp_path / "abl"
    run_ablation(out, attentions=("se", "eca", "sse"), **{**TINY, "seeds": 2})
    markdown = (out / "ablation.md").read_text()
    assert "## Attention kind" in markdown
    assert "## Reduction ratio r" not in markdown and "## Squeeze operator" not in markdown
    assert (out / "options_attention.png").exists()
    assert not (out / "accuracy_vs_reduction.png").exists()


def test_a_manifest_written_before_the_task_setting_still_resumes(tmp_path):
    import dataclasses

    settings = ablate.Settings(epochs=1)
    old = {k: v for k, v in dataclasses.asdict(settings).items() if k != "task"}
    (tmp_path / "ablation.json").write_text(json.dumps({"settings": old}))
    ablate._open_out_dir(tmp_path, settings)  # the default task: the same settings
    with pytest.raises(ValueError, match="other settings: epochs 2"):
        ablate._open_out_dir(tmp_path, ablate.Settings(epochs=2))
