"""What SE costs in the emotion pipeline: training throughput and end-to-end face prediction.

Three parts, each timed round-robin in one process (every round times every configuration
once, the starting one rotating, so load that drifts hits all alike; medians reported):

* ``train``: steady-state training steps of ``emotion_cnn`` with ``attention=None`` and
  ``"se"`` at batch 64 on 48x48 synthetic faces: ``model.train_on_batch`` (Keras' compiled
  train function, the step ``fit`` runs), compiled as ``senet.train`` compiles (Adam, sparse
  cross-entropy, accuracy), with XLA off (``senet train``'s default: op determinism turns
  XLA off) and on (Keras' ``jit_compile="auto"`` without determinism). Images/s and the
  SE/plain ratio (median of the per-round ratios).
* ``predict``: ``senet.predict.predict_faces`` on one 640x480 BGR frame with one face
  (the path ``senet predict`` runs per image and video frame), the model saved as
  ``.keras`` and loaded once like ``senet predict`` does. Split into detection
  (``detect_faces``) and the model part (``predict_faces`` with the boxes given: crop,
  resize, forward), plus the whole call; frames/s from the whole call.
* ``levers``: what could bring the frame rate up: detector options (downscaled copy
  ``max_side``, ``scale_factor``, ``min_size``) on the same frame, with whether the face is
  still found; and ways to run the model on one crop (``predict.py``'s ``tf.function``,
  ``model.predict``, ``predict_on_batch``, eager ``model(x)``, ``tf.function`` with XLA).

The frame is built, nothing is downloaded: a 48x48 face from ``synthetic_expressions``
upscaled to 200x200 and pasted on a smooth random background with pixel noise. Weights are
random (timing does not depend on them).

    python benchmarks/bench_pipeline.py            # full run, about 4-7 minutes on 2 cores
    python benchmarks/bench_pipeline.py --quick    # a smoke run, about 20 s
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

FACE_SIDE = 200
FACE_AT = (220, 140)  # (x, y) of the pasted face's top-left corner


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


# ---------------------------------------------------------------------------- training


def bench_train(batch: int, rounds: int, steps: int, jit_modes: list[bool]) -> dict:
    """Train-step time of plain vs SE emotion CNNs, for each XLA setting."""
    import keras

    from senet.bench import count_params, time_interleaved
    from senet.data import synthetic_expressions
    from senet.models import emotion_cnn

    x, y, _ = synthetic_expressions(batch, image_size=48, seed=0)
    models, runs = {}, {}
    for jit in jit_modes:
        for attention in (None, "se"):
            name = f"{'se' if attention else 'plain'}, XLA {'on' if jit else 'off'}"
            keras.utils.set_random_seed(0)
            model = emotion_cnn(attention=attention)
            model.compile(
                optimizer=keras.optimizers.Adam(1e-3),
                loss="sparse_categorical_crossentropy",
                metrics=["accuracy"],
                jit_compile=jit,
            )
            models[name] = model
            runs[name] = lambda model=model: model.train_on_batch(x, y)
    results = time_interleaved(runs, rounds=rounds, number=steps, warmup=3)
    for name, r in results.items():
        r["images_per_s"] = batch / (r["ms"] / 1e3)
        r["params"] = count_params(models[name])
        plain = results[name.replace("se,", "plain,")]
        r["vs_plain"] = statistics.median(
            a / b for a, b in zip(r["times_ms"], plain["times_ms"], strict=True)
        )
    return results


# --------------------------------------------------------------------------- prediction


def face_frame(
    seed: int = 0, index: int = 2, side: int = FACE_SIDE, at: tuple[int, int] = FACE_AT
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A 640x480 BGR frame with one upscaled synthetic face; returns (frame, face square).

    The face is face ``index`` of ``synthetic_expressions(14, image_size=48, seed=0)``,
    upscaled to ``side`` pixels and pasted with its top-left corner at ``at``; ``seed``
    draws the background. The default (third face) is one the frontal cascade finds; not
    every drawn face is.
    """
    import cv2

    from senet.data import synthetic_expressions

    rng = np.random.default_rng(seed)
    coarse = rng.uniform(60, 200, size=(12, 16, 3)).astype(np.float32)
    frame = cv2.resize(coarse, (640, 480), interpolation=cv2.INTER_CUBIC)
    frame += rng.normal(0, 6, size=frame.shape).astype(np.float32)
    faces, _, _ = synthetic_expressions(14, image_size=48, seed=0)
    face = cv2.resize(faces[index, ..., 0], (side, side), interpolation=cv2.INTER_CUBIC)
    x, y = at
    frame[y : y + side, x : x + side] = 255 * np.clip(face, 0, 1)[..., None]
    return np.clip(frame, 0, 255).astype(np.uint8), (x, y, side, side)


