"""GET and POST /controls, the camera panel's data, and the camera figures of /healthz and
/metrics, against the emulated C920 (tests/fakecam) and real streamer processes.

Values are read back with v4l2-ctl in the same emulation directory, as on a Pi.
"""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest
import requests
from conftest import MjpegClient, local_non_loopback_ipv4, wait_for
from emulated import (
    cameras,
    get_controls,
    health,
    placeholder_part,
    real_part,
    streamer,
    write_jpegs,
)
from werkzeug.security import generate_password_hash

USER, PASSWORD = "viewer", "controls-test"
FAST_HASH = generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")
# The C920's controls, in the driver's order (what v4l2-ctl --list-ctrls shows).
C920 = [
    "brightness",
    "contrast",
    "saturation",
    "white_balance_automatic",
    "gain",
    "power_line_frequency",
    "white_balance_temperature",
    "sharpness",
    "backlight_compensation",
    "auto_exposure",
    "exposure_time_absolute",
    "exposure_dynamic_framerate",
    "pan_absolute",
    "tilt_absolute",
    "focus_absolute",
    "focus_automatic_continuous",
    "zoom_absolute",
]


def post(url: str, body: object, **kw) -> requests.Response:
    return requests.post(url + "/controls", json=body, timeout=10, **kw)


def by_name(body: dict) -> dict[str, dict]:
    return {c["name"]: c for c in body["controls"]}


def get(proc, **kw) -> requests.Response:
    return requests.get(proc.url + "/controls", timeout=10, **kw)


# -- GET --------------------------------------------------------------------------------------
def test_get_lists_every_control_with_its_range_value_and_flags(tmp_path, spawn) -> None:
    cams = cameras(tmp_path, "c920")
    proc = streamer(spawn, cams, "--device", "/dev/video0", "--controls", "brightness=100")
    assert wait_for(lambda: health(proc)[0] == 200, 10), proc.log()
    r = get(proc)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    body = r.json()
    assert body["device"] == "/dev/video0" and body["card"] == "HD Pro Webcam C920"
    assert [c["name"] for c in body["controls"]] == C920
    controls = by_name(body)
    assert controls["focus_absolute"] == {
        "name": "focus_absolute",
        "label": "Focus, Absolute",
        "type": "int",
        "min": 0,
        "max": 250,
        "step": 5,
        "default": 0,
        "value": 0,
        "flags": ["inactive"],  # autofocus is on
        "menu": None,
    }
    assert controls["power_line_frequency"]["menu"] == [
        {"value": 0, "name": "Disabled"},
        {"value": 1, "name": "50 Hz"},
        {"value": 2, "name": "60 Hz"},
    ]
    assert controls["focus_automatic_continuous"]["type"] == "bool"
    # Every value is the camera's own, as v4l2-ctl reads it.
    assert {n: c["value"] for n, c in controls.items()} == get_controls(cams, C920)
    assert controls["brightness"]["value"] == 100  # --controls
    assert body["inventory"] == "controls:\n  brightness: 100\n"
    assert body["runtime"] == {} and body["writable"] is True

    # The values are read live: a change made by another program shows at once.
    subprocess.run(
        ["v4l2-ctl", "-d", "/dev/video0", "--set-ctrl", "brightness=90"],
        env=cams.env(dev=True),
        check=True,
        timeout=30,
    )
    assert by_name(get(proc).json())["brightness"]["value"] == 90


def test_without_a_camera_the_answers_say_why(tmp_path, spawn) -> None:
    # A synthetic source has no controls: 404 with the reason, and the page has no panel.
    synthetic = spawn("--source", "synthetic")
    for r in (get(synthetic), post(synthetic.url, {"brightness": 1})):
        assert r.status_code == 404
        assert r.json() == {
            "error": "no camera controls: the source (synthetic) is not a V4L2 camera"
        }
    page = requests.get(synthetic.url + "/", timeout=5)
    assert page.status_code == 200 and 'id="controls"' not in page.text
    assert health(synthetic)[1]["camera"] is None
    assert "snapshot_stream_camera_received" not in requests.get(synthetic.url + "/metrics").text

    # A camera that was never there: 503, with the capture's reason.
    cams = cameras(tmp_path, "c920")
    cams.unplug(0)
    absent = streamer(spawn, cams, "--device", "/dev/video0")
    r = get(absent)
    assert r.status_code == 503 and r.headers["Retry-After"] == "2"
    assert r.json()["error"] == "camera not available: the camera has not been opened yet"
    assert wait_for(lambda: get(absent).json().get("reason"), 5)
    assert get(absent).json()["reason"] == "/dev/video0: no such device (unplugged?)"
    assert post(absent.url, {"brightness": 1}).status_code == 503
    page = requests.get(absent.url + "/", timeout=5)
    assert page.status_code == 200 and 'id="controls"' in page.text

    # Unplugged after it streamed: 503 naming the device; back after the replug.
    cams.replug(0)
    assert wait_for(lambda: get(absent).status_code == 200, 10), absent.log()
    cams.unplug(0)
    r = get(absent)
    assert r.status_code == 503
    assert r.json()["error"] == "camera not available: /dev/video0: no such device (unplugged?)"
    assert "Traceback" not in absent.log()


