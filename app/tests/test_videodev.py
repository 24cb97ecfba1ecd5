"""The ctypes mirror of <linux/videodev2.h> against the real header, compiled by gcc."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest

from snapshot_stream import videodev as vd

# (ctypes structure, C struct name, fields whose offsets must agree)
STRUCTS = [
    (
        vd.Capability,
        "v4l2_capability",
        ["driver", "card", "bus_info", "capabilities", "device_caps"],
    ),
    (vd.FmtDesc, "v4l2_fmtdesc", ["index", "type", "flags", "description", "pixelformat"]),
    (vd.Format, "v4l2_format", ["type", "fmt"]),
    (vd.PixFormat, "v4l2_pix_format", ["width", "height", "pixelformat", "field", "sizeimage"]),
    (vd.StreamParm, "v4l2_streamparm", ["type", "parm"]),
    (vd.CaptureParm, "v4l2_captureparm", ["capability", "timeperframe", "readbuffers"]),
    (vd.RequestBuffers, "v4l2_requestbuffers", ["count", "type", "memory", "capabilities"]),
    (
        vd.Buffer,
        "v4l2_buffer",
        ["index", "type", "flags", "timestamp", "timecode", "sequence", "memory", "m", "length"],
    ),
    (vd.Control, "v4l2_control", ["id", "value"]),
    (vd.QueryCtrl, "v4l2_queryctrl", ["id", "type", "name", "minimum", "default_value", "flags"]),
    (
        vd.QueryExtCtrl,
        "v4l2_query_ext_ctrl",
        ["id", "type", "name", "minimum", "maximum", "step", "default_value", "flags", "dims"],
    ),
    (vd.QueryMenu, "v4l2_querymenu", ["id", "index", "reserved"]),
    (vd.ExtControl, "v4l2_ext_control", ["id", "size"]),
    (vd.ExtControls, "v4l2_ext_controls", ["count", "error_idx", "request_fd", "controls"]),
    (vd.FrmSizeEnum, "v4l2_frmsizeenum", ["index", "pixel_format", "type", "reserved"]),
    (vd.FrmIvalEnum, "v4l2_frmivalenum", ["index", "pixel_format", "width", "type", "reserved"]),
]
IOCTLS = [name for name in dir(vd) if name.startswith("VIDIOC_")]
CONSTANTS = {
    "V4L2_CAP_VIDEO_CAPTURE": vd.CAP_VIDEO_CAPTURE,
    "V4L2_CAP_DEVICE_CAPS": vd.CAP_DEVICE_CAPS,
    "V4L2_CTRL_FLAG_NEXT_CTRL": vd.CTRL_FLAG_NEXT_CTRL,
    "V4L2_CTRL_FLAG_INACTIVE": vd.CTRL_FLAG_INACTIVE,
    "V4L2_CTRL_FLAG_READ_ONLY": vd.CTRL_FLAG_READ_ONLY,
    "V4L2_CTRL_TYPE_INTEGER_MENU": vd.CTRL_TYPE_INTEGER_MENU,
    "V4L2_CTRL_TYPE_CTRL_CLASS": vd.CTRL_TYPE_CTRL_CLASS,
    "V4L2_PIX_FMT_MJPEG": vd.PIX_FMT_MJPEG,
    "V4L2_PIX_FMT_YUYV": vd.PIX_FMT_YUYV,
}


def _c_program() -> str:
    lines = [
        "#include <stdio.h>",
        "#include <stddef.h>",
        "#include <linux/videodev2.h>",
        "int main(void) {",
    ]
    for _cls, cname, fields in STRUCTS:
        lines.append(f'printf("sizeof {cname} %zu\\n", sizeof(struct {cname}));')
        for field in fields:
            lines.append(
                f'printf("offsetof {cname}.{field} %zu\\n", offsetof(struct {cname}, {field}));'
            )
    for name in IOCTLS + list(CONSTANTS):
        lines.append(f'printf("value {name} %lu\\n", (unsigned long)({name}));')
    lines += ["return 0;", "}"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def header_facts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    gcc = shutil.which("gcc")
    assert gcc, "gcc is needed (scripts/ci-setup installs it)"
    work: Path = tmp_path_factory.mktemp("videodev")
    (work / "facts.c").write_text(_c_program())
    subprocess.run([gcc, "-o", str(work / "facts"), str(work / "facts.c")], check=True)
    out = subprocess.run([str(work / "facts")], check=True, capture_output=True, text=True)
    facts: dict[str, int] = {}
    for line in out.stdout.splitlines():
        kind, name, value = line.split()
        facts[f"{kind} {name}"] = int(value)
    return facts


@pytest.mark.parametrize(("cls", "cname", "fields"), STRUCTS, ids=[s[1] for s in STRUCTS])
def test_struct_layout_matches_the_header(header_facts, cls, cname, fields) -> None:
    assert ctypes.sizeof(cls) == header_facts[f"sizeof {cname}"]
    for field in fields:
        assert getattr(cls, field).offset == header_facts[f"offsetof {cname}.{field}"], field


@pytest.mark.parametrize("name", IOCTLS)
def test_ioctl_numbers_match_the_header(header_facts, name) -> None:
    assert getattr(vd, name) == header_facts[f"value {name}"], hex(getattr(vd, name))


@pytest.mark.parametrize("name", list(CONSTANTS))
def test_constants_match_the_header(header_facts, name) -> None:
    assert CONSTANTS[name] == header_facts[f"value {name}"]


def test_control_names_follow_v4l2_ctl() -> None:
    assert vd.control_name("Focus, Automatic Continuous") == "focus_automatic_continuous"
    assert vd.control_name("White Balance Temperature") == "white_balance_temperature"
    assert vd.control_name("Power Line Frequency") == "power_line_frequency"
    assert vd.control_name("Exposure Time, Absolute") == "exposure_time_absolute"
    assert vd.control_name("Focus (absolute)") == "focus_absolute"
    assert vd.control_name("  User Controls ") == "user_controls"


def test_fourcc_round_trip() -> None:
    assert vd.fourcc_name(vd.fourcc("MJPG")) == "MJPG"
    assert vd.fourcc_name(vd.fourcc("Y16")) == "Y16"


def test_device_on_a_regular_file_is_not_a_v4l2_node(tmp_path: Path) -> None:
    path = tmp_path / "video0"
    path.write_bytes(b"")
    with vd.Device(str(path)) as dev, pytest.raises(OSError) as excinfo:
        dev.querycap()
    assert excinfo.value.errno == 25  # ENOTTY, as for any non-V4L2 file
