from __future__ import annotations

import logging
import os

import cv2
import numpy as np
import pytest

from snapshot_stream import jpeg, v4l2
from snapshot_stream.errors import NoWorkingCamera, SourceError
from snapshot_stream.v4l2 import MJPG, DeviceSettings, Mode, NodeInfo

YUYV = cv2.VideoWriter_fourcc(*"YUYV")
H264 = cv2.VideoWriter_fourcc(*"H264")
NAMES = {
    cv2.CAP_PROP_FOURCC: "FOURCC",
    cv2.CAP_PROP_FRAME_WIDTH: "WIDTH",
    cv2.CAP_PROP_FRAME_HEIGHT: "HEIGHT",
    cv2.CAP_PROP_FPS: "FPS",
    cv2.CAP_PROP_BUFFERSIZE: "BUFFERSIZE",
    cv2.CAP_PROP_CONVERT_RGB: "CONVERT_RGB",
}
PICTURE = jpeg.encode(np.random.default_rng(3).integers(0, 256, (48, 64, 3), np.uint8), 80)


def raw(data: bytes) -> np.ndarray:
    """What OpenCV's V4L2 backend returns with MJPG and CONVERT_RGB=0: a 1xN uint8 row."""
    return np.frombuffer(data, np.uint8).reshape(1, -1).copy()


class FakeCapture:
    """Simulates a UVC camera behind cv2.VideoCapture."""

    def __init__(
        self,
        *,
        opened: bool = True,
        formats: tuple[int, ...] = (MJPG, YUYV),
        max_size: tuple[int, int] = (1920, 1080),
        max_fps: float = 30.0,
        frames: list[np.ndarray] | None = None,
    ) -> None:
        self.opened = opened
        self.formats = formats
        self.max_size = max_size
        self.max_fps = max_fps
        self.frames = list(frames) if frames is not None else [raw(PICTURE)] * 3
        self.props = {
            cv2.CAP_PROP_FOURCC: float(formats[0] if MJPG not in formats else YUYV),
            cv2.CAP_PROP_FRAME_WIDTH: 640.0,
            cv2.CAP_PROP_FRAME_HEIGHT: 480.0,
            cv2.CAP_PROP_FPS: 30.0,
            cv2.CAP_PROP_BUFFERSIZE: 4.0,
            cv2.CAP_PROP_CONVERT_RGB: 1.0,
        }
        self.sets: list[tuple[str, float]] = []
        self.released = False
        self.reads = 0

    def isOpened(self) -> bool:
        return self.opened

    def set(self, propId: int, value: float) -> bool:
        self.sets.append((NAMES[propId], value))
        if propId == cv2.CAP_PROP_FOURCC:
            if int(value) not in self.formats:
                return False
        elif propId == cv2.CAP_PROP_FRAME_WIDTH:
            value = min(value, self.max_size[0])
        elif propId == cv2.CAP_PROP_FRAME_HEIGHT:
            value = min(value, self.max_size[1])
        elif propId == cv2.CAP_PROP_FPS:
            value = min(value, self.max_fps)
        elif propId == cv2.CAP_PROP_CONVERT_RGB and self.props[cv2.CAP_PROP_FOURCC] != MJPG:
            return False
        self.props[propId] = float(value)
        return True

    def get(self, propId: int) -> float:
        return self.props[propId]

    def read(self) -> tuple[bool, np.ndarray | None]:
        self.reads += 1
        if not self.frames:
            return False, None
        return True, self.frames.pop(0)

    def release(self) -> None:
        self.released = True


@pytest.fixture(autouse=True)
def _fresh_log_memory() -> None:
    # v4l2 logs each negotiation fact once per process; every test starts a fresh "process".
    v4l2._said.clear()


class FakeProbe:
    """Stands in for the ioctl probe: every node is an MJPG capture node, nothing to diagnose."""

    def __init__(self, nodes: dict[str, NodeInfo] | None = None, why: str | None = None) -> None:
        self.nodes = nodes or {}
        self.why = why
        self.diagnosed: list[tuple[str, Mode]] = []

    def survey(self, path: str) -> NodeInfo:
        return self.nodes.get(os.path.basename(path), NodeInfo(True, True))

    def diagnose(self, path: str, mode: Mode) -> str | None:
        self.diagnosed.append((path, mode))
        return self.why