# -- POST -------------------------------------------------------------------------------------
def test_post_changes_controls_live_in_order_with_errors_per_entry(tmp_path, spawn) -> None:
    cams = cameras(tmp_path, "c920")
    proc = streamer(spawn, cams, "--device", "/dev/video0")
    assert wait_for(lambda: health(proc)[0] == 200, 10), proc.log()

    # The manual value before its automatic mode, a menu entry by name, a boolean.
    r = post(
        proc.url,
        {
            "focus_absolute": 40,
            "focus_automatic_continuous": False,
            "power_line_frequency": "50 Hz",
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["applied"] == {
        "focus_absolute": 40,
        "focus_automatic_continuous": 0,
        "power_line_frequency": 1,
    }
    assert body["errors"] == {}
    assert get_controls(cams, body["applied"]) == body["applied"]
    # The answer carries the camera's state afterwards: focus_absolute is active now.
    assert by_name(body)["focus_absolute"]["flags"] == []
    assert body["inventory"] == (
        "controls:\n"
        "  focus_automatic_continuous: 0\n"
        "  power_line_frequency: 1  # 50 Hz\n"
        "  focus_absolute: 40\n"
    )
    assert "/dev/video0: controls changed by 127.0.0.1: focus_absolute=40, " in proc.log()

    # Bad entries are refused one by one; the good one is set.
    r = post(
        proc.url,
        {
            "zoom_absolute": 900,
            "sharpnes": 3,
            "pan_absolute": 100,
            "white_balance_temperature": 5000,
            "brightness": [1],
            "gain": 7.5,
            "contrast": 3.0,
        },
    )
    assert r.status_code == 422
    body = r.json()
    assert body["applied"] == {"contrast": 3}
    assert body["errors"]["zoom_absolute"] == (
        "zoom_absolute=900 is out of range 100..500 (default 100)"
    )
    assert body["errors"]["sharpnes"].startswith(
        "unknown control 'sharpnes'; this camera offers: auto_exposure, backlight_compensation"
    )
    assert body["errors"]["pan_absolute"] == (
        "pan_absolute=100 is not a valid step: -36000..36000 step 3600 (default 0)"
    )
    assert body["errors"]["white_balance_temperature"] == (
        "white_balance_temperature=5000 not set: it is inactive while white_balance_automatic "
        "is on: add white_balance_automatic=0 before it"
    )
    assert body["errors"]["brightness"] == (
        "brightness: must be a number, true/false or a menu entry's name (got [1])"
    )
    assert body["errors"]["gain"].startswith("gain: must be a number")
    assert set(body["errors"]) == {
        "zoom_absolute",
        "sharpnes",
        "pan_absolute",
        "white_balance_temperature",
        "brightness",
        "gain",
    }
    assert get_controls(cams, ["zoom_absolute", "contrast", "gain"]) == {
        "zoom_absolute": 100,
        "contrast": 3,
        "gain": 0,
    }
    assert health(proc)[0] == 200  # the stream goes on


@pytest.mark.parametrize(
    ("body", "content_type", "status", "error"),
    [
        (b"{not json", "application/json", 400, "the body is not valid JSON"),
        (b"[1, 2]", "application/json", 400, "the body must be a JSON object"),
        (b"{}", "application/json", 400, "the body must be a JSON object"),
        (b"", "application/json", 400, "the body must be a JSON object"),
        (b'{"gain": 1, "gain": 2}', "application/json", 400, "'gain' is named twice"),
        (b"[" * 30000 + b"]" * 30000, "application/json", 400, "the body is not valid JSON"),
        (b"\xff\xfe{", "application/json", 400, "the body is not valid JSON"),
        (
            json.dumps({f"c{i}": 1 for i in range(65)}).encode(),
            "application/json",
            400,
            "at most 64 controls per request",
        ),
        (b'{"gain": 1}', "text/plain", 415, "send the changes as JSON"),
        (b"gain=1", "application/x-www-form-urlencoded", 415, "send the changes as JSON"),
    ],
)
def test_bad_bodies_get_a_4xx_with_the_reason(
    tmp_path, spawn, body, content_type, status, error
) -> None:
    proc, cams = _one_camera(tmp_path, spawn)
    r = requests.post(
        proc.url + "/controls", data=body, headers={"Content-Type": content_type}, timeout=10
    )
    assert r.status_code == status, r.text
    assert error in r.json()["error"]
    assert get_controls(cams, ["gain"]) == {"gain": 0}


def test_a_body_over_64_kib_is_refused_unread(tmp_path, spawn) -> None:
    proc, _cams = _one_camera(tmp_path, spawn)
    big = json.dumps({"gain": 1, "pad": "x" * 70000})
    r = requests.post(
        proc.url + "/controls",
        data=big,
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert r.status_code == 413


def _one_camera(tmp_path, spawn):
    """A streamer on its own emulated camera."""
    cams = cameras(tmp_path, "c920")
    proc = streamer(spawn, cams, "--device", "/dev/video0")
    assert wait_for(lambda: get(proc).status_code == 200, 10), proc.log()
    return proc, cams


# -- who may write ----------------------------------------------------------------------------
def test_with_basic_auth_writes_need_the_password(tmp_path, spawn) -> None:
    cams = cameras(tmp_path, "c920")
    proc = streamer(
        spawn, cams, "--device", "/dev/video0", "--auth-user", USER, "--auth-hash", FAST_HASH
    )
    auth = (USER, PASSWORD)
    assert wait_for(lambda: get(proc, auth=auth).status_code == 200, 10), proc.log()
    assert post(proc.url, {"gain": 9}).status_code == 401
    assert post(proc.url, {"gain": 9}, auth=(USER, "wrong")).status_code == 401
    assert get(proc).status_code == 401
    assert get_controls(cams, ["gain"]) == {"gain": 0}
    r = post(proc.url, {"gain": 9}, auth=auth)
    assert r.status_code == 200 and r.json()["applied"] == {"gain": 9}
    assert get_controls(cams, ["gain"]) == {"gain": 9}
    assert f"controls changed by {USER} from 127.0.0.1: gain=9" in proc.log()
    page = requests.get(proc.url + "/", auth=auth, timeout=5).text
    assert "Changes need the password (HTTP Basic auth)" in page
    assert 'data-writable="1"' in page


def test_without_auth_only_loopback_and_allow_networks_may_write(tmp_path, spawn) -> None:
    outside = local_non_loopback_ipv4()
    if outside is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    cams = cameras(tmp_path, "c920")
    # Bound to loopback and to the machine's other address: connecting to the latter makes
    # the peer address that non-loopback address (see test_auth.py).
    proc = streamer(spawn, cams, "--device", "/dev/video0", "--host", f"127.0.0.1,{outside}")
    assert wait_for(lambda: get(proc).status_code == 200, 10), proc.log()
    there = f"http://{outside}:{proc.port}"

    # Reading is open to everyone who may connect; writing is not.
    r = requests.get(there + "/controls", timeout=10)
    assert r.status_code == 200 and r.json()["writable"] is False
    r = post(there, {"gain": 9})
    assert r.status_code == 403
    assert r.json()["error"] == (
        "changing controls refused: not allowed to write from here. Without a password, "
        "changes are accepted only from this machine (loopback), and your address "
        f"{outside} is not one "
        "of them: set a password (auth_user, auth_hash) or add your network to allow to "
        "change them from here."
    )
    assert get_controls(cams, ["gain"]) == {"gain": 0}
    page = requests.get(there + "/", timeout=5).text
    assert f"your address {outside} is not one of them" in page
    assert 'data-writable="0"' in page
    metrics = requests.get(proc.url + "/metrics", timeout=5).text
    assert 'snapshot_stream_requests_refused_total{status="403"} 1' in metrics
    assert f"{outside} POST /controls refused (403): not allowed to write from here" in proc.log()

    # From loopback (any 127.0.0.0/8 address) it is accepted.
    for source in ("127.0.0.1", "127.0.0.5"):
        with requests.Session() as session:
            session.mount("http://", _SourceAdapter(source))
            r = session.post(proc.url + "/controls", json={"gain": 5}, timeout=10)
        assert r.status_code == 200, (source, r.text)
    assert 'data-writable="1"' in requests.get(proc.url + "/", timeout=5).text

    # Through a reverse proxy on this machine every client is loopback: no writes then.
    for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
        r = post(proc.url, {"gain": 6}, headers={header: "for=192.0.2.7"})
        assert r.status_code == 403 and f"came through a proxy ({header})" in r.json()["error"]
    page = requests.get(proc.url + "/", headers={"X-Forwarded-For": "192.0.2.7"}, timeout=5)
    assert 'data-writable="0"' in page.text and "came through a proxy" in page.text

    # A page of another site cannot make a browser write (Sec-Fetch-Site says who asks).
    r = post(proc.url, {"gain": 6}, headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403 and "cross-site" in r.json()["error"]
    assert get_controls(cams, ["gain"]) == {"gain": 5}

    # An --allow network may write too.
    proc.stop()
    allowed = streamer(
        spawn,
        cams,
        "--device",
        "/dev/video0",
        "--host",
        f"127.0.0.1,{outside}",
        "--allow",
        f"{outside}/32",
    )
    there = f"http://{outside}:{allowed.port}"
    assert wait_for(lambda: requests.get(there + "/controls", timeout=5).ok, 10), allowed.log()
    r = post(there, {"gain": 11})
    assert r.status_code == 200, r.text
    assert get_controls(cams, ["gain"]) == {"gain": 11}
    assert "the --allow networks; your address" in requests.get(there + "/", timeout=5).text


class _SourceAdapter(requests.adapters.HTTPAdapter):
    """Connects from a chosen local address (another 127.0.0.0/8 address, say)."""

    def __init__(self, source: str) -> None:
        self._source = source
        super().__init__()

    def init_poolmanager(self, *args, **kwargs) -> None:
        kwargs["source_address"] = (self._source, 0)
        super().init_poolmanager(*args, **kwargs)


# -- persistence ------------------------------------------------------------------------------
INVENTORY = "brightness=100,power_line_frequency=1"


def test_runtime_changes_survive_a_replug_and_a_restart_returns_to_the_inventory(
    tmp_path, spawn
) -> None:
    cams = cameras(tmp_path, "c920")
    args = ("--device", "/dev/video0", "--controls", INVENTORY)
    proc = streamer(spawn, cams, *args)
    assert wait_for(lambda: get(proc).status_code == 200, 10), proc.log()
    changes = {"brightness": 200, "focus_automatic_continuous": 0, "zoom_absolute": 300}
    r = post(proc.url, changes)
    assert r.status_code == 200 and r.json()["runtime"] == {
        "brightness": 200,
        "focus_absolute": 0,  # autofocus off: the focus it left is kept too
        "focus_automatic_continuous": 0,
        "zoom_absolute": 300,
    }
    r = post(proc.url, {"focus_absolute": 60})
    assert r.status_code == 200
    now = {**changes, "focus_absolute": 60, "power_line_frequency": 1}
    assert get_controls(cams, now) == now

    # Replug: the camera is back at its defaults, and the streamer puts everything back.
    client = MjpegClient(proc.url + "/stream")
    try:
        assert real_part(client, 10) is not None
        cams.unplug(0)
        assert placeholder_part(client, 2.0) is not None
        cams.replug(0)
        assert real_part(client, 3.0) is not None, proc.log()
    finally:
        client.close()
    assert wait_for(lambda: get_controls(cams, now) == now, 3), get_controls(cams, now)
    # Turning autofocus back on hands focus to the camera; a replug does not complain.
    assert post(proc.url, {"focus_automatic_continuous": 1}).status_code == 200
    cams.unplug(0)
    time.sleep(0.5)
    cams.replug(0)
    assert wait_for(lambda: get(proc).status_code == 200, 5)
    after = {**now, "focus_automatic_continuous": 1, "focus_absolute": 0}
    assert wait_for(lambda: get_controls(cams, after) == after, 5), get_controls(cams, after)
    assert "controls: focus_absolute" not in proc.log()  # no "inactive" warning

    # A restart (the camera keeps its power) goes back to the inventory: --controls, and the
    # camera's defaults for every other control.
    proc.stop()
    restarted = streamer(spawn, cams, *args)
    assert wait_for(lambda: get(restarted).status_code == 200, 10), restarted.log()
    inventory = {
        "brightness": 100,
        "power_line_frequency": 1,
        "focus_automatic_continuous": 1,
        "zoom_absolute": 100,
    }
    assert wait_for(lambda: get_controls(cams, inventory) == inventory, 3)
    assert get(restarted).json()["runtime"] == {}
    assert (
        "/dev/video0: controls not in --controls set back to their defaults: "
        "zoom_absolute=100 (was 300)"
    ) in restarted.log()


def test_runtime_changes_come_back_after_idle_release(tmp_path, spawn) -> None:
    cams = cameras(tmp_path, "c920")
    proc = streamer(spawn, cams, "--device", "/dev/video0", "--idle-release", "1")
    requests.get(proc.url + "/snapshot.jpg", timeout=10)
    assert post(proc.url, {"gain": 50}).status_code == 200
    assert wait_for(lambda: health(proc)[1]["state"] == "idle", 10), proc.log()
    # Idle: the camera is closed, its controls can still be read and changed.
    assert post(proc.url, {"sharpness": 10}).status_code == 200
    cams.unplug(0)
    cams.replug(0)  # back at its defaults while the streamer is idle
    assert get_controls(cams, ["gain", "sharpness"]) == {"gain": 0, "sharpness": 128}
    requests.get(proc.url + "/snapshot.jpg", timeout=10)  # wakes the camera up
    wanted = {"gain": 50, "sharpness": 10}
    assert wait_for(lambda: get_controls(cams, wanted) == wanted, 5), proc.log()


# -- /healthz and /metrics: the negotiated mode and the bytes received -------------------------
def _metric(text: str, name: str) -> float:
    found = re.search(rf"^snapshot_stream_{name}(?:\{{[^}}]*\}})? (\S+)$", text, re.M)
    assert found, (name, text)
    return float(found.group(1))


def test_health_and_metrics_show_the_mode_and_the_bytes_per_second(tmp_path, spawn) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    sizes = [len(jpeg) for jpeg in write_jpegs(folder)]
    cams = cameras(tmp_path, "c920", frames=folder)
    proc = streamer(spawn, cams, "--device", "/dev/video0")
    client = MjpegClient(proc.url + "/stream")
    try:
        assert real_part(client, 10) is not None
        time.sleep(3.5)  # a full measuring window
        camera = health(proc)[1]["camera"]
        assert {k: v for k, v in camera.items() if k != "bytes_per_second"} == {
            "device": "/dev/video0",
            "format": "MJPG",
            "width": 640,
            "height": 480,
            "fps": 24.0,  # asked 25: the C920 has 24
        }
        # 24 frames a second of the injected JPEGs.
        expected = 24 * sum(sizes) / len(sizes)
        assert 0.6 * expected < camera["bytes_per_second"] < 1.4 * expected, (camera, expected)
        metrics = requests.get(proc.url + "/metrics", timeout=5).text
        assert 'snapshot_stream_camera_info{device="/dev/video0",format="MJPG"} 1' in metrics, (
            metrics
        )
        assert _metric(metrics, "camera_width_pixels") == 640
        assert _metric(metrics, "camera_height_pixels") == 480
        assert _metric(metrics, "camera_fps") == 24.0
        total = _metric(metrics, "camera_received_bytes_total")
        assert 0.6 * expected < _metric(metrics, "camera_received_bytes_per_second")

        # Unplugged: nothing arrives, the rate falls to 0 and the total stops.
        cams.unplug(0)
        assert wait_for(lambda: health(proc)[1]["camera"]["bytes_per_second"] == 0, 5)
        metrics = requests.get(proc.url + "/metrics", timeout=5).text
        stopped = _metric(metrics, "camera_received_bytes_total")
        assert stopped >= total
        assert _metric(metrics, "camera_received_bytes_per_second") == 0
        time.sleep(1)
        metrics = requests.get(proc.url + "/metrics", timeout=5).text
        assert _metric(metrics, "camera_received_bytes_total") == stopped

        cams.replug(0)
        assert real_part(client, 3.0) is not None
        assert wait_for(lambda: health(proc)[1]["camera"]["bytes_per_second"] > 0, 3)
    finally:
        client.close()


def test_a_yuyv_camera_sends_two_bytes_a_pixel(tmp_path, spawn) -> None:
    cams = cameras(tmp_path, "yuyv")
    proc = streamer(
        spawn, cams, "--device", "/dev/video0", "--width", "320", "--height", "240", "--fps", "10"
    )
    client = MjpegClient(proc.url + "/stream")
    try:
        assert real_part(client, 10) is not None
        time.sleep(3.5)
        camera = health(proc)[1]["camera"]
    finally:
        client.close()
    assert camera["format"] == "YUYV" and (camera["width"], camera["height"]) == (320, 240)
    assert camera["fps"] == 10.0
    assert 0.8 * 320 * 240 * 2 * 10 < camera["bytes_per_second"] < 1.2 * 320 * 240 * 2 * 10
