"""`senet serve` in process: the JSON API, its guards and its errors, and the LiteRT runtime
it runs by default (shared with `senet predict --runtime litert`).

The model is a small untrained SE emotion CNN carrying a training record (synthetic data,
class names of its own), so the card and the answers can be told from FER2013's defaults.
References: `senet predict --json` on the same photo, senet.explain.grad_cam on the same
crops, and the bytes of the files the tests build.
"""

import asyncio
import base64
import io
import json
import sys
import threading

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi", reason='senet serve needs pip install "senet[serve]"')

from fastapi.testclient import TestClient  # noqa: E402

from photos import FACE_AT, face_photo  # noqa: E402
from senet.cli import main  # noqa: E402
from senet.serve import Limits, Service, create_app, sniff  # noqa: E402
from senet.serve.app import BodyLimit  # noqa: E402
from serving import CLASSES, SIDE, png_claiming, small_classifier  # noqa: E402


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return small_classifier(tmp_path_factory.mktemp("serve") / "model.keras")


@pytest.fixture(scope="module")
def photo_bytes():
    return cv2.imencode(".jpg", face_photo())[1].tobytes()


@pytest.fixture(scope="module")
def service(model_file):
    with pytest.warns(UserWarning, match="synthetic"):
        return Service(
            model_file,
            runtime="keras",
            limits=Limits(max_upload_bytes=2 << 20, max_pixels=4_000_000, timeout=30),
        )


@pytest.fixture(scope="module")
def client(service):
    with TestClient(create_app(service)) as client:
        yield client


def _post(client, path, raw, name="face.jpg", **params):
    return client.post(path, files={"file": (name, raw, "image/jpeg")}, params=params)


# --------------------------------------------------------------------------- the API


def test_health_and_the_model_card_say_what_the_model_is(client, model_file):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["runtime"] == "keras"
    card = client.get("/model").json()
    assert card["classes"] == CLASSES  # the model's record, not FER2013's names
    assert card["input"] == {"size": SIDE, "channels": 1, "range": [0.0, 1.0], "colour": "grey"}
    assert card["trained_on"]["dataset"] == "synthetic"
    assert any("synthetic cartoon faces" in text for text in card["warnings"])
    assert str(model_file.parent) not in json.dumps(card)  # no server paths
    assert card["explain"]["available"] and card["explain"]["method"] == "gradcam"
    assert card["explain"]["layer"]  # the layer the heatmaps come from, named