def info_and_warnings(caplog) -> tuple[list[str], list[str]]:
    records = [r for r in caplog.records if r.name == "snapshot_stream.v4l2"]
    return (
        [r.getMessage() for r in records if r.levelno == logging.INFO],
        [r.getMessage() for r in records if r.levelno == logging.WARNING],
    )


def test_fourcc_to_str() -> None:
    assert v4l2.fourcc_to_str(float(MJPG)) == "MJPG"
    assert v4l2.fourcc_to_str(float(YUYV)) == "YUYV"
    assert v4l2.fourcc_to_str(0.0) == ""
    assert v4l2.fourcc_to_str(-1.0) == ""


def test_list_devices_sorts_numerically(tmp_path) -> None:
    for name in ["video10", "video2", "video0", "vcs", "videoX", "video1p", "media0"]:
        (tmp_path / name).touch()
    assert v4l2.list_devices(str(tmp_path)) == [
        str(tmp_path / "video0"),
        str(tmp_path / "video2"),
        str(tmp_path / "video10"),
    ]
    assert v4l2.list_devices(str(tmp_path / "missing")) == []


def test_configure_accepts_mjpg_and_enables_passthrough(caplog) -> None:
    cap = FakeCapture()
    with caplog.at_level(logging.INFO, logger="snapshot_stream.v4l2"):
        settings = v4l2.configure(cap, "/dev/video0", 640, 480, 25, 1)
    assert settings == DeviceSettings("/dev/video0", "MJPG", 640, 480, 25.0, True)
    # FOURCC strictly first: UVC drivers choose sizes per format.
    assert cap.sets == [
        ("FOURCC", MJPG),
        ("WIDTH", 640),
        ("HEIGHT", 480),
        ("FPS", 25),
        ("BUFFERSIZE", 1),
        ("CONVERT_RGB", 0),
    ]
    infos, warnings = info_and_warnings(caplog)
    assert infos == ["/dev/video0: MJPG 640x480 @ 25 fps (asked 640x480 @ 25), passthrough on"]
    assert warnings == []


def test_configure_falls_back_when_mjpg_is_refused(caplog) -> None:
    cap = FakeCapture(formats=(YUYV,))
    with caplog.at_level(logging.INFO, logger="snapshot_stream.v4l2"):
        settings = v4l2.configure(cap, "/dev/video0", 640, 480, 15, 2)
    assert settings == DeviceSettings("/dev/video0", "YUYV", 640, 480, 15.0, False)
    assert ("CONVERT_RGB", 0) not in cap.sets
    assert cap.props[cv2.CAP_PROP_CONVERT_RGB] == 1
    infos, warnings = info_and_warnings(caplog)
    assert infos == ["/dev/video0: YUYV 640x480 @ 15 fps (asked 640x480 @ 15), passthrough off"]
    assert len(warnings) == 1 and "MJPG refused" in warnings[0]


def test_configure_asks_for_yuyv_explicitly_when_left_in_another_format(caplog) -> None:
    cap = FakeCapture(formats=(H264, YUYV))
    cap.props[cv2.CAP_PROP_FOURCC] = float(H264)
    with caplog.at_level(logging.INFO, logger="snapshot_stream.v4l2"):
        settings = v4l2.configure(cap, "/dev/video0", 320, 240, 10, 1)
    assert settings.fourcc == "YUYV" and not settings.passthrough
    # The size and rate are asked again after the format change, again format first.
    assert cap.sets == [
        ("FOURCC", MJPG),
        ("WIDTH", 320),
        ("HEIGHT", 240),
        ("FPS", 10),
        ("BUFFERSIZE", 1),
        ("FOURCC", YUYV),
        ("WIDTH", 320),
        ("HEIGHT", 240),
        ("FPS", 10),
    ]
    _, warnings = info_and_warnings(caplog)
    assert "device reports H264" in warnings[0]


def test_configure_warns_when_the_camera_clamps(caplog) -> None:
    cap = FakeCapture(max_size=(1280, 720), max_fps=15)
    with caplog.at_level(logging.INFO, logger="snapshot_stream.v4l2"):
        settings = v4l2.configure(cap, "/dev/video0", 1920, 1080, 30, 1)
    assert (settings.width, settings.height, settings.fps) == (1280, 720, 15.0)
    assert settings.passthrough
    infos, warnings = info_and_warnings(caplog)
    assert infos == ["/dev/video0: MJPG 1280x720 @ 15 fps (asked 1920x1080 @ 30), passthrough on"]
    assert warnings == [
        "/dev/video0: camera gives 1280x720 instead of 1920x1080",
        "/dev/video0: camera runs at 15 fps instead of 30",
    ]


