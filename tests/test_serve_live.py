"""`senet serve` as a person runs it: a server process on 127.0.0.1 (LiteRT, the default
runtime), hit by 8 concurrent clients, by hostile uploads, and by a real browser: headless
Chromium, driven by selenium, uploads a photo and must show the emotion and the heatmap.

The browser is Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them);
without them the browser test is skipped and says so. ``SENET_SERVE_TEST_MODEL`` serves
another model (a trained one, for the README's screenshot) and ``SENET_SCREENSHOT`` names
where the screenshot goes (default: the test's temporary folder).
"""

import contextlib
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi", reason='senet serve needs pip install "senet[serve]"')

from photos import face_photo  # noqa: E402
from serving import CLASSES, png_claiming, small_classifier  # noqa: E402

pytestmark = pytest.mark.slow  # a server process, 200 requests and a browser

UPLOAD_CAP_MB = 2
CLIENTS, REQUESTS = 8, 200


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("live")
    model = os.environ.get("SENET_SERVE_TEST_MODEL") or small_classifier(root / "model.keras")
    log = root / "serve.log"
    env = {**os.environ, "SENET_CACHE_DIR": str(root / "cache"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, "-m", "senet", "serve", str(model), "--port", "0"]
    command += ["--max-upload-mb", str(UPLOAD_CAP_MB)]
    with open(log, "w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=output, env=env)
    deadline = time.monotonic() + 180
    url = None
    while url is None and time.monotonic() < deadline and process.poll() is None:
        found = re.search(r"on (http://127\.0\.0\.1:\d+/)", log.read_text())
        url = found.group(1) if found else time.sleep(0.2)
    try:
        assert url, f"the server did not start: {log.read_text()[-2000:]}"
        yield url, process, root
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
    # SIGTERM stops it cleanly, saying so
    assert process.returncode == 0, log.read_text()[-2000:]
    assert log.read_text().rstrip().endswith("senet serve: stopped")


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("photo") / "face.jpg"
    cv2.imwrite(str(path), face_photo())
    return path


def _post(client, url, raw, name="face.jpg"):
    return client.post(url + "predict", files={"file": (name, raw, "image/jpeg")})


def test_200_requests_from_8_clients_all_answered_with_memory_steady(server, photo):
    url, process, _ = server
    raw = photo.read_bytes()
    statuses, labels, lock = [], set(), threading.Lock()

    def clients(each):
        def client_loop():
            with httpx.Client(timeout=60) as client:
                for _ in range(each):
                    response = _post(client, url, raw)
                    with lock:
                        statuses.append(response.status_code)
                        if response.status_code == 200:
                            labels.add(response.json()["faces"][0]["label"])

        threads = [threading.Thread(target=client_loop) for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)

    # warm up with as many clients: each worker thread's first request allocates what it
    # keeps (its face detector, its buffers); what grows after that is kept per request
    clients(5)
    before = _rss_mb(process.pid)
    statuses.clear()
    half = REQUESTS // CLIENTS // 2
    clients(half)
    middle = _rss_mb(process.pid)
    clients(REQUESTS // CLIENTS - half)
    after = _rss_mb(process.pid)
    assert statuses == [200] * REQUESTS
    assert len(labels) == 1  # the same photo, the same answer, whatever the interleaving
    growth = f"{before:.0f} -> {middle:.0f} -> {after:.0f} MB"
    assert after - before < 25 and after - middle < 10, f"server memory grew: {growth}"


def test_hostile_uploads_get_4xx_and_the_server_keeps_answering(server, photo):
    url, process, _ = server
    raw = photo.read_bytes()

    hostile = {
        "empty.jpg": b"",
        "notes.jpg": b"these are not pixels\n" * 50,
        "cut.jpg": raw[: len(raw) // 2],
        "bomb.png": png_claiming(10_000, 10_000),
        "huge.jpg": b"\xff\xd8\xff" + b"\0" * ((UPLOAD_CAP_MB << 20) + 1),
    }
    with httpx.Client(timeout=60) as client:
        for name, body in hostile.items():
            response = _post(client, url, body, name)
            assert 400 <= response.status_code < 500, (name, response.status_code)
            assert response.json()["error"], name
        assert client.get(url + "health").json()["status"] == "ok"
        assert _post(client, url, raw).status_code == 200
    assert process.poll() is None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    profile = tmp_path_factory.mktemp("profile")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip(
            "no headless Chromium here: apt-get install -y chromium chromium-driver "
            "(.ci/run installs them)"
        )
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,1500",
        # a made-up camera, allowed without asking: the webcam snapshot is tested too
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(
        service=webdriver.ChromeService(executable_path=driver), options=options
    )


def test_a_browser_uploads_a_photo_and_sees_the_emotion_and_the_heatmap(
    server, browser, photo, tmp_path
):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    url, _, _ = server
    browser.set_window_size(1280, 1500)
    browser.get(url)
    wait = WebDriverWait(browser, 120)
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#card-facts dt"))
    facts = browser.find_element(By.ID, "card-facts").text
    assert "Heatmaps" in facts and "Classes" in facts
    # the keyboard reaches the photo, the webcam and the heatmap choice
    reached = set()
    for _ in range(12):
        ActionChains(browser).send_keys(Keys.TAB).perform()  # (a file input's send_keys
        # takes a path)
        reached.add(browser.switch_to.active_element.get_attribute("id"))
    assert {"file", "camera-start", "method"} <= reached

    browser.find_element(By.ID, "file").send_keys(str(photo))
    wait.until(
        lambda b: b.execute_script(
            "const img = document.querySelector('.heatmap img');"
            "return img !== null && img.complete && img.naturalWidth > 0;"
        )
    )
    label = browser.find_element(By.CSS_SELECTOR, "#faces .label").text
    if not os.environ.get("SENET_SERVE_TEST_MODEL"):
        assert label in CLASSES
    heatmap = browser.find_element(By.CSS_SELECTOR, ".heatmap img")
    assert "Grad-CAM" in heatmap.get_attribute("alt")
    assert browser.find_elements(By.CSS_SELECTOR, "#boxes rect")  # the face's box
    assert "synthetic" in browser.find_element(By.ID, "card-warnings").text
    assert "error" not in browser.find_element(By.ID, "status").get_attribute("class")
    browser.execute_script("document.activeElement.blur()")  # no focus ring in the picture
    shot = Path(os.environ.get("SENET_SCREENSHOT") or tmp_path / "serve.png")
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, min(max(int(height) + 40, 900), 2400))
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    # a phone-sized window: nothing wider than the screen
    browser.set_window_size(390, 844)
    overflow = browser.execute_script(
        "return document.documentElement.scrollWidth - window.innerWidth"
    )
    assert overflow <= 0


@contextlib.contextmanager
def _serving(service):
    """``service`` behind uvicorn in a thread of this process; its URL."""
    import uvicorn

    from senet.serve import _listen, create_app

    sock = _listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(service), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        server.should_exit = True
        thread.join(10)


def _upload_and_wait(browser, url, photo, done_js):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    wait = WebDriverWait(browser, 60)
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#card-facts dt"))
    browser.find_element(By.ID, "file").send_keys(str(photo))
    wait.until(lambda b: b.execute_script(done_js))
    return wait


def test_the_page_shows_a_segmentation_models_labels(browser, photo, tmp_path):
    from selenium.webdriver.common.by import By

    from senet.serve import Service
    from serving import PARTS, small_segmenter

    with pytest.warns(UserWarning):
        service = Service(small_segmenter(tmp_path / "parts.keras"), runtime="keras")
    with _serving(service) as url:
        _upload_and_wait(
            browser, url, photo, "return document.querySelectorAll('.probs li').length > 0"
        )
        names = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".probs .name")]
        assert sorted(names) == sorted(PARTS)
        source = browser.find_element(By.ID, "photo").get_attribute("src")
        assert source.startswith("data:image/png;base64,")  # the overlay replaced the photo
        assert not browser.find_element(By.ID, "method").is_displayed()  # no heatmaps


def test_the_page_shows_a_detectors_boxes_above_the_score_it_is_given(
    browser, photo, tmp_path, monkeypatch
):
    from selenium.webdriver.common.by import By

    import senet.detect
    from senet.detect import Detection
    from senet.serve import Service
    from serving import small_detector

    # an untrained detector finds nothing: the boxes it "finds" are fixed here
    found = [
        Detection((100, 80, 300, 260), "happy", 0.9),
        Detection((350, 100, 420, 180), "sad", 0.3),
    ]
    monkeypatch.setattr(senet.detect, "detect_image", lambda *args, **kwargs: list(found))
    with pytest.warns(UserWarning):
        service = Service(small_detector(tmp_path / "objects.keras"), runtime="keras")
    boxes = "return document.querySelectorAll('#boxes rect').length"
    with _serving(service) as url:
        wait = _upload_and_wait(browser, url, photo, boxes + " > 0")
        assert browser.execute_script(boxes) == 1  # 0.3 is under the default 0.5
        rect = browser.find_element(By.CSS_SELECTOR, "#boxes rect")
        assert [rect.get_attribute(k) for k in ("x", "y", "width", "height")] == [
            "100",
            "80",
            "200",
            "180",
        ]
        field = browser.find_element(By.ID, "min-score")
        browser.execute_script(
            "arguments[0].value = '0.2'; arguments[0].dispatchEvent(new Event('change'))", field
        )
        wait.until(lambda b: b.execute_script(boxes) == 2)
        assert "sad" in browser.find_element(By.ID, "faces").text


def test_a_webcam_snapshot_goes_the_same_way_as_a_photo(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, _, _ = server
    browser.get(url)
    wait = WebDriverWait(browser, 60)
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#card-facts dt"))
    browser.find_element(By.ID, "camera-start").click()
    wait.until(
        lambda b: b.execute_script("return document.getElementById('camera-video').videoWidth > 0")
    )
    assert browser.switch_to.active_element.get_attribute("id") == "camera-snap"
    browser.find_element(By.ID, "camera-snap").click()
    # Chromium's made-up camera shows no face: the answer says so, about the snapshot
    wait.until(lambda b: "webcam.jpg" in b.find_element(By.ID, "status").text)
    status = browser.find_element(By.ID, "status")
    assert "No face found in webcam.jpg" in status.text, status.text
    assert "error" not in status.get_attribute("class")
    assert browser.find_element(By.ID, "photo").get_attribute("src").startswith("blob:")
    browser.find_element(By.ID, "camera-stop").click()
    assert not browser.find_element(By.ID, "camera").is_displayed()
