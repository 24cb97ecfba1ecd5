"""End to end: real streamers on loopback, the generated camera wall in headless Chromium, and
a frame read with ffmpeg from the generated VLC playlist.

Needs the Debian packages chromium, chromium-driver and ffmpeg (skipped, with the reason, when
a binary is missing) and the pinned selenium of requirements-dev.txt. Saves a screenshot of
the wall to artifacts/camera-wall.png (and artifacts/camera-wall-snapshots.png).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
import yaml

from test_outputs import REPO, recap, run_outputs

pytestmark = pytest.mark.timeout(300)

ARTIFACTS = REPO / "artifacts"
CHROME_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1280,800",
]
# (host, camera) of the test fleet: one host with two cameras, one with one.
FLEET = [("cam-a", "one"), ("cam-a", "two"), ("cam-b", "three")]


def _binary(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Streamer:
    """One real snapshot-stream process on a loopback port (synthetic source)."""

    def __init__(self, port: int, name: str, log_dir: Path, *extra: str) -> None:
        self.port = port
        self.name = name
        self.extra = list(extra)
        self.log = log_dir / f"streamer-{port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "snapshot_stream",
                    "--source",
                    "synthetic",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--fps",
                    "10",
                    "--width",
                    "320",
                    "--height",
                    "240",
                    "--name",
                    self.name,
                    *self.extra,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"streamer on {self.port} exited: {self.log.read_text()}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.url("/healthz"), timeout=1).status_code == 200:
                    return
            time.sleep(0.2)
        pytest.fail(f"streamer on {self.port} not healthy in 30 s: {self.log.read_text()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture(scope="module")
def tools() -> dict[str, str]:
    chromium = _binary("chromium", "chromium-browser", "google-chrome")
    driver = _binary("chromedriver")
    ffmpeg = _binary("ffmpeg")
    missing = [
        pkg
        for pkg, found in (("chromium", chromium), ("chromium-driver", driver), ("ffmpeg", ffmpeg))
        if not found
    ]
    if missing:
        pytest.skip(f"missing binaries; install the Debian packages: {' '.join(missing)}")
    return {"chromium": chromium, "chromedriver": driver, "ffmpeg": ffmpeg}


@pytest.fixture(scope="module")
def streamers(tmp_path_factory: pytest.TempPathFactory, tools: dict[str, str]) -> Iterator[list]:
    log_dir = tmp_path_factory.mktemp("streamers")
    running = [Streamer(_free_port(), f"{host}-{cam}", log_dir) for host, cam in FLEET]
    try:
        for streamer in running:
            streamer.start()
        yield running
    finally:
        for streamer in running:
            streamer.stop()


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory, streamers: list[Streamer]) -> Path:
    hosts: dict[str, dict] = {}
    for (host, cam), streamer in zip(FLEET, streamers, strict=True):
        entry = hosts.setdefault(host, {"ansible_host": "127.0.0.1", "snapshot_stream_cameras": []})
        entry["snapshot_stream_cameras"].append(
            {"name": cam, "port": streamer.port, "expose": "lan", "width": 320, "height": 240}
        )
    path = tmp_path_factory.mktemp("inventory") / "inventory.yml"
    path.write_text(yaml.safe_dump({"all": {"children": {"cameras": {"hosts": hosts}}}}))
    return path


@pytest.fixture
def browser(tools: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # never let Selenium Manager download anything
    profile = tempfile.mkdtemp(prefix="camera-wall-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = tools["chromium"]
    for flag in [*CHROME_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(tools["chromedriver"]), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


CARDS_JS = """
return Array.from(document.querySelectorAll('article.cam')).map(function (c) {
  var img = c.querySelector('img');
  return {id: c.id, src: img.currentSrc || img.src, naturalWidth: img.naturalWidth,
          state: c.getAttribute('data-state'), reachable: c.getAttribute('data-reachable'),
          text: c.querySelector('.state').textContent};
});
"""


def wait_for(driver: object, check: Callable[[list[dict]], bool], timeout: float = 30) -> list:
    deadline = time.monotonic() + timeout
    cards: list[dict] = []
    while time.monotonic() < deadline:
        cards = driver.execute_script(CARDS_JS)
        if check(cards):
            return cards
        time.sleep(0.25)
    pytest.fail(f"the camera wall did not get there in {timeout} s: {json.dumps(cards, indent=1)}")


def all_live(cards: list[dict]) -> bool:
    return len(cards) == len(FLEET) and all(
        c["naturalWidth"] > 0 and c["state"] == "live" and c["reachable"] == "true" for c in cards
    )


def generate(out_dir: Path, inventory: Path, **extra: object) -> Path:
    extra = {"camera_outputs_wall_health_interval": 2, **extra}
    proc = run_outputs(out_dir, "-e", json.dumps(extra), inventory=inventory)
    assert recap(proc.stdout)["failed"] == 0
    return out_dir / "cameras.html"


def test_camera_wall_shows_every_live_stream(tmp_path, inventory, streamers, browser):
    page = generate(tmp_path / "outputs", inventory)
    browser.get(page.as_uri())
    cards = wait_for(browser, all_live)
    for card, streamer in zip(cards, streamers, strict=True):
        assert card["src"].startswith(streamer.url("/stream"))
    assert (
        browser.find_element("id", "summary").text == f"{len(FLEET)} of {len(FLEET)} cameras live"
    )
    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "camera-wall.png"))

    # A camera going away turns offline; once it is back its stream is reopened.
    lost = streamers[-1]
    lost.stop()
    wait_for(browser, lambda cs: cs[-1]["state"] == "offline" and cs[-1]["reachable"] == "false")
    lost.start()
    wait_for(browser, all_live)


def test_camera_wall_snapshot_mode(tmp_path, inventory, streamers, browser):
    # More cameras than the threshold: snapshots refreshed every second instead of streams.
    page = generate(
        tmp_path / "outputs",
        inventory,
        camera_outputs_wall_snapshot_threshold=2,
        camera_outputs_wall_snapshot_interval=1,
    )
    browser.get(page.as_uri())
    cards = wait_for(browser, all_live)
    for card, streamer in zip(cards, streamers, strict=True):
        assert card["src"].startswith(streamer.url("/snapshot.jpg"))
    first = [c["text"] for c in cards]
    # The refresh keeps going: each card's "updated at" time changes.
    wait_for(
        browser,
        lambda cs: all_live(cs) and all(c["text"] != t for c, t in zip(cs, first, strict=True)),
    )
    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "camera-wall-snapshots.png"))


def test_ffmpeg_reads_a_stream_from_the_playlist(tmp_path, inventory, streamers, tools):
    generate(tmp_path / "outputs", inventory)
    lines = (tmp_path / "outputs" / "cameras.m3u").read_text().splitlines()
    assert lines[0] == "#EXTM3U"
    urls = [line for line in lines if line.startswith("http")]
    assert urls == [s.url("/stream") for s in streamers]
    frame = tmp_path / "frame.jpg"
    subprocess.run(
        [
            tools["ffmpeg"],
            "-nostdin",
            "-y",
            "-loglevel",
            "error",
            "-i",
            urls[0],
            "-frames:v",
            "1",
            str(frame),
        ],
        check=True,
        timeout=60,
    )
    data = frame.read_bytes()
    assert data[:2] == b"\xff\xd8" and data.rstrip(b"\x00")[-2:] == b"\xff\xd9"
    assert jpeg_size(data) == (320, 240)


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the first SOF marker of a JPEG."""
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            return width, height
        i += 2 + length
    raise AssertionError("no SOF marker in the JPEG")


def test_camera_wall_login_camera(tmp_path, tools, browser):
    """A camera with a login answers (/healthz needs none) but its image needs the password."""
    hashed = subprocess.run(
        [sys.executable, "-m", "snapshot_stream", "hash-password"],
        input="wall-test-password\n",
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    streamer = Streamer(
        _free_port(), "locked", tmp_path, "--auth-user", "viewer", "--auth-hash", hashed
    )
    streamer.start()
    try:
        camera = {"name": "locked", "port": streamer.port, "auth_user": "viewer"}
        camera["auth_hash"] = hashed
        inventory = tmp_path / "inventory.yml"
        hosts = {"cam-c": {"ansible_host": "127.0.0.1", "snapshot_stream_cameras": [camera]}}
        inventory.write_text(yaml.safe_dump({"all": {"children": {"cameras": {"hosts": hosts}}}}))
        page = generate(tmp_path / "outputs", inventory)
        for path in (tmp_path / "outputs").iterdir():
            assert hashed not in path.read_text(), path.name
        browser.get(page.as_uri())
        (card,) = wait_for(
            browser,
            lambda cs: cs[0]["state"] == "login" and cs[0]["reachable"] == "true",
        )
        assert card["text"] == "login required"
    finally:
        streamer.stop()