def test_configure_without_convert_rgb_support(caplog) -> None:
    cap = FakeCapture()
    original_set = cap.set

    def set_without_convert(propId: int, value: float) -> bool:
        if propId == cv2.CAP_PROP_CONVERT_RGB:
            cap.sets.append(("CONVERT_RGB", value))
            return False
        return original_set(propId, value)

    cap.set = set_without_convert  # type: ignore[method-assign]
    with caplog.at_level(logging.INFO, logger="snapshot_stream.v4l2"):
        settings = v4l2.configure(cap, "/dev/video0", 640, 480, 25, 1)
    assert settings.fourcc == "MJPG" and not settings.passthrough
    _, warnings = info_and_warnings(caplog)
    assert any("CONVERT_RGB=0 refused" in w for w in warnings)


def test_open_device_missing_path(tmp_path) -> None:
    opened: list[str] = []
    path = str(tmp_path / "video9")
    with pytest.raises(SourceError) as excinfo:
        v4l2.open_device(path, 640, 480, 25, 1, opener=lambda p: opened.append(p) or FakeCapture())
    assert str(excinfo.value) == f"cannot open {path}: no such device"
    assert opened == []


def test_open_device_not_opened_is_released(tmp_path) -> None:
    (tmp_path / "video0").touch()
    cap = FakeCapture(opened=False)
    probe = FakeProbe()
    with pytest.raises(
        SourceError, match=r"^cannot open .*/video0: not a capture device, or busy$"
    ):
        v4l2.open_device(
            str(tmp_path / "video0"), 640, 480, 25, 1, opener=lambda p: cap, probe=probe
        )
    assert cap.released
    # The probe asked for what OpenCV would have negotiated first.
    assert probe.diagnosed == [(str(tmp_path / "video0"), Mode("MJPG", 640, 480, 25))]


def test_open_device_not_opened_says_what_the_probe_found(tmp_path) -> None:
    (tmp_path / "video0").touch()
    with pytest.raises(SourceError, match=r"^cannot open .*/video0: device busy: "):
        v4l2.open_device(
            str(tmp_path / "video0"),
            640,
            480,
            25,
            1,
            opener=lambda p: FakeCapture(opened=False),
            probe=FakeProbe(why=v4l2.BUSY),
        )


def test_open_device_on_a_regular_file_is_not_a_v4l2_device(tmp_path) -> None:
    # The real probe: QUERYCAP on a regular file fails with ENOTTY.
    (tmp_path / "video0").touch()
    with pytest.raises(SourceError, match=r"^cannot open .*/video0: not a V4L2 device$"):
        v4l2.open_device(
            str(tmp_path / "video0"), 640, 480, 25, 1, opener=lambda p: FakeCapture(opened=False)
        )


def test_open_device_opener_raising(tmp_path) -> None:
    (tmp_path / "video0").touch()

    def broken(path: str) -> FakeCapture:
        raise cv2.error("backend exploded")

    with pytest.raises(SourceError, match="backend exploded"):
        v4l2.open_device(str(tmp_path / "video0"), 640, 480, 25, 1, opener=broken)


def test_open_device_permission_denied(tmp_path, monkeypatch) -> None:
    (tmp_path / "video0").touch()
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(SourceError, match="permission denied"):
        v4l2.open_device(str(tmp_path / "video0"), 640, 480, 25, 1, opener=lambda p: FakeCapture())


def test_open_device_by_id_symlink(tmp_path, caplog) -> None:
    node = tmp_path / "video0"
    node.touch()
    (tmp_path / "by-id").mkdir()
    link = tmp_path / "by-id" / "usb-Cam_123-video-index0"
    link.symlink_to(node)
    opened: list[str] = []
    cap = FakeCapture()

    def opener(path: str) -> FakeCapture:
        opened.append(path)
        return cap

    with caplog.at_level(logging.INFO, logger="snapshot_stream.v4l2"):
        got, settings = v4l2.open_device(str(link), 640, 480, 25, 1, opener=opener)
    assert got is cap and opened == [str(link)]  # the path is passed as given
    assert settings.path == str(link)
    infos, _ = info_and_warnings(caplog)
    assert infos[0].startswith(f"{link} ({node}): MJPG 640x480")


