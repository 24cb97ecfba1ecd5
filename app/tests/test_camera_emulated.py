"""The camera path against the emulated UVC camera (tests/fakecam): OpenCV's real V4L2 backend
and the streamer process itself, under LD_PRELOAD.

Every streamer runs as a separate process started with the emulation's environment, and names
its camera as on a Pi (/dev/videoN, /dev/v4l/by-id/...): the app has no test-only knob.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import requests
from conftest import APP_DIR, MjpegClient, wait_for
from emulated import (
    cameras,
    get_controls,
    health,
    placeholder_part,
    real_part,
    streamer,
    write_jpegs,
)


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[bytes]]:
    """Distinct 640x480 JPEGs for the camera to send; passthrough must serve these bytes."""
    folder = tmp_path_factory.mktemp("frames")
    return folder, write_jpegs(folder)


# -- OpenCV against the camera ----------------------------------------------------------------
NEGOTIATE = """
import json, sys
import cv2
from snapshot_stream import v4l2, videodev
cap, settings = v4l2.open_device(sys.argv[1], 640, 480, float(sys.argv[2]), 1)
frames = []
for _ in range(8):
    ok, frame = cap.read()
    assert ok, "read failed"
    frames.append([list(frame.shape), str(frame.dtype), bytes(frame.reshape(-1)).hex()])
with videodev.Device(sys.argv[1]) as dev:  # a second handle, as v4l2-ctl would open it
    g_parm = dev.get_rate()
    fmt = dev.get_format()
print(json.dumps({"settings": settings.__dict__, "cv_fps": cap.get(cv2.CAP_PROP_FPS),
                  "g_parm": g_parm, "fmt": fmt, "frames": frames}))
