"""End to end: real streamers on loopback, the generated camera wall in headless Chromium, and
a frame read with ffmpeg from the generated VLC playlist; and the check script tests/camera_wall.py
(used by the Molecule fleet scenario) run as a command against the same streamers.

Needs the Debian packages chromium, chromium-driver and ffmpeg (skipped, with the reason, when
a binary is missing) and the pinned selenium of requirements-dev.txt. Saves a screenshot of
the wall to artifacts/camera-wall.png (and artifacts/camera-wall-snapshots.png).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from snapshot_stream.jpeg import dimensions

import camera_wall as wall
from camera_wall import grab_frame, wait_for
from test_outputs import REPO, recap, run_outputs

pytestmark = pytest.mark.timeout(300)

ARTIFACTS = REPO / "artifacts"
CLI = REPO / "tests" / "camera_wall.py"
# (host, camera) of the test fleet: one host with two cameras, one with one.
FLEET = [("cam-a", "one"), ("cam-a", "two"), ("cam-b", "three")]
# An address no resolver knows (RFC 6761): only the check's --resolve makes it reach loopback.
FAKE_NAME = "wall-check.invalid"
PASSWORD = "wall-test-password"


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
    found, missing = wall.find_tools("chromium", "chromedriver", "ffmpeg")
    wall.skip_missing(missing)
    return found


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


def write_inventory(path: Path, cameras: list[tuple[str, dict]], address: str) -> Path:
    """An inventory of (host, camera) pairs whose hosts are all at `address`."""
    hosts: dict[str, dict] = {}
    for host, camera in cameras:
        entry = hosts.setdefault(host, {"ansible_host": address, "snapshot_stream_cameras": []})
        entry["snapshot_stream_cameras"].append(camera)
    path.write_text(yaml.safe_dump({"all": {"children": {"cameras": {"hosts": hosts}}}}))
    return path


def fleet_inventory(path: Path, streamers: list[Streamer], address: str) -> Path:
    cameras = [
        (host, {"name": cam, "port": s.port, "expose": "lan", "width": 320, "height": 240})
        for (host, cam), s in zip(FLEET, streamers, strict=True)
    ]
    return write_inventory(path, cameras, address)


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory, streamers: list[Streamer]) -> Path:
    path = tmp_path_factory.mktemp("inventory") / "inventory.yml"
    return fleet_inventory(path, streamers, "127.0.0.1")


@pytest.fixture
def browser(tools: dict[str, str]) -> Iterator[object]:
    with wall.chromium(tools) as driver:
        yield driver


def all_live(cards: list[dict]) -> bool:
    return wall.all_live(cards, len(FLEET))


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
    # grab_frame fails unless ffmpeg hands over one whole JPEG (FFD8..FFD9).
    assert dimensions(grab_frame(tools["ffmpeg"], urls[0])) == (320, 240)


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory, tools: dict[str, str]) -> Iterator[dict]:
    """A camera with a login, and the fleet outputs of an inventory holding just that camera."""
    tmp = tmp_path_factory.mktemp("locked")
    hashed = subprocess.run(
        [sys.executable, "-m", "snapshot_stream", "hash-password"],
        input=f"{PASSWORD}\n",
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    streamer = Streamer(_free_port(), "locked", tmp, "--auth-user", "viewer", "--auth-hash", hashed)
    streamer.start()
    try:
        camera = {"name": "locked", "port": streamer.port, "auth_user": "viewer"}
        camera["auth_hash"] = hashed
        inventory = write_inventory(tmp / "inventory.yml", [("cam-c", camera)], "127.0.0.1")
        generate(tmp / "outputs", inventory)
        yield {"outputs": tmp / "outputs", "hash": hashed}
    finally:
        streamer.stop()


def test_camera_wall_login_camera(locked, browser):
    """A camera with a login answers (/healthz needs none) but its image needs the password."""
    for path in locked["outputs"].iterdir():
        assert locked["hash"] not in path.read_text(), path.name
    browser.get((locked["outputs"] / "cameras.html").as_uri())
    (card,) = wait_for(
        browser,
        lambda cs: cs[0]["state"] == "login" and cs[0]["reachable"] == "true",
    )
    assert card["text"] == "login required"


# The check script, as the Molecule fleet scenario runs it.


@pytest.fixture(scope="module")
def named_outputs(tmp_path_factory: pytest.TempPathFactory, streamers: list[Streamer]) -> Path:
    """Fleet outputs whose URLs name FAKE_NAME, like the tailnet names of the Molecule fleet."""
    tmp = tmp_path_factory.mktemp("named")
    inventory = fleet_inventory(tmp / "inventory.yml", streamers, FAKE_NAME)
    generate(tmp / "outputs", inventory)
    return tmp / "outputs"


def check_wall(
    outputs: Path, screenshot: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            str(CLI),
            "--outputs",
            str(outputs),
            "--screenshot",
            str(screenshot),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        env=env,
    )


def assert_all_live(proc: subprocess.CompletedProcess[str], expected: int) -> dict:
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["expected"] == expected
    assert len(report["cards"]) == expected
    for card in report["cards"]:
        assert card["state"] == "live" and card["naturalWidth"] > 0, card
    for frame in report["ffmpeg"]:
        assert frame["size"] == [320, 240] and frame["bytes"] > 0, frame
    return report


def test_check_script_reaches_names_through_resolve(tmp_path, named_outputs, streamers):
    screenshot = tmp_path / "shots" / "wall.png"
    proc = check_wall(
        named_outputs,
        screenshot,
        "--resolve",
        f"{FAKE_NAME}=127.0.0.1",
        "--ffmpeg",
        "--timeout",
        "60",
    )
    report = assert_all_live(proc, len(FLEET))
    streams = [f"http://{FAKE_NAME}:{s.port}/stream" for s in streamers]
    assert [c["src"] for c in report["cards"]] == streams
    assert [f["url"] for f in report["ffmpeg"]] == streams
    assert [f["read_from"] for f in report["ffmpeg"]] == [s.url("/stream") for s in streamers]
    assert f"reading {streams[0]} from {streamers[0].url('/stream')}" in proc.stderr
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_check_script_fails_without_resolve(tmp_path, named_outputs):
    screenshot = tmp_path / "wall.png"
    proc = check_wall(named_outputs, screenshot, "--timeout", "6")
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""
    assert f"FAILED: after 6 s: 0 of {len(FLEET)} cards live ({len(FLEET)} expected)" in proc.stderr
    assert proc.stderr.count("state=") == len(FLEET)
    assert screenshot.is_file() and screenshot.stat().st_size > 0


def test_check_script_sends_basic_auth(tmp_path, locked):
    screenshot = tmp_path / "wall.png"
    env = {**os.environ, wall.AUTH_ENV: f"viewer:{PASSWORD}"}
    for args, environ in (((f"--basic-auth=viewer:{PASSWORD}",), None), ((), env)):
        proc = check_wall(locked["outputs"], screenshot, "--ffmpeg", *args, env=environ)
        assert_all_live(proc, 1)
        assert PASSWORD not in proc.stdout + proc.stderr
    # Without the password the image stays locked: the check fails, naming the login state.
    proc = check_wall(locked["outputs"], screenshot, "--timeout", "6")
    assert proc.returncode == 1 and "state=login" in proc.stderr, proc.stderr