def make_nodes(tmp_path, *names: str) -> str:
    for name in names:
        (tmp_path / name).touch()
    return str(tmp_path)


def first_working(dev: str, opener, probe=None):
    """v4l2.first_working at 640x480, 25 fps, buffer 1, over the nodes in ``dev``."""
    return v4l2.first_working(
        640, 480, 25, 1, opener=opener, dev_dir=dev, probe=probe or FakeProbe()
    )


def test_first_working_skips_metadata_and_broken_nodes(tmp_path) -> None:
    dev = make_nodes(tmp_path, "video0", "video1", "video2", "video10")
    metadata = FakeCapture(frames=[])  # opens, never yields a frame
    working = FakeCapture()
    caps = {"video0": metadata, "video1": FakeCapture(opened=False), "video2": working}
    tried: list[str] = []

    def opener(path: str) -> FakeCapture:
        tried.append(os.path.basename(path))
        return caps.get(os.path.basename(path), FakeCapture())

    cap, settings, frame = first_working(dev, opener)
    assert cap is working and settings.path == os.path.join(dev, "video2")
    assert tried == ["video0", "video1", "video2"]  # stops at the first working one
    assert metadata.released and caps["video1"].released and not working.released
    assert v4l2.decode_frame(frame, settings) == PICTURE


def test_first_working_retries_corrupt_first_frames(tmp_path) -> None:
    dev = make_nodes(tmp_path, "video0")
    cap = FakeCapture(frames=[raw(b"\0" * 2000), raw(PICTURE[:900]), raw(PICTURE)])
    _, settings, frame = first_working(dev, lambda p: cap)
    assert v4l2.decode_frame(frame, settings) == PICTURE


def test_first_working_gives_up_on_a_device_quickly(tmp_path) -> None:
    # Each failed read costs OpenCV's select() timeout on real hardware: read once only.
    dev = make_nodes(tmp_path, "video0", "video1")
    metadata = FakeCapture(frames=[])
    garbage = FakeCapture(frames=[raw(b"\1" * 1000)] * 100)
    caps = {"video0": metadata, "video1": garbage}
    with pytest.raises(SourceError, match="no frame"):
        first_working(dev, lambda p: caps[os.path.basename(p)])
    assert metadata.reads == 1
    assert garbage.reads == v4l2.FIRST_FRAME_ATTEMPTS


def test_first_working_reports_every_failure(tmp_path) -> None:
    dev = make_nodes(tmp_path, "video0", "video1")
    caps = {"video0": FakeCapture(frames=[]), "video1": FakeCapture(opened=False)}
    with pytest.raises(NoWorkingCamera) as excinfo:
        first_working(dev, lambda p: caps[os.path.basename(p)])
    assert str(excinfo.value) == (
        f"no working camera: {dev}/video0: no frame (read failed); "
        f"{dev}/video1: cannot open (not a capture device, or busy)"
    )
    assert all(c.released for c in caps.values())


def test_first_working_without_devices(tmp_path) -> None:
    with pytest.raises(
        NoWorkingCamera, match=rf"^no working camera: no {tmp_path}/video\* devices$"
    ):
        v4l2.first_working(640, 480, 25, 1, opener=lambda p: FakeCapture(), dev_dir=str(tmp_path))


PASSTHROUGH = DeviceSettings("/dev/video0", "MJPG", 64, 48, 25.0, True)
DECODED = DeviceSettings("/dev/video0", "YUYV", 64, 48, 25.0, False)


@pytest.mark.parametrize(
    "frame",
    [raw(PICTURE), raw(PICTURE).reshape(-1), raw(PICTURE + b"\0" * 3000)],
    ids=["row", "flat", "zero-padded"],
)
def test_decode_frame_passthrough_returns_the_camera_bytes(frame) -> None:
    out = v4l2.decode_frame(frame, PASSTHROUGH)
    assert isinstance(out, bytes) and out == PICTURE


def test_decode_frame_passthrough_corrupt() -> None:
    with pytest.raises(SourceError, match=r"^corrupt frame$"):
        v4l2.decode_frame(raw(PICTURE[:-10]), PASSTHROUGH)