def test_predict_answers_what_senet_predict_json_prints(
    client, photo_bytes, model_file, tmp_path, capsys
):
    answer = _post(client, "/predict", photo_bytes).json()
    photo = tmp_path / "face.jpg"
    photo.write_bytes(photo_bytes)
    assert main(["predict", str(model_file), str(photo), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert answer["path"] == "face.jpg" and answer["frame"] is None
    assert len(answer["faces"]) == len(printed["faces"]) == 1
    served, cli = answer["faces"][0], printed["faces"][0]
    assert served["box"] == cli["box"] and served["label"] == cli["label"]
    assert list(served["probabilities"]) == CLASSES
    np.testing.assert_allclose(
        list(served["probabilities"].values()), list(cli["probabilities"].values()), atol=1e-5
    )
    x, y, side = FACE_AT  # the box is around the drawn face
    bx, by, bw, bh = served["box"]
    assert bx < x + side // 2 < bx + bw and by < y + side // 2 < by + bh


def test_explain_gives_each_face_its_grad_cam_over_the_face(client, service, photo_bytes):
    from senet.explain import grad_cam, overlay
    from senet.faces import crop_inputs

    answer = _post(client, "/explain", photo_bytes).json()
    assert answer["method"] == "gradcam" and answer["layer"] == service.layer
    face = answer["faces"][0]
    assert face["target"] == face["label"]
    shown = cv2.imdecode(np.frombuffer(base64.b64decode(face["heatmap"]), np.uint8), 1)
    assert shown.shape == (224, 224, 3)
    # the reference: grad_cam on the same crop, drawn over the face the same way
    image = cv2.imdecode(np.frombuffer(photo_bytes, np.uint8), cv2.IMREAD_UNCHANGED)
    x = crop_inputs(image, [tuple(face["box"])], SIDE, 1)
    heatmap = grad_cam(service.keras_model, x, service.layer, [CLASSES.index(face["label"])])[0]
    bx, by, bw, bh = face["box"]
    crop = cv2.cvtColor(image[by : by + bh, bx : bx + bw], cv2.COLOR_BGR2RGB)
    expected = overlay(cv2.resize(crop, (224, 224), interpolation=cv2.INTER_AREA), heatmap)
    assert np.abs(cv2.cvtColor(shown, cv2.COLOR_BGR2RGB).astype(int) - expected).max() <= 2
    png = client.post("/explain", files={"file": ("f.jpg", photo_bytes)}, params={"format": "png"})
    assert png.headers["content-type"] == "image/png"
    picture = cv2.imdecode(np.frombuffer(png.content, np.uint8), 1)
    assert picture.shape == (480, 640, 3)


def test_the_page_and_its_script_are_served_under_a_strict_policy(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="file"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    script = client.get("/static/app.js")
    assert script.status_code == 200 and "/explain" in script.text
    assert client.get("/openapi.json").json()["paths"].keys() >= {
        "/predict",
        "/explain",
        "/model",
        "/health",
    }


# --------------------------------------------------------------------------- bad uploads


def test_bad_uploads_get_a_4xx_with_a_one_line_message(client, photo_bytes):
    cases = {
        "empty": (b"", 400, "empty"),
        "text": (b"hello, I am not an image\n" * 4, 415, "not an image"),
        "truncated": (photo_bytes[: len(photo_bytes) // 2], 400, "not a readable image"),
        "bomb": (png_claiming(10_000, 10_000), 413, "over the cap of 4000000 pixels"),
        "html": (b"<html><script>alert(1)</script></html>", 415, "not an image"),
    }
    for name, (raw, status, words) in cases.items():
        response = _post(client, "/predict", raw, name=f"{name}.jpg")
        assert response.status_code == status, (name, response.text)
        message = response.json()["error"]
        assert words in message and "\n" not in message and "Traceback" not in message
    assert _post(client, "/predict", photo_bytes).status_code == 200  # still answering


def test_an_oversized_body_is_refused_from_its_length_before_it_is_read(client):
    raw = b"\xff\xd8\xff" + b"\0" * (3 << 20)
    response = _post(client, "/predict", raw)
    assert response.status_code == 413
    assert "over the upload cap of 2097152 bytes" in response.json()["error"]


def test_requests_without_an_image_or_with_a_bad_option_say_so_in_json(client, photo_bytes):
    missing = client.post("/predict", data={"other": "x"})
    assert missing.status_code == 422 and "'file'" in missing.json()["error"]
    other = _post(client, "/explain", photo_bytes, method="attention").json()
    assert other["method"] == "attention" and other["layer"].endswith("_se")  # named
    bad = _post(client, "/explain", photo_bytes, method="shap")
    assert bad.status_code == 400 and "method" in bad.json()["error"]
    assert client.get("/nowhere").json() == {"error": "Not Found"}


def test_sniff_reads_the_bytes_not_the_name():
    assert sniff(b"\x89PNG\r\n\x1a\n....") == "png"
    assert sniff(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "webp"
    assert sniff(b"\xff\xd8\xff\xe0") == "jpeg"
    assert sniff(b"%PDF-1.7") is None and sniff(b"") is None


# --------------------------------------------------------------------------- guards


def _blocking(service, monkeypatch):
    """Make ``service.predict`` wait until the returned event is set."""
    release = threading.Event()
    entered = threading.Event()
    answer = service.predict

    def slow(raw, name="upload", **options):
        entered.set()
        release.wait(10)
        return answer(raw, name, **options)

    monkeypatch.setattr(service, "predict", slow)
    return entered, release


def test_a_full_server_answers_503_with_retry_after(model_file, photo_bytes, monkeypatch):
    with pytest.warns(UserWarning):
        service = Service(model_file, runtime="keras", limits=Limits(max_pending=1))
    entered, release = _blocking(service, monkeypatch)
    with TestClient(create_app(service)) as client:
        first = {}
        worker = threading.Thread(
            target=lambda: first.setdefault("r", _post(client, "/predict", photo_bytes))
        )
        worker.start()
        assert entered.wait(10)
        busy = _post(client, "/predict", photo_bytes)
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert "busy" in busy.json()["error"]
        release.set()
        worker.join(10)
        assert first["r"].status_code == 200
        assert _post(client, "/predict", photo_bytes).status_code == 200  # the slot is free


def test_a_slow_answer_is_504_and_its_slot_is_freed_when_it_ends(
    model_file, photo_bytes, monkeypatch
):
    with pytest.warns(UserWarning):
        service = Service(model_file, runtime="keras", limits=Limits(max_pending=1, timeout=0.3))
    entered, release = _blocking(service, monkeypatch)
    with TestClient(create_app(service)) as client:
        late = _post(client, "/predict", photo_bytes)
        assert late.status_code == 504 and "no answer within 0.3 s" in late.json()["error"]
        assert client.get("/health").json()["busy"] == 1  # the work still runs
        release.set()
        for _ in range(100):
            if client.get("/health").json()["busy"] == 0:
                break
            threading.Event().wait(0.05)
        assert client.get("/health").json()["busy"] == 0


def _run_asgi(app, messages, delay=0.0):
    """Send ``messages`` (request body parts) to ``app``; the response status and body."""
    sent = []

    async def receive():
        if not messages:
            await asyncio.sleep(3600)  # a client that stopped sending
        await asyncio.sleep(delay)
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/predict", "headers": []}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(body)


async def _reads_everything(scope, receive, send):
    """An app that reads the whole body, then answers 200 with its length."""
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = json.dumps({"size": size}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def test_a_streamed_body_is_cut_off_at_the_cap_and_a_stalled_one_times_out():
    guarded = BodyLimit(_reads_everything, max_bytes=100, body_timeout=0.2)
    parts = [{"type": "http.request", "body": b"x" * 60, "more_body": True} for _ in range(3)]
    status, body = _run_asgi(guarded, parts)  # no Content-Length: chunked
    assert status == 413 and "100 bytes" in body["error"]
    status, body = _run_asgi(guarded, [{"type": "http.request", "body": b"x", "more_body": True}])
    assert status == 408 and "stalled" in body["error"]
    status, body = _run_asgi(guarded, [{"type": "http.request", "body": b"x" * 100}])
    assert (status, body) == (200, {"size": 100})


# --------------------------------------------------------------------------- LiteRT


def test_litert_runtime_exports_once_into_the_cache_and_matches_keras(
    model_file, photo_bytes, service, tmp_path, monkeypatch
):
    monkeypatch.setenv("SENET_CACHE_DIR", str(tmp_path / "cache"))
    said = []
    with pytest.warns(UserWarning):
        fast = Service(model_file, runtime="litert", say=said.append)
    cached = list((tmp_path / "cache" / "litert").glob("*.tflite"))
    assert len(cached) == 1 and fast.engine == "tflite"
    from senet.runtime import file_digest

    assert cached[0].name.startswith(file_digest(model_file)[:32])
    assert said and "exporting" in said[0]
    served = fast.predict(photo_bytes)["faces"][0]
    reference = service.predict(photo_bytes)["faces"][0]
    assert served["box"] == reference["box"] and served["label"] == reference["label"]
    np.testing.assert_allclose(
        list(served["probabilities"].values()),
        list(reference["probabilities"].values()),
        atol=1e-4,
    )
    said.clear()
    with pytest.warns(UserWarning):
        Service(model_file, runtime="litert", say=said.append)
    assert said == []  # the second start found the file
    # a cached file that no longer opens (cut short) is made again, once
    from senet.runtime import runtime_model

    cached[0].write_bytes(cached[0].read_bytes()[:1000])
    again = runtime_model(model_file, "litert", say=said.append)
    assert [line.split(" ")[0] for line in said] == ["exporting", "exported:"]
    assert again.format == "tflite" and cached[0].stat().st_size > 1000
    # the exported file served on its own: its record (class names, training data) came
    # with it; no gradients, so no heatmaps
    with pytest.warns(UserWarning, match="synthetic"):
        exported = Service(cached[0])
    assert exported.card["classes"] == CLASSES and exported.card["format"] == "tflite"
    assert not exported.card["explain"]["available"]
    assert exported.predict(photo_bytes)["faces"][0]["label"] == reference["label"]


def test_predict_runtime_litert_prints_what_keras_prints(
    model_file, photo_bytes, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("SENET_CACHE_DIR", str(tmp_path / "cache"))
    photo = tmp_path / "face.jpg"
    photo.write_bytes(photo_bytes)
    results = {}
    for runtime in ("keras", "litert"):
        assert main(["predict", str(model_file), str(photo), "--json", "--runtime", runtime]) == 0
        captured = capsys.readouterr()
        results[runtime] = json.loads(captured.out)["faces"][0]
        assert "synthetic cartoon faces" in captured.err  # the record came along
    assert results["keras"]["label"] == results["litert"]["label"]
    assert list(results["litert"]["probabilities"]) == CLASSES


# --------------------------------------------------------------------------- the command


def test_serve_refuses_a_missing_model_and_a_busy_port_in_one_line(model_file, tmp_path, capsys):
    import socket

    assert main(["serve", str(tmp_path / "none.keras")]) == 2
    assert "none.keras" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", str(model_file), "--port", str(port), "--runtime", "keras"]) == 2
    error = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in error and error.count("\n") == 1


def test_serving_beyond_this_machine_is_warned_about(model_file, monkeypatch, capsys):
    import senet.serve

    monkeypatch.setattr(senet.serve, "Service", _Stop)
    assert main(["serve", str(model_file), "--host", "0.0.0.0", "--port", "0"]) == 2
    assert "no authentication" in capsys.readouterr().err


class _Stop:
    def __init__(self, *args, **kwargs):
        raise ValueError("stopped before serving")


def test_an_image_over_the_pixel_cap_is_refused_before_decoding(service):
    from senet.serve import UploadError

    with pytest.raises(UploadError, match="10000x10000") as caught:
        service.decode(png_claiming(10_000, 10_000), "big.png")
    assert caught.value.status == 413


def test_connections_are_accepted_without_nagle_delay():
    # uvicorn serves the socket through asyncio, which sets TCP_NODELAY on accepted
    # connections only when the listening socket says IPPROTO_TCP; without it, every answer
    # on a kept-alive connection waited 40 ms for the client's delayed ACK
    import socket

    from senet.serve import _listen

    sock = _listen("127.0.0.1", 0)
    seen = {}

    async def accept_one():
        accepted = asyncio.Event()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport):
                inner = transport.get_extra_info("socket")
                seen["nodelay"] = inner.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                transport.close()
                accepted.set()

        server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
        _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        await asyncio.wait_for(accepted.wait(), 10)
        writer.close()
        server.close()

    asyncio.run(accept_one())
    assert seen["nodelay"] == 1


# --------------------------------------------------------------------------- other tasks


def test_a_segmentation_model_answers_its_label_map_as_senet_predict_writes_it(
    photo_bytes, tmp_path, capsys
):
    from serving import PARTS, small_segmenter

    model = small_segmenter(tmp_path / "parts.keras")
    with pytest.warns(UserWarning, match="synthetic"):
        service = Service(model, runtime="keras")
    with TestClient(create_app(service)) as client:
        card = client.get("/model").json()
        assert card["task"] == "segmentation" and card["classes"] == PARTS
        assert not card["explain"]["available"]
        answer = _post(client, "/predict", photo_bytes).json()
        refused = _post(client, "/explain", photo_bytes)
    assert refused.status_code == 409 and "POST /predict" in refused.json()["error"]
    photo = tmp_path / "face.jpg"
    photo.write_bytes(photo_bytes)
    out = tmp_path / "masks"
    assert main(["predict", str(model), str(photo), "--annotate", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert answer["shape"] == printed["shape"] == [480, 640]
    assert answer["classes"] == printed["classes"]
    # the mask: a palette PNG whose pixels are the classes, as the file senet predict wrote
    from PIL import Image

    served = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["mask"]))))
    written = np.asarray(Image.open(printed["mask"]))
    np.testing.assert_array_equal(served, written)
    overlay = cv2.imdecode(np.frombuffer(base64.b64decode(answer["overlay"]), np.uint8), 1)
    np.testing.assert_array_equal(overlay, cv2.imread(printed["overlay"]))


def test_serve_without_its_extra_names_the_extra_to_install(model_file, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # what an install without it gives
    assert main(["serve", str(model_file), "--port", "0"]) == 2
    error = capsys.readouterr().err
    assert "needs the optional package fastapi" in error and 'pip install "senet[serve]"' in error
    assert "senet[export]" not in error and error.count("\n") == 1