def recall_frames(count: int) -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
    """``count`` frames, each one of the 14 faces at 96-240 pixels somewhere in the frame."""
    rng = np.random.default_rng(1)
    frames = []
    for k in range(count):
        side = int(rng.integers(96, 241))
        at = (int(rng.integers(0, 640 - side)), int(rng.integers(0, 480 - side)))
        frames.append(face_frame(seed=100 + k, index=k % 14, side=side, at=at))
    return frames


def _iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


def _found(boxes, truth) -> str:
    """'yes' when one box overlaps the pasted face (IoU >= 0.3), with the count of boxes."""
    hits = sum(_iou(box, truth) >= 0.3 for box in boxes)
    return f"{'yes' if hits else 'no'} ({len(boxes)} box{'es' if len(boxes) != 1 else ''})"


def _saved_models(directory: str) -> dict:
    """Plain and SE emotion CNNs, saved as .keras and loaded back (as `senet predict` does)."""
    import keras

    from senet.layers import load_model
    from senet.models import emotion_cnn

    models = {}
    for attention in (None, "se"):
        keras.utils.set_random_seed(0)
        name = "se" if attention else "plain"
        path = os.path.join(directory, f"{name}.keras")
        emotion_cnn(attention=attention).save(path)
        models[name] = load_model(path)
    return models


def bench_predict(frame, truth, models: dict, rounds: int, number: int) -> dict:
    """Detection, model part and the whole predict_faces call, per model, round-robin."""
    from senet.bench import time_interleaved
    from senet.predict import detect_faces, predict_faces

    boxes = detect_faces(frame)
    found = _found(boxes, truth)
    if not boxes:
        # the cascade missed: still time the model on the pasted face
        boxes = [truth]
    runs = {}
    for name, model in models.items():
        runs[f"{name}: detection"] = lambda: detect_faces(frame)
        runs[f"{name}: model"] = lambda model=model: predict_faces(model, frame, boxes=boxes)
        runs[f"{name}: whole"] = lambda model=model: predict_faces(model, frame)
    results = time_interleaved(runs, rounds=rounds, number=number, warmup=3)
    faces = {name: len(predict_faces(model, frame)) for name, model in models.items()}
    return {"found": found, "boxes": [list(b) for b in boxes], "faces": faces, "times": results}


