"""Smoke runs of the benchmark scripts' --quick modes (no timings asserted)."""

import importlib.util
import json
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _script(name):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_data_quick(tmp_path, capsys):
    out = tmp_path / "data.json"
    assert _script("bench_data").main(["--quick", "-n", "140", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| `synthetic_expressions(140, image_size=48)` |" in printed
    assert "Command: `python " in printed and "Machine: " in printed
    result = json.loads(out.read_text())
    assert result["synthetic"]["n"] == 140
    # 140 images in batches of 64: 3 batches an epoch, augmentation on or off
    assert {r["batches"] for r in result["pipelines"].values()} == {3}


def test_bench_pipeline_quick_predict(tmp_path, capsys):
    # only the end-to-end part: the train and levers parts trace and compile a train step
    # and several predictors (20-30 s here) and run the same helpers
    out = tmp_path / "pipeline.json"
    argv = ["--quick", "--parts", "predict", "--json", str(out)]
    assert _script("bench_pipeline").main(argv) == 0
    printed = capsys.readouterr().out
    assert "### End to end" in printed and "| se |" in printed
    result = json.loads(out.read_text())
    # the built frame's face is found, and both models return it
    assert result["predict"]["found"].startswith("yes")
    assert result["predict"]["faces"] == {"plain": 1, "se": 1}
