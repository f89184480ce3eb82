"""Where the emotion CNN looks, over seeds: every heatmap method at every candidate layer.

Reads the plain and SE emotion CNNs an ablation trained (``senet ablate`` with
``--attention se --seeds N``; ``benchmarks/ablations.sh`` makes them) and, for each seed,
scores the maps of every method senet has (:data:`senet.explain.METHODS`) at each layer the
demo chooses from (:data:`senet.demo.CANDIDATE_LAYERS`) on the first ``--images`` test
faces:

- energy in parts: the share of each map's energy on the eyes, brows and mouth
  (:func:`senet.explain.focus_score`), for the trained model and for a copy with all
  weights re-initialised (the sanity check of Adebayo et al. 2018, same classes explained);
- whether the method passes the sanity check for that model and seed
  (:func:`senet.explain.sanity_passes`);
- the SE - plain difference, paired by seed, with its 95% t interval.

The chance level (the parts' area share) and the image-blind map (the training set's mean
part mask) are printed beside. Writes a Markdown table to stdout and every number to
``--json``.

    python benchmarks/bench_focus.py ablations/emotion_cnn --seeds 5 --json focus.json
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MODELS = {"plain": "emotion_cnn-none", "se": "emotion_cnn-se-r8-avg-sigmoid"}


def _pct(mean: float, std: float | None) -> str:
    return f"{100 * mean:.1f} ± {100 * std:.1f}" if std is not None else f"{100 * mean:.1f}"


def score_seed(root: Path, seed: int, images: int) -> dict:
    """Every method x layer's focus on the trained and randomised plain and SE models."""
    import numpy as np

    from senet import runs
    from senet.demo import CANDIDATE_LAYERS, FOCUS_STEPS, PARTS
    from senet.explain import (
        METHODS,
        focus_score,
        grad_cam,
        image_blind_map,
        probabilities,
        randomize_model,
        sanity_passes,
    )
    from senet.layers import load_model
    from senet.train import TrainConfig, load_run_data

    def parts_of(images_set):
        return np.logical_or.reduce([images_set.masks[part] for part in PARTS])

    out: dict = {"seed": seed, "models": {}}
    for name, cell in MODELS.items():
        run_dir = root / "runs" / f"{cell}-seed{seed}"
        config = TrainConfig.from_dict(runs.read_config(run_dir))
        sets = load_run_data(config)
        test = sets["test"].subset(np.arange(min(images, len(sets["test"]))))
        parts = parts_of(test)
        out["images"] = len(test)
        out["image_blind"] = focus_score(image_blind_map(parts_of(sets["train"])), parts)
        model = load_model(run_dir / runs.MODEL_FILE)
        random_model = randomize_model(model, seed=seed)
        classes = probabilities(model, test.x).argmax(axis=1)
        entry = {"accuracy": runs.read_metrics(run_dir)["test_accuracy"], "maps": {}}
        for method in METHODS:
            for layer in CANDIDATE_LAYERS:
                options = {"layer": layer, "method": method, "steps": FOCUS_STEPS}
                options.update(class_index=classes, batch_size=128)
                trained = focus_score(grad_cam(model, test.x, **options), parts)
                randomized = focus_score(grad_cam(random_model, test.x, **options), parts)
                entry["maps"][f"{method}@{layer}"] = {
                    "trained": trained["energy_in_parts"],
                    "randomized": randomized["energy_in_parts"],
                    "area_fraction": trained["area_fraction"],
                    "passes": sanity_passes(trained, randomized),
                }
        out["models"][name] = entry
    return out


def table(results: list[dict]) -> str:
    from senet.stats import mean_std, paired_interval

    seeds = [r["seed"] for r in results]
    keys = list(results[0]["models"]["plain"]["maps"])
    lines = [
        "| method @ layer | plain: trained | plain: random | SE: trained | SE: random | "
        "SE - plain (95% interval) | sanity passes plain / SE |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in keys:
        cells, values = [], {}
        for name in ("plain", "se"):
            entries = [r["models"][name]["maps"][key] for r in results]
            values[name] = {s: e["trained"] for s, e in zip(seeds, entries, strict=True)}
            cells.append(_pct(*mean_std([e["trained"] for e in entries])))
            cells.append(_pct(*mean_std([e["randomized"] for e in entries])))
        diff, low, high, n = paired_interval(values["se"], values["plain"])
        if low is None:
            gap = f"{100 * diff:+.1f}"
        else:
            verdict = "within noise" if low <= 0 <= high else "SE higher" if low > 0 else "SE lower"
            gap = f"{100 * diff:+.1f} ({100 * low:+.1f} to {100 * high:+.1f}), {verdict}"
        passes = [
            sum(r["models"][name]["maps"][key]["passes"] for r in results)
            for name in ("plain", "se")
        ]
        lines.append(f"| {key} | {' | '.join(cells)} | {gap} | {passes[0]}/{n} / {passes[1]}/{n} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ablation", type=Path, help="the ablation directory (OUT of senet ablate)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0 .. N-1 (5)")
    parser.add_argument("--images", type=int, default=300, help="test faces per seed (300)")
    parser.add_argument("--json", type=Path, help="write every number here")
    args = parser.parse_args(argv)

    from senet.bench import machine_info
    from senet.stats import mean_std

    started = time.perf_counter()
    results = []
    for seed in range(args.seeds):
        results.append(score_seed(args.ablation, seed, args.images))
        print(f"seed {seed} scored ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")

    area = mean_std([r["models"]["plain"]["maps"][k]["area_fraction"] for r in results for k in
                     list(results[0]["models"]["plain"]["maps"])[:1]])[0]  # fmt: skip
    blind = mean_std([r["image_blind"]["energy_in_parts"] for r in results])[0]
    accuracy = {
        name: _pct(*mean_std([r["models"][name]["accuracy"] for r in results]))
        for name in ("plain", "se")
    }
    info = machine_info()
    print(f"Machine: {info.get('cpu', '?')}, {info.get('cores', '?')} cores; "
          f"{time.strftime('%Y-%m-%d')}; {time.perf_counter() - started:.0f} s.")  # fmt: skip
    print(f"Command: `python benchmarks/bench_focus.py {shlex.join(sys.argv[1:])}`\n")
    print(
        f"{len(results)} seeds x {results[0]['images']} test faces of the hard synthetic set. "
        f"Test accuracy: plain {accuracy['plain']}%, SE {accuracy['se']}%. Energy in parts "
        f"(%, mean ± std over seeds): chance (the parts' area) {100 * area:.1f}, image-blind "
        f"map {100 * blind:.1f}.\n"
    )
    print(table(results))


if __name__ == "__main__":
    main()