def bench_levers(frame, truth, model, rounds: int, number: int, recall: list) -> dict:
    """Detector options (time, and faces found in ``recall`` frames), model call variants."""
    import cv2
    import keras
    import tensorflow as tf

    from senet.bench import time_interleaved
    from senet.predict import crop_inputs, detect_faces, predictor

    options = {
        "default (max_side=320, scale_factor=1.15, min_size=0.1)": {},
        "max_side=None (full 640x480)": {"max_side": None},
        "max_side=240": {"max_side": 240},
        "max_side=160": {"max_side": 160},
        "scale_factor=1.1": {"scale_factor": 1.1},
        "scale_factor=1.3": {"scale_factor": 1.3},
        "min_size=0.2": {"min_size": 0.2},
        "min_size=0.3": {"min_size": 0.3},
        "max_side=240, scale_factor=1.3, min_size=0.2": {
            "max_side": 240,
            "scale_factor": 1.3,
            "min_size": 0.2,
        },
    }
    threads = cv2.getNumThreads()

    def one_thread(**o):
        # OpenCV parallelises the cascade over its thread pool; on 2 busy cores one thread
        # may lose less to contention
        cv2.setNumThreads(1)
        try:
            return detect_faces(frame, **o)
        finally:
            cv2.setNumThreads(threads)

    runs = {name: (lambda o=o: detect_faces(frame, **o)) for name, o in options.items()}
    runs[f"default, cv2.setNumThreads(1) (default {threads})"] = one_thread
    detection = time_interleaved(runs, rounds=rounds, number=number, warmup=2)
    for name, o in options.items():
        detection[name]["found"] = _found(detect_faces(frame, **o), truth)
        detection[name]["recall"] = sum(
            any(_iou(box, face) >= 0.3 for box in detect_faces(image, **o))
            for image, face in recall
        )
    single = f"default, cv2.setNumThreads(1) (default {threads})"
    detection[single]["found"] = _found(one_thread(), truth)
    detection[single]["recall"] = detection[next(iter(options))]["recall"]

    crop = crop_inputs(frame, [truth], 48, 1)
    spec = tf.TensorSpec((None, 48, 48, 1), tf.float32)
    xla = tf.function(lambda t: model(t, training=False), input_signature=[spec], jit_compile=True)
    predict_batch = predictor(model)
    ways = {
        "predict.py: tf.function": lambda: predict_batch(crop),
        "tf.function, jit_compile=True (XLA)": lambda: xla(crop).numpy(),
        "model.predict_on_batch": lambda: model.predict_on_batch(crop),
        "eager model(x)": lambda: keras.ops.convert_to_numpy(model(crop, training=False)),
        "model.predict": lambda: model.predict(crop, verbose=0),
        "crop + resize only (crop_inputs)": lambda: crop_inputs(frame, [truth], 48, 1),
    }
    model_ways = time_interleaved(ways, rounds=rounds, number=number, warmup=2)
    return {"detection": detection, "model": model_ways, "recall_frames": len(recall)}


# ------------------------------------------------------------------------------ report


def _print_train(result: dict, batch: int, rounds: int, steps: int, load: str) -> None:
    print(f"\n### Training throughput, emotion_cnn, batch {batch}, 48x48x1\n")
    print(f"Load average (1, 5, 15 min) after this part: {load}.\n")
    print(f"| model | params | ms per step (IQR), {rounds} rounds x {steps} steps | images/s |")
    print("|---|---:|---:|---:|")
    for name, r in result.items():
        q1, q3 = r["iqr_ms"]
        print(
            f"| {name} | {r['params']:,} | {r['ms']:.1f} ({q1:.1f}-{q3:.1f}) | "
            f"{r['images_per_s']:,.0f} |"
        )
    ratios = [
        f"{name.split(', ')[1]} {r['vs_plain']:.3f}"
        for name, r in result.items()
        if name.startswith("se")
    ]
    print(f"\nSE / plain step time (median of the per-round ratios): {', '.join(ratios)}.")


def _print_predict(result: dict, rounds: int, number: int, load: str) -> None:
    print("\n### End to end: predict_faces on a 640x480 frame with one face\n")
    print(
        f"Load average after this part: {load}. Face found by the cascade with the default "
        f"options: {result['found']}; faces returned per model: {result['faces']}.\n"
    )
    print(
        "| model | detection ms | model ms (crop, resize, forward) | whole call ms (IQR) | "
        "frames/s | sum of parts ms |\n|---|---:|---:|---:|---:|---:|"
    )
    times = result["times"]
    for name in ("plain", "se"):
        detect, model, whole = (
            times[f"{name}: {part}"] for part in ("detection", "model", "whole")
        )
        q1, q3 = whole["iqr_ms"]
        print(
            f"| {name} | {detect['ms']:.2f} | {model['ms']:.2f} | {whole['ms']:.2f} "
            f"({q1:.2f}-{q3:.2f}) | {1e3 / whole['ms']:.0f} | {detect['ms'] + model['ms']:.2f} |"
        )
    se, plain = times["se: whole"]["ms"], times["plain: whole"]["ms"]
    print(
        f"\n{rounds} rounds, each sample the mean of {number} calls; SE / plain whole call: "
        f"{se / plain:.3f}; model part: "
        f"{times['se: model']['ms'] / times['plain: model']['ms']:.3f}."
    )


