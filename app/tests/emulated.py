"""Helpers for tests against the emulated UVC camera (tests/fakecam): cameras, streamer
processes under the emulation, and v4l2-ctl in the same emulation directory."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
import requests
from conftest import APP_DIR, MjpegClient, Part

FAKECAM = APP_DIR.parent / "tests" / "fakecam"
sys.path.insert(0, str(FAKECAM))
import fakecam  # noqa: E402


def write_jpegs(folder: Path, count: int = 6) -> set[bytes]:
    """Distinct 640x480 JPEGs (random noise and a number) for the camera to send."""
    rng = np.random.default_rng(10)
    found: set[bytes] = set()
    for i in range(count):
        image = rng.integers(0, 256, (480, 640, 3), np.uint8)
        cv2.putText(image, str(i), (200, 300), cv2.FONT_HERSHEY_SIMPLEX, 6, (255, 255, 255), 12)
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 70])
        assert ok
        (folder / f"{i:02d}.jpg").write_bytes(data.tobytes())
        found.add(data.tobytes())
    return found


def cameras(tmp_path: Path, *profiles: str, frames: Path | None = None) -> fakecam.Cameras:
    return fakecam.create(
        tmp_path / "cam", cameras=len(profiles), profiles=list(profiles), frames=frames
    )


def streamer(spawn, cams, *args: str):
    return spawn(*args, env=cams.env(dev=True))


def health(proc) -> tuple[int, dict]:
    r = requests.get(proc.url + "/healthz", timeout=5)
    return r.status_code, r.json()


def real_part(client: MjpegClient, within: float) -> Part | None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        part = client.read_part()
        if not part.placeholder:
            return part
    return None


def placeholder_part(client: MjpegClient, within: float) -> Part | None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        part = client.read_part()
        if part.placeholder:
            return part
    return None


def get_controls(cams: fakecam.Cameras, names: Iterable[str], node: str = "/dev/video0") -> dict:
    """The controls' current values as v4l2-ctl reads them (menus by number)."""
    out = subprocess.run(
        ["v4l2-ctl", "-d", node, "--get-ctrl", ",".join(names)],
        env=cams.env(dev=True),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    pairs = (line.split(": ") for line in out.stdout.splitlines())
    return {name: int(value.split()[0]) for name, value in pairs}  # "1 (Manual Mode)"