def test_decode_frame_returns_images_unchanged() -> None:
    image = np.zeros((48, 64, 3), np.uint8)
    assert v4l2.decode_frame(image, DECODED) is image
    # A backend that decoded anyway still yields a usable image.
    assert v4l2.decode_frame(image, PASSTHROUGH) is image


def test_first_working_prefers_mjpg_cameras_and_skips_other_nodes(tmp_path, caplog) -> None:
    dev = make_nodes(tmp_path, "video0", "video1", "video2", "video3")
    probe = FakeProbe(
        {
            "video0": NodeInfo(False, False, "not a video capture node (metadata?)"),
            "video1": NodeInfo(True, False),  # YUYV only
            "video2": NodeInfo(True, True),
            "video3": NodeInfo(True, True),
        }
    )
    yuyv = FakeCapture(formats=(YUYV,), frames=[np.zeros((480, 640, 3), np.uint8)])
    caps = {"video1": yuyv, "video2": FakeCapture(frames=[]), "video3": FakeCapture(opened=False)}
    tried: list[str] = []

    def opener(path: str) -> FakeCapture:
        tried.append(os.path.basename(path))
        return caps[os.path.basename(path)]

    with caplog.at_level(logging.INFO, logger="snapshot_stream.v4l2"):
        cap, settings, _ = first_working(dev, opener, probe)
    # MJPG cameras first, in node order; the metadata node is never opened in OpenCV.
    assert tried == ["video2", "video3", "video1"]
    assert cap is yuyv and settings.fourcc == "YUYV" and not settings.passthrough
    infos, _ = info_and_warnings(caplog)
    assert f"{dev}/video1: no MJPG camera delivered a frame, using this one" in infos


def test_first_working_lists_skipped_nodes_in_node_order(tmp_path) -> None:
    dev = make_nodes(tmp_path, "video0", "video1")
    probe = FakeProbe({"video0": NodeInfo(False, False, "not a V4L2 device")})
    with pytest.raises(NoWorkingCamera) as excinfo:
        first_working(dev, lambda p: FakeCapture(frames=[]), probe)
    assert str(excinfo.value) == (
        f"no working camera: {dev}/video0: not a V4L2 device; {dev}/video1: no frame (read failed)"
    )


def test_limit_frame_wait_keeps_a_user_value(monkeypatch) -> None:
    monkeypatch.delenv(v4l2.SELECT_TIMEOUT_ENV, raising=False)
    assert v4l2.limit_frame_wait(25) == 2
    assert os.environ[v4l2.SELECT_TIMEOUT_ENV] == "2"
    monkeypatch.delenv(v4l2.SELECT_TIMEOUT_ENV)
    assert v4l2.limit_frame_wait(1) == 3  # three frame periods at 1 fps
    monkeypatch.setenv(v4l2.SELECT_TIMEOUT_ENV, "7")
    assert v4l2.limit_frame_wait(25) == 7


def test_bandwidth_reason_says_what_to_do() -> None:
    yuyv = v4l2.bandwidth_reason(Mode("YUYV", 1280, 720, 10))
    assert "USB bandwidth" in yuyv and "use MJPG" in yuyv and "another USB bus" in yuyv
    mjpg = v4l2.bandwidth_reason(Mode("MJPG", 1920, 1080, 30))
    assert "MJPG 1920x1080 @ 30 fps" in mjpg and "use MJPG" not in mjpg
    assert "smaller --width/--height or --fps" in mjpg


class _CallsLogLevel:
    def __init__(self) -> None:
        self.levels: list[int] = []

    def setLogLevel(self, level: int) -> None:
        self.levels.append(level)


def test_quiet_opencv_on_opencv_4_6_uses_the_top_level_call(monkeypatch) -> None:
    # Debian bookworm's python3-opencv 4.6 has cv2.setLogLevel but no cv2.utils.logging: the
    # apt install method must start the camera there too.
    old = _CallsLogLevel()
    monkeypatch.setattr(v4l2, "cv2", old)
    v4l2.quiet_opencv()
    assert old.levels == [2]  # cv::utils::logging::LOG_LEVEL_ERROR


def test_quiet_opencv_stays_out_of_the_way_at_debug(monkeypatch) -> None:
    old = _CallsLogLevel()
    monkeypatch.setattr(v4l2, "cv2", old)
    logger = logging.getLogger("snapshot_stream")
    monkeypatch.setattr(logger, "level", logging.DEBUG)
    v4l2.quiet_opencv()
    assert old.levels == []