def _print_levers(result: dict, rounds: int, number: int, load: str) -> None:
    print("\n### Levers for the frame rate\n")
    print(f"Load average after this part: {load}. {rounds} rounds x {number} calls.\n")
    count = result["recall_frames"]
    print(
        f"| detector options | detection ms (IQR) | vs default | face found | "
        f"faces found in {count} other frames |\n|---|---:|---:|---|---:|"
    )
    for name, r in result["detection"].items():
        q1, q3 = r["iqr_ms"]
        print(
            f"| {name} | {r['ms']:.2f} ({q1:.2f}-{q3:.2f}) | {r['paired_ratio']:.2f}x | "
            f"{r['found']} | {r['recall']} |"
        )
    print(
        f"\n'Other frames': {count} frames, each one of the 14 synthetic faces (not all of which "
        "the cascade finds at any setting) upscaled to 96-240 pixels at a random place; "
        "'found' means a box with IoU >= 0.3."
    )
    print("\n| model on one 48x48 crop (SE model) | ms (IQR) | vs predict.py |")
    print("|---|---:|---:|")
    for name, r in result["model"].items():
        q1, q3 = r["iqr_ms"]
        print(f"| {name} | {r['ms']:.2f} ({q1:.2f}-{q3:.2f}) | {r['paired_ratio']:.2f}x |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds: a smoke run")
    parser.add_argument("--parts", nargs="+", choices=("train", "predict", "levers"), default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, help="rounds of each part (default 15; quick 1)")
    parser.add_argument("--steps", type=int, help="train steps a sample (default 5; quick 1)")
    parser.add_argument("--calls", type=int, help="predict calls a sample (default 20; quick 1)")
    parser.add_argument(
        "--xla", choices=("off", "on", "both"), help="train with XLA (default both; quick off)"
    )
    parser.add_argument("--json", help="also write every sample to this file")
    args = parser.parse_args(argv)
    parts = args.parts or ["train", "predict", "levers"]
    rounds = args.rounds or (1 if args.quick else 15)
    steps = args.steps or (1 if args.quick else 5)
    calls = args.calls or (1 if args.quick else 20)
    xla = args.xla or ("off" if args.quick else "both")
    jit_modes = {"off": [False], "on": [True], "both": [False, True]}[xla]

    from senet.bench import machine_info

    started = time.time()
    info = machine_info()
    load_before = _load()
    out: dict = {"machine": info, "load_average": {"before": load_before}}
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
    print("\n## Emotion pipeline: plain vs SE emotion_cnn (synthetic data, random weights)\n")

    if "train" in parts:
        out["train"] = bench_train(args.batch_size, rounds, steps, jit_modes)
        out["load_average"]["train"] = _load()
    if "predict" in parts or "levers" in parts:
        frame, truth = face_frame()
        with tempfile.TemporaryDirectory() as directory:
            models = _saved_models(directory)
        if "predict" in parts:
            out["predict"] = bench_predict(frame, truth, models, rounds, calls)
            out["load_average"]["predict"] = _load()
        if "levers" in parts:
            recall = recall_frames(14 if args.quick else 70)
            out["levers"] = bench_levers(frame, truth, models["se"], rounds, calls, recall)
            out["load_average"]["levers"] = _load()

    print(
        f"Machine: {info['cpu']}, {info['cores']} cores; {info['date']}; TensorFlow "
        f"{info.get('tensorflow', '-')}, Keras {info['keras']}, OpenCV "
        f"{__import__('cv2').__version__}; load average (1, 5, 15 min) before: {load_before}; "
        f"{time.time() - started:.0f} s.\n"
    )
    print(f"Command: `{command}`")
    if "train" in out:
        _print_train(out["train"], args.batch_size, rounds, steps, out["load_average"]["train"])
    if "predict" in out:
        _print_predict(out["predict"], rounds, calls, out["load_average"]["predict"])
    if "levers" in out:
        _print_levers(out["levers"], rounds, calls, out["load_average"]["levers"])
    if args.json:
        out["command"] = command
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
