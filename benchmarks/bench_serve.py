"""Latency and throughput of ``senet serve``, next to ``senet predict``'s time per face.

For each runtime (LiteRT, the default, and Keras) a server is started as a user starts it
(``senet serve MODEL --port 0 --runtime R``, its own process, a fresh cache so the first
export is made, then not timed), warmed up with 20 requests, and sent one photo:

* 1 client: ``--requests`` requests one after the other;
* 8 clients: ``--requests`` requests from 8 threads, each waiting for its answer.

It prints p50 and p95 latency (ms, request sent to JSON parsed, at the client) and the
throughput (answered requests per second of wall time). ``POST /predict`` is timed, and
``POST /explain`` (the heatmap: a Keras gradient pass) with 1 client.

Beside them, in this process, ``senet predict``'s path on the same photo
(:func:`senet.predict.predict_faces`: decode not included, Haar detection, crop, the model):
the median time per face over ``--requests`` calls, and the model alone (one face's crop, the
runtime's call), for the same two runtimes.

    python benchmarks/bench_serve.py MODEL.keras [--baseline PLAIN.keras] [--photo PHOTO]
        [--requests 200] [--quick] [--json FILE]

``--baseline`` (the same network without SE, e.g. the demo's ``runs/baseline/model.keras``
beside ``runs/se/model.keras``) adds SE's cost per face in each runtime: the two models
alone on one face's crop, timed interleaved.

Without ``--photo`` the photo is the synthetic face of the tests (640x480, one face).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _photo_bytes(path: str | None) -> bytes:
    if path:
        return Path(path).read_bytes()
    import cv2

    sys.path.insert(0, str(HERE.parent / "tests"))
    from photos import face_photo

    return cv2.imencode(".jpg", face_photo())[1].tobytes()


def _start(model: str, runtime: str, cache: str) -> tuple[subprocess.Popen, str, Path]:
    log = Path(cache) / f"serve-{runtime}.log"
    env = {**os.environ, "SENET_CACHE_DIR": cache, "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, "-m", "senet", "serve", model, "--port", "0", "--runtime", runtime]
    with open(log, "w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=output, env=env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        found = re.search(r"on (http://127\.0\.0\.1:\d+/)", log.read_text())
        if found:
            return process, found.group(1), log
        time.sleep(0.2)
    process.kill()
    raise SystemExit(f"the {runtime} server did not start:\n{log.read_text()[-2000:]}")


def _timed_posts(url: str, raw: bytes, count: int, clients: int, route: str) -> dict:
    import httpx

    latencies: list[float] = []
    failures: list[int] = []
    lock = threading.Lock()
    per_client = [count // clients + (1 if k < count % clients else 0) for k in range(clients)]

    def loop(n: int) -> None:
        # TCP_NODELAY as browsers set it: without it the body waits for the ACK of the
        # headers, which the server delays by 40 ms (Nagle and delayed ACK)
        nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        transport = httpx.HTTPTransport(socket_options=nodelay)
        with httpx.Client(timeout=120, transport=transport) as client:
            for _ in range(n):
                start = time.perf_counter()
                response = client.post(url + route, files={"file": ("face.jpg", raw)})
                response.json()
                took = time.perf_counter() - start
                with lock:
                    if response.status_code == 200:
                        latencies.append(took)
                    else:
                        failures.append(response.status_code)

    threads = [threading.Thread(target=loop, args=(n,)) for n in per_client]
    wall = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - wall
    ms = np.asarray(latencies) * 1e3
    return {
        "route": route,
        "clients": clients,
        "requests": count,
        "failed": len(failures),
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "throughput_per_s": len(latencies) / wall,
    }


def _serve_rows(model: str, raw: bytes, runtime: str, requests: int) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="senet-bench-serve-") as cache:
        process, url, _ = _start(model, runtime, cache)
        try:
            _timed_posts(url, raw, 20, 1, "predict")  # warm-up
            rows = [
                _timed_posts(url, raw, requests, 1, "predict"),
                _timed_posts(url, raw, requests, 8, "predict"),
                _timed_posts(url, raw, max(requests // 4, 10), 1, "explain"),
            ]
        finally:
            process.terminate()
            process.wait(30)
    for row in rows:
        row["runtime"] = runtime
    return rows


def _predict_rows(model: str, raw: bytes, requests: int) -> list[dict]:
    """senet predict's path in this process: per face, and the model alone."""
    import warnings

    from senet.data.images import decode_image
    from senet.faces import crop_inputs, detect_faces
    from senet.inference import load_for_inference, predictor
    from senet.predict import predict_faces
    from senet.runtime import RUNTIMES, runtime_model

    image = decode_image(raw, "photo")
    rows = []
    with tempfile.TemporaryDirectory(prefix="senet-bench-predict-") as cache:
        os.environ["SENET_CACHE_DIR"] = cache
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            keras_model, inputs, names = load_for_inference(model)
        for runtime in RUNTIMES:
            runner = runtime_model(model, runtime, keras_model, say=lambda line: None)
            boxes = detect_faces(image)
            crop = crop_inputs(image, boxes[:1], inputs.size, inputs.channels, grey=inputs.grey)
            call = predictor(runner)
            for _ in range(10):
                predict_faces(runner, image, names, inputs=inputs)
                call(crop)
            whole, alone = [], []
            for _ in range(requests):
                start = time.perf_counter()
                faces = predict_faces(runner, image, names, inputs=inputs)
                whole.append((time.perf_counter() - start) / max(len(faces), 1))
                start = time.perf_counter()
                call(crop)
                alone.append(time.perf_counter() - start)
            rows.append(
                {
                    "runtime": runtime,
                    "faces": len(boxes),
                    "per_face_ms": 1e3 * statistics.median(whole),
                    "model_ms": 1e3 * statistics.median(alone),
                }
            )
    return rows


