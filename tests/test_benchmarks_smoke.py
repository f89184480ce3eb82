"""Smoke runs of the benchmark scripts' --quick modes (no timings asserted)."""

import importlib.util
import json
from pathlib import Path

import pytest

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


def test_ablations_doc_collects_the_reports_without_typing_numbers(tmp_path, capsys):
    out = tmp_path / "abl"
    (out / "emotion_cnn").mkdir(parents=True)
    (out / "emotion_cnn" / "reduction.md").write_text(
        "# Attention ablation\n\n## Setup\n\nData: `synthetic` (hard).\n\n"
        f"Command: `senet ablate --out {out}/emotion_cnn --reduction 8 2`\n\n"
        "## Reduction ratio\n\n| r | error |\n| --- | --- |\n| 8 | 20.1 |\n\n"
        "![plot](accuracy_vs_reduction.png)\n\n## All cells\n\n| long | table |\n"
    )
    (out / "emotion_cnn" / "accuracy_vs_reduction.png").write_bytes(b"png")
    (out / "focus.md").write_text("| method | focus |\n| --- | --- |\n| gradcam | 9.9 |\n")
    assert _script("ablations_doc").main([str(out), "--plots", str(tmp_path / "img")]) == 0
    printed = capsys.readouterr().out
    assert "| 8 | 20.1 |" in printed and "| gradcam | 9.9 |" in printed
    assert "Data: `synthetic` (hard)." in printed
    assert "`senet ablate --out ablations/emotion_cnn --reduction 8 2`" in printed
    assert "| long | table |" not in printed  # the per-cell table stays in the reports
    assert "*Not run: " in printed  # the reports that are missing say so
    assert (tmp_path / "img" / "emotion_cnn-reduction-accuracy_vs_reduction.png").exists()
    assert "](img/emotion_cnn-reduction-accuracy_vs_reduction.png)" in printed


@pytest.mark.slow  # times every runtime
def test_bench_runtimes_quick(tmp_path, capsys):
    if not all(importlib.util.find_spec(m) for m in ("tf2onnx", "onnxruntime")):
        pytest.skip("ONNX export needs the optional export extra")
    out = tmp_path / "runtimes.json"
    assert _script("bench_runtimes").main(["--quick", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    for runtime in ("Keras", "Keras XLA", "TFLite float32", "ONNX Runtime"):
        assert f"| {runtime} | 1 | 5 |" in printed
    (result,) = json.loads(out.read_text())
    entry = result["batches"]["1"]
    # each runtime's overhead is the median of its own paired rounds
    for runtime, overhead in entry["overhead_pct"].items():
        plain = entry["timed"][f"{runtime} plain"]["times_ms"]
        se = entry["timed"][f"{runtime} se"]["times_ms"]
        ratios = sorted(s / p for s, p in zip(se, plain, strict=True))
        assert len(ratios) == 5 and overhead == pytest.approx(100 * (ratios[2] - 1))
    assert result["sizes"]["TFLite float32 se"] > result["sizes"]["TFLite float32 plain"]