"""


# A C920 offers 30, 24, 20, 15, 10, 7.5 and 5 fps: asked 25, uvcvideo picks the nearest, 24.
@pytest.mark.parametrize(("asked", "rate"), [(25, 24.0), (30, 30.0)])
def test_opencv_negotiates_mjpg_640x480_and_the_rate(tmp_path, jpegs, asked, rate) -> None:
    folder, injected = jpegs
    cams = cameras(tmp_path, "c920", frames=folder)
    out = subprocess.run(
        [sys.executable, "-c", NEGOTIATE, "/dev/video0", str(asked)],
        env=cams.env(dev=True),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=APP_DIR,
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.splitlines()[-1])
    assert got["settings"] == {
        "path": "/dev/video0",
        "fourcc": "MJPG",
        "width": 640,
        "height": 480,
        "fps": rate,
        "passthrough": True,
    }
    # The rate OpenCV reads back is the device's, and another handle sees the same.
    assert got["cv_fps"] == got["g_parm"] == rate
    assert got["fmt"] == ["MJPG", 640, 480]
    # CONVERT_RGB=0: one row of bytes, the JPEG the camera sent, untouched.
    for shape, dtype, data in got["frames"]:
        assert dtype == "uint8" and shape[0] == 1 and len(shape) == 2
        assert bytes.fromhex(data) in injected
    v4l2_ctl = subprocess.run(
        ["v4l2-ctl", "-d", "/dev/video0", "--get-parm"],
        env=cams.env(dev=True),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert v4l2_ctl.returncode == 0, v4l2_ctl.stderr
    assert f"Frames per second: {rate:.3f}" in v4l2_ctl.stdout


def test_passthrough_serves_the_camera_bytes(tmp_path, spawn, jpegs) -> None:
    folder, injected = jpegs
    cams = cameras(tmp_path, "c920", frames=folder)
    proc = streamer(spawn, cams, "--device", "/dev/video0")
    client = MjpegClient(proc.url + "/stream")
    try:
        assert real_part(client, 10) is not None
        parts = [client.read_part() for _ in range(15)]
    finally:
        client.close()
    assert all(p.jpeg in injected for p in parts), "a served frame is not a camera JPEG"
    assert len({p.jpeg for p in parts}) > 1  # the camera's frames go by, not one repeated
    status, body = health(proc)
    assert status == 200 and body["passthrough"] is True and body["source"] == "/dev/video0"
    log = proc.log()
    assert "/dev/video0: MJPG 640x480 @ 24 fps (asked 640x480 @ 25), passthrough on" in log
    assert "/dev/video0: camera runs at 24 fps instead of 25" in log


def test_yuyv_only_camera_falls_back_to_encoding(tmp_path, spawn) -> None:
    cams = cameras(tmp_path, "yuyv")
    proc = streamer(spawn, cams, "--device", "/dev/video0", "--fps", "10")
    client = MjpegClient(proc.url + "/stream")
    try:
        part = real_part(client, 10)
    finally:
        client.close()
    assert part is not None
    image = cv2.imdecode(np.frombuffer(part.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (480, 640, 3)
    status, body = health(proc)
    assert status == 200 and body["passthrough"] is False
    assert "MJPG refused (device reports YUYV), falling back to YUYV" in proc.log()


# -- --device auto and by-id paths ------------------------------------------------------------
def test_auto_takes_the_first_mjpg_camera_that_delivers(tmp_path, spawn, jpegs) -> None:
    folder, injected = jpegs
    cams = cameras(tmp_path, "dead", "yuyv", "c920", frames=folder)
    proc = streamer(spawn, cams)  # --device auto is the default
    assert wait_for(lambda: health(proc)[0] == 200, 20), proc.log()
    _, body = health(proc)
    assert body["source"] == "/dev/video2" and body["passthrough"] is True
    log = proc.log()
    assert "/dev/video0: no frame for 2 s (the camera sends nothing), trying the next device" in log
    snapshot = requests.get(proc.url + "/snapshot.jpg", timeout=5)
    assert snapshot.content in injected


def test_auto_falls_back_to_a_yuyv_camera(tmp_path, spawn) -> None:
    cams = cameras(tmp_path, "dead", "yuyv")
    proc = streamer(spawn, cams, "--fps", "10")
    assert wait_for(lambda: health(proc)[0] == 200, 20), proc.log()
    _, body = health(proc)
    assert body["source"] == "/dev/video1" and body["passthrough"] is False
    assert "/dev/video1: no MJPG camera delivered a frame, using this one" in proc.log()


def test_auto_without_a_working_camera_names_each_node(tmp_path, spawn) -> None:
    cams = cameras(tmp_path, "dead")
    proc = streamer(spawn, cams)
    assert wait_for(lambda: "no working camera" in health(proc)[1]["reason"], 20), proc.log()
    status, body = health(proc)
    assert status == 503
    assert body["reason"].startswith("no working camera: /dev/video0: no frame")


# -- unplug, replug, stall, corrupt frames on one connection -----------------------------------
def test_unplug_replug_stall_and_corrupt_frames(tmp_path, spawn, jpegs) -> None:
    folder, injected = jpegs
    cams = cameras(tmp_path, "c920", frames=folder)
    by_id = cams.dev_by_id(0)
    proc = streamer(spawn, cams, "--device", by_id)
    client = MjpegClient(proc.url + "/stream")
    try:
        assert real_part(client, 10) is not None

        # Unplug: placeholders within 2 s, /healthz 503 naming the device.
        cams.unplug(0)
        unplugged = time.monotonic()
        assert placeholder_part(client, 2.0) is not None, proc.log()
        assert time.monotonic() - unplugged <= 2.0
        status, body = health(proc)
        assert status == 503
        assert body["reason"] == f"{by_id}: no such device (unplugged?)"

        # Replug under another number: the by-id path follows, frames within 3 s.
        time.sleep(1.0)
        cams.replug(0, number=3)
        replugged = time.monotonic()
        part = real_part(client, 3.0)
        assert part is not None, proc.log()
        assert time.monotonic() - replugged <= 3.0
        assert part.jpeg in injected
        assert wait_for(lambda: health(proc)[0] == 200, 2)

        # Stall: detected within 5 s.
        cams.stall(0)
        stalled = time.monotonic()
        assert placeholder_part(client, 5.0) is not None, proc.log()
        assert time.monotonic() - stalled <= 5.0
        status, body = health(proc)
        assert status == 503 and "the camera sends nothing" in body["reason"], body
        cams.clear(0)
        assert real_part(client, 3.0) is not None, proc.log()

        # Corrupt frames (truncated and garbage, every one): dropped and counted, never served.
        cams.corrupt(0)
        served = [p for p in client.parts_for(2.0) if not p.placeholder]
        cams.clear(0)
        part = real_part(client, 5.0)
        assert part is not None, proc.log()
        served.append(part)
    finally:
        client.close()
    assert all(p.jpeg in injected for p in served)
    metrics = requests.get(proc.url + "/metrics", timeout=5).text
    broken = re.search(r"^snapshot_stream_frames_broken_total(?:\{[^}]*\})? (\d+)", metrics, re.M)
    assert broken and int(broken.group(1)) > 0, metrics


# -- what OpenCV does not say: ENOSPC and EBUSY -----------------------------------------------
def test_no_usb_bandwidth_is_named_with_what_to_do(tmp_path, spawn) -> None:
    cams = cameras(tmp_path, "c920")
    cams.nospace(0)
    proc = streamer(spawn, cams, "--device", "/dev/video0")
    assert wait_for(lambda: "USB bandwidth" in health(proc)[1]["reason"], 10), proc.log()
    status, body = health(proc)
    assert status == 503
    assert body["reason"] == (
        "/dev/video0: not enough USB bandwidth to stream MJPG 640x480 @ 24 fps (stream-on: "
        "ENOSPC): use a smaller --width/--height or --fps, or plug the camera (or the other "
        "USB devices) into another USB bus"
    )
    time.sleep(3)  # several reopen attempts
    lines = [line for line in proc.log().splitlines() if "USB bandwidth" in line]
    assert len(lines) == 1, lines
    cams.clear(0)
    assert wait_for(lambda: health(proc)[0] == 200, 10), proc.log()


def test_a_second_instance_on_the_same_camera_says_device_busy(tmp_path, spawn) -> None:
    cams = cameras(tmp_path, "c920")
    first = streamer(spawn, cams, "--device", "/dev/video0")
    assert wait_for(lambda: health(first)[0] == 200, 10), first.log()
    second = streamer(spawn, cams, "--device", "/dev/video0")
    assert wait_for(lambda: "busy" in health(second)[1]["reason"], 10), second.log()
    status, body = health(second)
    assert status == 503
    assert body["reason"] == (
        "cannot open /dev/video0: device busy: another program is streaming from it "
        "(a second snapshot-stream on this camera?)"
    )
    assert health(first)[0] == 200  # the first one is not disturbed


# -- controls (issue 11) -----------------------------------------------------------------------
WANTED = {
    "focus_automatic_continuous": 0,
    "focus_absolute": 40,
    "power_line_frequency": 1,
    "auto_exposure": 1,
    "exposure_time_absolute": 300,
}
# Manual values before their automatic modes, a menu entry by name and one by number: the
# streamer must order them. Then four bad entries.
CONTROLS = (
    "focus_absolute=40,exposure_time_absolute=300,focus_automatic_continuous=0,"
    "power_line_frequency=50 Hz,auto_exposure=1,"
    "zoom_absolute=900,sharpnes=3,white_balance_temperature=5000,pan_absolute=100"
)
BAD = [
    "controls: zoom_absolute=900 is out of range 100..500 (default 100)",
    "controls: unknown control 'sharpnes'; this camera offers: auto_exposure, "
    "backlight_compensation, brightness,",
    "controls: white_balance_temperature=5000 not set: it is inactive while "
    "white_balance_automatic is on: add white_balance_automatic=0 before it",
    "controls: pan_absolute=100 is not a valid step: -36000..36000 step 3600 (default 0)",
]


def get_ctrls(cams) -> dict[str, int]:
    return get_controls(cams, WANTED)


def test_controls_are_set_on_every_open(tmp_path, spawn) -> None:
    cams = cameras(tmp_path, "c920")
    proc = streamer(spawn, cams, "--device", "/dev/video0", "--controls", CONTROLS)
    client = MjpegClient(proc.url + "/stream")
    try:
        assert real_part(client, 10) is not None
        assert get_ctrls(cams) == WANTED

        # A replug puts the camera back at its defaults; the streamer sets them again.
        cams.unplug(0)
        assert placeholder_part(client, 2.0) is not None
        cams.replug(0)
        assert real_part(client, 3.0) is not None, proc.log()
        assert wait_for(lambda: get_ctrls(cams) == WANTED, 2), get_ctrls(cams)
    finally:
        client.close()
    assert health(proc)[0] == 200  # bad entries do not stop the stream
    log = proc.log()
    for line in BAD:
        assert log.count(line) == 1, (line, log)  # once, not again after the replug
    assert log.count("/dev/video0: controls set: ") == 1
    assert (
        "/dev/video0: controls set: focus_automatic_continuous=0, auto_exposure=1, "
        "focus_absolute=40, exposure_time_absolute=300, power_line_frequency=1"
    ) in log


def test_controls_come_back_after_idle_release(tmp_path, spawn) -> None:
    cams = cameras(tmp_path, "c920")
    proc = streamer(
        spawn, cams, "--device", "/dev/video0", "--idle-release", "1", "--controls", CONTROLS
    )
    requests.get(proc.url + "/snapshot.jpg", timeout=5)
    assert wait_for(lambda: health(proc)[1]["state"] == "idle", 10), proc.log()
    changed = subprocess.run(
        ["v4l2-ctl", "-d", "/dev/video0", "--set-ctrl", "focus_absolute=100"],
        env=cams.env(dev=True),
        timeout=30,
    )
    assert changed.returncode == 0 and get_ctrls(cams)["focus_absolute"] == 100
    requests.get(proc.url + "/snapshot.jpg", timeout=10)  # wakes the camera up
    assert wait_for(lambda: get_ctrls(cams) == WANTED, 5), get_ctrls(cams)


def test_controls_subcommand_prints_inventory_yaml(tmp_path) -> None:
    import yaml

    cams = cameras(tmp_path, "c920")
    subprocess.run(
        ["v4l2-ctl", "-d", "/dev/video0", "--set-ctrl", "focus_automatic_continuous=0"],
        env=cams.env(dev=True),
        check=True,
        timeout=30,
    )
    out = subprocess.run(
        [sys.executable, "-m", "snapshot_stream", "controls", "/dev/video0"],
        env=cams.env(dev=True),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=APP_DIR,
    )
    assert out.returncode == 0, out.stderr
    # Only what differs from the defaults is active; the rest are comments.
    assert yaml.safe_load(out.stdout) == {"controls": {"focus_automatic_continuous": 0}}
    uncommented = yaml.safe_load(re.sub(r"(?m)^  # ", "  ", out.stdout))
    assert uncommented["controls"]["power_line_frequency"] == 2
    assert len(uncommented["controls"]) == 17
    assert "# menu 0 = Disabled, 1 = 50 Hz, 2 = 60 Hz; default 2" in out.stdout
    assert out.stdout.index("focus_automatic_continuous") < out.stdout.index("focus_absolute")
