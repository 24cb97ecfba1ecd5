"""The ctypes mirror of <linux/videodev2.h> against the real header, compiled by gcc."""

from __future__ import annotations

import ast
import ctypes
import inspect
import os
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
    **{f"V4L2_{name}": getattr(vd, name) for name in dir(vd) if name.startswith("CTRL_FLAG_")},
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


# -- the same definitions under other ABIs --------------------------------------------------------
# ctypes lays out a structure by the C rules of the interpreter's own platform, so a 32-bit ARM
# Pi gets the 32-bit layout of these definitions. To check them on this (64-bit) machine, the
# _fields_ of videodev.py are turned into C declarations, compiled by a cross compiler for
# armhf, and compared with the real header under the same compiler. The type names come from
# the source (ast): on x86_64, ctypes.c_int64 IS ctypes.c_long, but on armhf they differ.
_C_NAMES = {
    "c_uint8": "uint8_t",
    "c_uint32": "uint32_t",
    "c_int32": "int32_t",
    "c_int64": "int64_t",
    "c_uint64": "uint64_t",
    "c_int": "int",
    "c_long": "long",
    "c_ulong": "unsigned long",
    "c_char": "char",
    "c_void_p": "void *",
}


def _c_field(name: str, node: ast.expr) -> str:
    if isinstance(node, ast.BinOp):  # ctypes.c_char * 16
        return _c_field(name, node.left).removesuffix(";") + f"[{ast.literal_eval(node.right)}];"
    if isinstance(node, ast.Call):  # ctypes.POINTER(X)
        return f"void *{name};"
    if isinstance(node, ast.Attribute):
        return f"{_C_NAMES[node.attr]} {name};"
    assert isinstance(node, ast.Name), ast.dump(node)
    return (
        f"struct mirror_{node.id} {name};"
        if _KINDS[node.id] == "struct"
        else (f"union mirror_{node.id} {name};")
    )


def _mirror_declarations() -> str:
    tree = ast.parse(inspect.getsource(vd))
    out = []
    for cls in tree.body:
        if not isinstance(cls, ast.ClassDef) or cls.name not in _KINDS:
            continue
        fields: list[str] = []
        packed = False
        for stmt in cls.body:
            if not isinstance(stmt, ast.Assign):
                continue
            target = stmt.targets[0]
            if isinstance(target, ast.Name) and target.id == "_pack_":
                packed = True
            if isinstance(target, ast.Name) and target.id == "_fields_":
                assert isinstance(stmt.value, ast.Tuple)
                for item in stmt.value.elts:
                    assert isinstance(item, ast.Tuple)
                    fields.append(_c_field(ast.literal_eval(item.elts[0]), item.elts[1]))
        attr = " __attribute__((packed))" if packed else ""
        body = " ".join(fields)
        out.append(f"{_KINDS[cls.name]} mirror_{cls.name} {{ {body} }}{attr};")
    return "\n".join(out)


_KINDS = {
    name: ("union" if issubclass(obj, ctypes.Union) else "struct")
    for name, obj in vars(vd).items()
    if isinstance(obj, type)
    and issubclass(obj, ctypes.Structure | ctypes.Union)
    and obj.__module__ == vd.__name__
}


def _mirror_program() -> str:
    lines = [
        "#include <stdio.h>",
        "#include <stddef.h>",
        "#include <stdint.h>",
        "#include <linux/videodev2.h>",
        _mirror_declarations(),
        "int main(void) {",
    ]
    for cls, cname, fields in STRUCTS:
        for kind, expr in [
            ("header", f"struct {cname}"),
            ("mirror", f"struct mirror_{cls.__name__}"),
        ]:
            lines.append(f'printf("{kind} sizeof {cname} %zu\\n", sizeof({expr}));')
            for field in fields:
                lines.append(
                    f'printf("{kind} offsetof {cname}.{field} %zu\\n", offsetof({expr}, {field}));'
                )
    lines += ["return 0;", "}"]
    return "\n".join(lines) + "\n"


ABIS = [
    pytest.param("gcc", [], id="native"),
    # Raspberry Pi OS 32-bit up to bookworm (32-bit time_t)...
    pytest.param("arm-linux-gnueabihf-gcc", ["-static"], id="armhf"),
    # ...and Debian trixie armhf (64-bit time_t everywhere).
    pytest.param(
        "arm-linux-gnueabihf-gcc",
        ["-static", "-D_TIME_BITS=64", "-D_FILE_OFFSET_BITS=64"],
        id="armhf-time64",
    ),
]


@pytest.mark.parametrize(("compiler", "flags"), ABIS)
def test_definitions_match_the_header_under_other_abis(tmp_path, compiler, flags) -> None:
    if compiler != "gcc" and not shutil.which(compiler):
        # under `make test` (scripts/ci-setup installed it) a missing compiler fails; else skips
        message = f"{compiler} is not installed (apt-get install gcc-arm-linux-gnueabihf)"
        if os.environ.get("SNAPSHOT_STREAM_HOST_TOOLS") == "required":
            pytest.fail(message)
        pytest.skip(message)
    (tmp_path / "mirror.c").write_text(_mirror_program())
    subprocess.run(
        [compiler, *flags, "-o", str(tmp_path / "mirror"), str(tmp_path / "mirror.c")], check=True
    )
    out = subprocess.run([str(tmp_path / "mirror")], check=True, capture_output=True, text=True)
    facts: dict[str, dict[str, int]] = {"header": {}, "mirror": {}}
    for line in out.stdout.splitlines():
        kind, what, name, value = line.split()
        facts[kind][f"{what} {name}"] = int(value)
    time64 = "-D_TIME_BITS=64" in flags
    differ = {key for key in facts["header"] if facts["header"][key] != facts["mirror"][key]}
    if time64:
        # v4l2_buffer carries a struct timeval: with a 64-bit time_t on 32-bit ARM the header's
        # layout grows; videodev keeps the time32 layout, which the kernel also accepts, with
        # the ioctl number computed from it (checked in the armhf run above).
        assert differ and all("v4l2_buffer" in key for key in differ), sorted(differ)
    else:
        assert differ == set(), sorted(differ)
