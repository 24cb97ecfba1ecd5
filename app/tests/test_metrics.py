"""Tests for snapshot_stream.metrics: the output is parsed back line by line."""

from __future__ import annotations

import math
import re
from dataclasses import replace

import pytest

from snapshot_stream.metrics import (
    CONTENT_TYPE,
    STATES,
    CameraFigures,
    MetricsSnapshot,
    escape_label_value,
    format_value,
    redact_url,
    render,
)

SNAP = MetricsSnapshot(
    name="front-door",
    source="/dev/video0",
    state="streaming",
    frames_captured=1234,
    frames_served=5678,
    frames_passthrough=1200,
    frames_encoded=34,
    frames_dropped=7,
    frames_broken=5,
    frames_placeholder=9,
    clients=3,
    reconnects=2,
    encode_seconds_sum=0.125,
    encode_count=34,
    last_frame_age=0.04,
    fps_measured=24.9,
    uptime=3600.5,
)

NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')


def unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "\\": "\\", '"': '"'}[m.group(1)], value)


def parse(text: str) -> tuple[dict[str, str], dict[str, str], dict[tuple, float]]:
    """A strict little parser of the 0.0.4 text format: (types, helps, samples)."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    helps: dict[str, str] = {}
    samples: dict[tuple, float] = {}
    for line in text.splitlines():
        assert line == line.strip()
        if line.startswith("# HELP "):
            name, _, help_text = line[len("# HELP ") :].partition(" ")
            assert NAME_RE.fullmatch(name) and name not in helps
            helps[name] = help_text
            continue
        if line.startswith("# TYPE "):
            name, kind = line[len("# TYPE ") :].split(" ")
            assert kind in {"counter", "gauge", "summary", "histogram", "untyped"}
            # TYPE must come before the family's samples and only once.
            assert name not in types
            assert not any(key[0].startswith(name) for key in samples)
            types[name] = kind
            continue
        assert not line.startswith("#")
        m = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)", line)
        assert m, line
        name, _, label_text, value = m.groups()
        labels: tuple = ()
        if label_text:
            pairs = LABEL_RE.findall(label_text)
            rebuilt = ",".join(f'{k}="{v}"' for k, v in pairs)
            assert rebuilt == label_text, f"bad labels in {line!r}"
            labels = tuple((k, unescape(v)) for k, v in pairs)
        key = (name, labels)
        assert key not in samples
        samples[key] = float(value)
    return types, helps, samples


def family_of(sample_name: str, types: dict[str, str]) -> str:
    if sample_name in types:
        return sample_name
    for suffix in ("_sum", "_count"):
        base = sample_name.removesuffix(suffix)
        if types.get(base) == "summary":
            return base
    raise AssertionError(f"{sample_name} has no TYPE")


def test_content_type() -> None:
    assert CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"


def test_every_sample_has_help_and_type_and_prefix() -> None:
    types, helps, samples = parse(render(SNAP))
    assert set(types) == set(helps)
    for name, _labels in samples:
        assert name.startswith("snapshot_stream_")
        family_of(name, types)
    for name, kind in types.items():
        assert name.startswith("snapshot_stream_")
        assert (kind == "counter") == name.endswith("_total"), name


def test_values() -> None:
    types, _, s = parse(render(SNAP))
    p = "snapshot_stream_"
    expected = {
        "frames_captured_total": 1234,
        "frames_served_total": 5678,
        "frames_passthrough_total": 1200,
        "frames_encoded_total": 34,
        "frames_dropped_total": 7,
        "reconnects_total": 2,
        "clients": 3,
        "camera_up": 1,
        "fps_measured": 24.9,
        "last_frame_age_seconds": 0.04,
        "uptime_seconds": 3600.5,
        "encode_seconds_sum": 0.125,
        "encode_seconds_count": 34,
    }
    for name, value in expected.items():
        assert s[(p + name, ())] == value, name
    assert types[p + "encode_seconds"] == "summary"
    assert types[p + "clients"] == "gauge"
    assert types[p + "frames_served_total"] == "counter"
    info = (("name", "front-door"), ("source", "/dev/video0"))
    assert s[(p + "info", info)] == 1


@pytest.mark.parametrize("state", STATES)
def test_state_is_one_hot(state: str) -> None:
    _, _, s = parse(render(replace(SNAP, state=state)))
    values = {dict(labels)["state"]: v for (n, labels), v in s.items() if n.endswith("_state")}
    assert values == {st: float(st == state) for st in STATES}
    assert s[("snapshot_stream_camera_up", ())] == float(state == "streaming")


def test_unknown_state_is_all_zero() -> None:
    _, _, s = parse(render(replace(SNAP, state="weird")))
    assert not any(v for (n, _), v in s.items() if n.endswith("_state"))
    assert s[("snapshot_stream_camera_up", ())] == 0


@pytest.mark.parametrize(
    "raw",
    [
        'quote " here',
        "back\\slash",
        "new\nline",
        'all \\ " \n \\n mixed',
        "rtsp://cam:554/stream?a=1&b=2",
        "k\u00fcche \u2603",
        "",
    ],
)
def test_label_values_are_escaped(raw: str) -> None:
    text = render(replace(SNAP, name=raw, source=raw + "-src"))
    info_lines = [ln for ln in text.splitlines() if ln.startswith("snapshot_stream_info")]
    assert len(info_lines) == 1  # a newline in a label must not split the sample
    _, _, s = parse(text)
    assert s[("snapshot_stream_info", (("name", raw), ("source", raw + "-src")))] == 1


def test_escape_label_value() -> None:
    assert escape_label_value('a\\b"c\nd') == 'a\\\\b\\"c\\nd'


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"),
        (12, "12"),
        (True, "1"),
        (0.5, "0.5"),
        (1e-05, "1e-05"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
        (math.nan, "NaN"),
    ],
)
def test_format_value(value: float, text: str) -> None:
    assert format_value(value) == text


def test_non_finite_values_render_and_parse() -> None:
    _, _, s = parse(render(replace(SNAP, last_frame_age=math.inf, fps_measured=math.nan)))
    assert s[("snapshot_stream_last_frame_age_seconds", ())] == math.inf
    assert math.isnan(s[("snapshot_stream_fps_measured", ())])


def test_prometheus_client_parser_agrees_if_installed() -> None:
    parser = pytest.importorskip("prometheus_client.parser")
    text = render(replace(SNAP, camera=CAMERA))
    families = {f.name: f for f in parser.text_string_to_metric_families(text)}
    assert families["snapshot_stream_camera_received_bytes"].type == "counter"
    assert families["snapshot_stream_frames_served"].type == "counter"
    assert families["snapshot_stream_encode_seconds"].type == "summary"


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        ("http://user:secret@cam.lan:8080/stream", "http://cam.lan:8080/stream"),
        ("rtsp://admin:p%40ss@10.0.0.5:554/h264", "rtsp://10.0.0.5:554/h264"),
        ("https://token@host/x?y=a@b", "https://host/x?y=a@b"),
        ("http://cam.lan/stream?user=a@b", "http://cam.lan/stream?user=a@b"),
        ("/dev/v4l/by-id/usb-cam@1-video-index0", "/dev/v4l/by-id/usb-cam@1-video-index0"),
        ("synthetic", "synthetic"),
    ],
)
def test_source_label_never_carries_credentials(source: str, shown: str) -> None:
    assert redact_url(source) == shown
    text = render(replace(SNAP, source=source))
    assert "secret" not in text and "p%40ss" not in text
    _, _, s = parse(text)
    assert s[("snapshot_stream_info", (("name", "front-door"), ("source", shown)))] == 1


def test_refusals_are_counted_by_status_and_cap() -> None:
    snap = replace(SNAP, requests_refused={401: 12, 429: 3}, connections_refused={"per_address": 4})
    _types, _helps, samples = parse(render(snap))
    refused = "snapshot_stream_requests_refused_total"
    assert samples[(refused, (("status", "401"),))] == 12
    assert samples[(refused, (("status", "429"),))] == 3
    assert samples[(refused, (("status", "431"),))] == 0  # every status always exported
    caps = "snapshot_stream_connections_refused_total"
    assert samples[(caps, (("cap", "per_address"),))] == 4
    assert samples[(caps, (("cap", "total"),))] == 0
    assert samples[("snapshot_stream_frames_broken_total", ())] == 5
    assert samples[("snapshot_stream_frames_placeholder_total", ())] == 9


CAMERA = CameraFigures(
    device="/dev/v4l/by-id/usb-046d_HD_Pro_Webcam_C920-video-index0",
    fourcc="MJPG",
    width=640,
    height=480,
    fps=24.0,
    bytes_total=123456789,
    bytes_per_second=1103520.5,
)


def test_camera_figures() -> None:
    types, helps, s = parse(render(replace(SNAP, camera=CAMERA)))
    assert set(types) == set(helps)
    p = "snapshot_stream_"
    info = (("device", CAMERA.device), ("format", "MJPG"))
    assert s[(p + "camera_info", info)] == 1
    assert s[(p + "camera_width_pixels", ())] == 640
    assert s[(p + "camera_height_pixels", ())] == 480
    assert s[(p + "camera_fps", ())] == 24.0
    assert s[(p + "camera_received_bytes_total", ())] == 123456789
    assert types[p + "camera_received_bytes_total"] == "counter"
    assert s[(p + "camera_received_bytes_per_second", ())] == 1103520.5
    assert types[p + "camera_received_bytes_per_second"] == "gauge"


def test_camera_figures_before_the_first_open_and_for_other_sources() -> None:
    never_opened = CameraFigures(None, None, None, None, None, 0, 0.0)
    _, _, s = parse(render(replace(SNAP, camera=never_opened)))
    camera = sorted(name for name, _ in s if name.startswith("snapshot_stream_camera_"))
    assert camera == [
        "snapshot_stream_camera_received_bytes_per_second",
        "snapshot_stream_camera_received_bytes_total",
        "snapshot_stream_camera_up",
    ]
    _, _, s = parse(render(SNAP))  # not a V4L2 camera: no camera figures at all
    assert [name for name, _ in s if name.startswith("snapshot_stream_camera_")] == [
        "snapshot_stream_camera_up"
    ]
    unknown = replace(CAMERA, bytes_per_second=math.nan)
    _, _, s = parse(render(replace(SNAP, camera=unknown)))
    assert math.isnan(s[("snapshot_stream_camera_received_bytes_per_second", ())])