def _se_cost_rows(model: str, baseline: str, raw: bytes, rounds: int) -> list[dict]:
    """SE's cost per face: the model alone on one face's crop, the SE model against the
    plain one, timed interleaved (:func:`senet.bench.time_interleaved`, 20 calls a
    sample), in each runtime."""
    import warnings

    from senet.bench import time_interleaved
    from senet.data.images import decode_image
    from senet.faces import crop_inputs, detect_faces
    from senet.inference import load_for_inference, predictor
    from senet.runtime import RUNTIMES, runtime_model

    image = decode_image(raw, "photo")
    rows = []
    with tempfile.TemporaryDirectory(prefix="senet-bench-se-") as cache:
        os.environ["SENET_CACHE_DIR"] = cache
        loaded = {}
        for name, path in (("plain", baseline), ("se", model)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                loaded[name] = (path, *load_for_inference(path)[:2])
        path, _, inputs = loaded["se"]
        crop = crop_inputs(image, detect_faces(image)[:1], inputs.size, inputs.channels)
        for runtime in RUNTIMES:
            calls = {}
            for name, (path, keras_model, _) in loaded.items():
                runner = runtime_model(path, runtime, keras_model, say=lambda line: None)
                call = predictor(runner)
                calls[name] = lambda call=call: call(crop)
            timed = time_interleaved(calls, rounds=rounds, warmup=20, number=20)
            rows.append(
                {
                    "runtime": runtime,
                    "plain_ms": timed["plain"]["ms"],
                    "se_ms": timed["se"]["ms"],
                    "se_overhead": timed["se"]["paired_ratio"] - 1,
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a .keras face classifier")
    parser.add_argument("--photo", help="the photo sent (default: the tests' synthetic face)")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--runtimes", nargs="+", default=["litert", "keras"])
    parser.add_argument(
        "--baseline",
        help="the same network without SE (.keras): SE's cost per face in each runtime",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: 16 requests")
    parser.add_argument("--json", metavar="FILE", help="also write every number here")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests = 16
    raw = _photo_bytes(args.photo)
    serve_rows = [
        row for r in args.runtimes for row in _serve_rows(args.model, raw, r, args.requests)
    ]
    predict_rows = _predict_rows(args.model, raw, args.requests)
    rounds = 5 if args.quick else 100
    se_rows = _se_cost_rows(args.model, args.baseline, raw, rounds) if args.baseline else []
    from senet.bench import machine_info

    machine = machine_info()
    if args.json:
        result = {"machine": machine, "serve": serve_rows, "predict": predict_rows, "se": se_rows}
        Path(args.json).write_text(json.dumps(result, indent=2))
    command = " ".join(argv if argv is not None else sys.argv[1:])
    print(
        f"{machine['cpu']}, {machine['cores']} cores, {machine['date']}, load average "
        f"{machine.get('load_average', '?')}; `python benchmarks/bench_serve.py {command}`\n"
    )
    print("| runtime | route | clients | requests | p50 ms | p95 ms | requests/s | failed |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for row in serve_rows:
        print(
            f"| {row['runtime']} | POST /{row['route']} | {row['clients']} | {row['requests']} "
            f"| {row['p50_ms']:.1f} | {row['p95_ms']:.1f} | {row['throughput_per_s']:.1f} "
            f"| {row['failed']} |"
        )
    print("\n| senet predict's path | ms per face (detect + crop + model) | model alone, 1 face |")
    print("|---|---:|---:|")
    for row in predict_rows:
        print(f"| {row['runtime']} | {row['per_face_ms']:.2f} | {row['model_ms']:.3f} |")
    if se_rows:
        print("\n| runtime | plain model, 1 face (ms) | SE model (ms) | SE overhead (paired) |")
        print("|---|---:|---:|---:|")
        for row in se_rows:
            print(
                f"| {row['runtime']} | {row['plain_ms']:.3f} | {row['se_ms']:.3f} "
                f"| {100 * row['se_overhead']:+.1f}% |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
