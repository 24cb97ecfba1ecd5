"""A small ctypes mirror of ``<linux/videodev2.h>``: the V4L2 ioctls the app issues itself.

OpenCV drives the stream; this module covers what OpenCV hides or lacks: the errno of a
failed stream-on (ENOSPC: no USB bandwidth; EBUSY: another program owns the camera; ENODEV:
unplugged) and every control the device offers (OpenCV maps only a dozen to ``CAP_PROP_*``).

Only structures without time fields are declared, except ``v4l2_buffer`` (see
:class:`Buffer`), so the layouts do not depend on the C library's ``time_t``. The layouts
follow the C ABI of the running interpreter through ctypes (pointer size and alignment differ
between 32- and 64-bit ARM); app/tests/test_videodev.py compares them, and every ioctl number,
with the system's ``<linux/videodev2.h>`` compiled by gcc.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import fcntl
import os
from collections.abc import Iterator
from typing import Any

# -- ioctl number encoding (asm-generic: x86, ARM and arm64) ---------------------------------
_IOC_WRITE = 1
_IOC_READ = 2


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (ord("V") << 8) | nr


def _iow(nr: int, struct: type[ctypes._CData] | ctypes._CData) -> int:
    return _ioc(_IOC_WRITE, nr, ctypes.sizeof(struct))


def _ior(nr: int, struct: type[ctypes._CData] | ctypes._CData) -> int:
    return _ioc(_IOC_READ, nr, ctypes.sizeof(struct))


def _iowr(nr: int, struct: type[ctypes._CData] | ctypes._CData) -> int:
    return _ioc(_IOC_READ | _IOC_WRITE, nr, ctypes.sizeof(struct))


# -- constants --------------------------------------------------------------------------------
BUF_TYPE_VIDEO_CAPTURE = 1
MEMORY_MMAP = 1
FIELD_ANY = 0
BUF_FLAG_ERROR = 0x00000040

CAP_VIDEO_CAPTURE = 0x00000001
CAP_VIDEO_CAPTURE_MPLANE = 0x00001000
CAP_META_CAPTURE = 0x00800000
CAP_STREAMING = 0x04000000
CAP_DEVICE_CAPS = 0x80000000

CTRL_TYPE_INTEGER = 1
CTRL_TYPE_BOOLEAN = 2
CTRL_TYPE_MENU = 3
CTRL_TYPE_BUTTON = 4
CTRL_TYPE_INTEGER64 = 5
CTRL_TYPE_CTRL_CLASS = 6
CTRL_TYPE_STRING = 7
CTRL_TYPE_BITMASK = 8
CTRL_TYPE_INTEGER_MENU = 9

CTRL_FLAG_DISABLED = 0x0001
CTRL_FLAG_GRABBED = 0x0002
CTRL_FLAG_READ_ONLY = 0x0004
CTRL_FLAG_UPDATE = 0x0008
CTRL_FLAG_INACTIVE = 0x0010
CTRL_FLAG_SLIDER = 0x0020
CTRL_FLAG_WRITE_ONLY = 0x0040
CTRL_FLAG_VOLATILE = 0x0080
CTRL_FLAG_HAS_PAYLOAD = 0x0100
CTRL_FLAG_EXECUTE_ON_WRITE = 0x0200
CTRL_FLAG_MODIFY_LAYOUT = 0x0400
CTRL_FLAG_NEXT_CTRL = 0x80000000
CTRL_FLAG_NEXT_COMPOUND = 0x40000000

CTRL_WHICH_CUR_VAL = 0

FRMSIZE_TYPE_DISCRETE = 1
FRMIVAL_TYPE_DISCRETE = 1


def fourcc(text: str) -> int:
    """The V4L2 pixel format code of a four-character name such as 'MJPG'."""
    raw = text.encode("ascii").ljust(4, b" ")
    return raw[0] | raw[1] << 8 | raw[2] << 16 | raw[3] << 24


def fourcc_name(code: int) -> str:
    return bytes((code >> (8 * i)) & 0xFF for i in range(4)).decode("latin-1").rstrip("\0 ")


PIX_FMT_MJPEG = fourcc("MJPG")
PIX_FMT_YUYV = fourcc("YUYV")


# -- structures -------------------------------------------------------------------------------
class Capability(ctypes.Structure):
    _fields_ = (
        ("driver", ctypes.c_char * 16),
        ("card", ctypes.c_char * 32),
        ("bus_info", ctypes.c_char * 32),
        ("version", ctypes.c_uint32),
        ("capabilities", ctypes.c_uint32),
        ("device_caps", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32 * 3),
    )


class FmtDesc(ctypes.Structure):
    _fields_ = (
        ("index", ctypes.c_uint32),
        ("type", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("description", ctypes.c_char * 32),
        ("pixelformat", ctypes.c_uint32),
        ("mbus_code", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32 * 3),
    )


class PixFormat(ctypes.Structure):
    _fields_ = (
        ("width", ctypes.c_uint32),
        ("height", ctypes.c_uint32),
        ("pixelformat", ctypes.c_uint32),
        ("field", ctypes.c_uint32),
        ("bytesperline", ctypes.c_uint32),
        ("sizeimage", ctypes.c_uint32),
        ("colorspace", ctypes.c_uint32),
        ("priv", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("ycbcr_enc", ctypes.c_uint32),
        ("quantization", ctypes.c_uint32),
        ("xfer_func", ctypes.c_uint32),
    )


class _FormatUnion(ctypes.Union):
    # The kernel's union also holds struct v4l2_window, whose pointers give the union
    # pointer alignment: 8 on 64-bit (sizeof(v4l2_format) == 208), 4 on 32-bit (204).
    _fields_ = (
        ("pix", PixFormat),
        ("raw_data", ctypes.c_uint8 * 200),
        ("_align", ctypes.c_void_p),
    )


class Format(ctypes.Structure):
    _fields_ = (("type", ctypes.c_uint32), ("fmt", _FormatUnion))


class Fract(ctypes.Structure):
    _fields_ = (("numerator", ctypes.c_uint32), ("denominator", ctypes.c_uint32))


class CaptureParm(ctypes.Structure):
    _fields_ = (
        ("capability", ctypes.c_uint32),
        ("capturemode", ctypes.c_uint32),
        ("timeperframe", Fract),
        ("extendedmode", ctypes.c_uint32),
        ("readbuffers", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32 * 4),
    )


class _ParmUnion(ctypes.Union):
    _fields_ = (("capture", CaptureParm), ("raw_data", ctypes.c_uint8 * 200))


class StreamParm(ctypes.Structure):
    _fields_ = (("type", ctypes.c_uint32), ("parm", _ParmUnion))


class RequestBuffers(ctypes.Structure):
    _fields_ = (
        ("count", ctypes.c_uint32),
        ("type", ctypes.c_uint32),
        ("memory", ctypes.c_uint32),
        ("capabilities", ctypes.c_uint32),
        ("flags", ctypes.c_uint8),
        ("reserved", ctypes.c_uint8 * 3),
    )


class _Timeval(ctypes.Structure):
    # Two C longs: the kernel's native layout on 64-bit, and its "time32" layout on 32-bit
    # ARM, which the kernel keeps accepting (VIDIOC_QBUF_TIME32) next to the 64-bit time_t
    # one. The ioctl number is computed from this size, so number and layout always agree.
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long))


class _Timecode(ctypes.Structure):
    _fields_ = (
        ("type", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("frames", ctypes.c_uint8),
        ("seconds", ctypes.c_uint8),
        ("minutes", ctypes.c_uint8),
        ("hours", ctypes.c_uint8),
        ("userbits", ctypes.c_uint8 * 4),
    )


class _BufferM(ctypes.Union):
    _fields_ = (
        ("offset", ctypes.c_uint32),
        ("userptr", ctypes.c_ulong),
        ("planes", ctypes.c_void_p),
        ("fd", ctypes.c_int32),
    )


class Buffer(ctypes.Structure):
    """struct v4l2_buffer: the app queues one before a stream-on probe; the emulated camera's
    capture client (tests/fakecam/v4l2probe.py) streams with it."""

    _fields_ = (
        ("index", ctypes.c_uint32),
        ("type", ctypes.c_uint32),
        ("bytesused", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("field", ctypes.c_uint32),
        ("timestamp", _Timeval),
        ("timecode", _Timecode),
        ("sequence", ctypes.c_uint32),
        ("memory", ctypes.c_uint32),
        ("m", _BufferM),
        ("length", ctypes.c_uint32),
        ("reserved2", ctypes.c_uint32),
        ("request_fd", ctypes.c_int32),
    )


class Control(ctypes.Structure):
    _fields_ = (("id", ctypes.c_uint32), ("value", ctypes.c_int32))


class QueryCtrl(ctypes.Structure):
    _fields_ = (
        ("id", ctypes.c_uint32),
        ("type", ctypes.c_uint32),
        ("name", ctypes.c_char * 32),
        ("minimum", ctypes.c_int32),
        ("maximum", ctypes.c_int32),
        ("step", ctypes.c_int32),
        ("default_value", ctypes.c_int32),
        ("flags", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32 * 2),
    )


class QueryExtCtrl(ctypes.Structure):
    _fields_ = (
        ("id", ctypes.c_uint32),
        ("type", ctypes.c_uint32),
        ("name", ctypes.c_char * 32),
        ("minimum", ctypes.c_int64),
        ("maximum", ctypes.c_int64),
        ("step", ctypes.c_uint64),
        ("default_value", ctypes.c_int64),
        ("flags", ctypes.c_uint32),
        ("elem_size", ctypes.c_uint32),
        ("elems", ctypes.c_uint32),
        ("nr_of_dims", ctypes.c_uint32),
        ("dims", ctypes.c_uint32 * 4),
        ("reserved", ctypes.c_uint32 * 32),
    )


class _MenuUnion(ctypes.Union):
    _pack_ = 1
    _fields_ = (("name", ctypes.c_char * 32), ("value", ctypes.c_int64))


class QueryMenu(ctypes.Structure):
    _pack_ = 1
    _fields_ = (
        ("id", ctypes.c_uint32),
        ("index", ctypes.c_uint32),
        ("u", _MenuUnion),
        ("reserved", ctypes.c_uint32),
    )


class _ExtValue(ctypes.Union):
    _pack_ = 1
    _fields_ = (("value", ctypes.c_int32), ("value64", ctypes.c_int64), ("ptr", ctypes.c_void_p))


class ExtControl(ctypes.Structure):
    _pack_ = 1
    _fields_ = (
        ("id", ctypes.c_uint32),
        ("size", ctypes.c_uint32),
        ("reserved2", ctypes.c_uint32),
        ("u", _ExtValue),
    )


class ExtControls(ctypes.Structure):
    _fields_ = (
        ("which", ctypes.c_uint32),
        ("count", ctypes.c_uint32),
        ("error_idx", ctypes.c_uint32),
        ("request_fd", ctypes.c_int32),
        ("reserved", ctypes.c_uint32),
        ("controls", ctypes.POINTER(ExtControl)),
    )


class _Discrete(ctypes.Structure):
    _fields_ = (("width", ctypes.c_uint32), ("height", ctypes.c_uint32))


class _Stepwise(ctypes.Structure):
    _fields_ = (
        ("min_width", ctypes.c_uint32),
        ("max_width", ctypes.c_uint32),
        ("step_width", ctypes.c_uint32),
        ("min_height", ctypes.c_uint32),
        ("max_height", ctypes.c_uint32),
        ("step_height", ctypes.c_uint32),
    )


class _FrmSizeUnion(ctypes.Union):
    _fields_ = (("discrete", _Discrete), ("stepwise", _Stepwise))


class FrmSizeEnum(ctypes.Structure):
    _fields_ = (
        ("index", ctypes.c_uint32),
        ("pixel_format", ctypes.c_uint32),
        ("type", ctypes.c_uint32),
        ("u", _FrmSizeUnion),
        ("reserved", ctypes.c_uint32 * 2),
    )


class _FrmIvalStepwise(ctypes.Structure):
    _fields_ = (("min", Fract), ("max", Fract), ("step", Fract))


class _FrmIvalUnion(ctypes.Union):
    _fields_ = (("discrete", Fract), ("stepwise", _FrmIvalStepwise))


class FrmIvalEnum(ctypes.Structure):
    _fields_ = (
        ("index", ctypes.c_uint32),
        ("pixel_format", ctypes.c_uint32),
        ("width", ctypes.c_uint32),
        ("height", ctypes.c_uint32),
        ("type", ctypes.c_uint32),
        ("u", _FrmIvalUnion),
        ("reserved", ctypes.c_uint32 * 2),
    )


# -- ioctl numbers ----------------------------------------------------------------------------
VIDIOC_QUERYCAP = _ior(0, Capability)
VIDIOC_ENUM_FMT = _iowr(2, FmtDesc)
VIDIOC_G_FMT = _iowr(4, Format)
VIDIOC_S_FMT = _iowr(5, Format)
VIDIOC_REQBUFS = _iowr(8, RequestBuffers)
VIDIOC_QUERYBUF = _iowr(9, Buffer)
VIDIOC_QBUF = _iowr(15, Buffer)
VIDIOC_DQBUF = _iowr(17, Buffer)
VIDIOC_STREAMON = _iow(18, ctypes.c_int)
VIDIOC_STREAMOFF = _iow(19, ctypes.c_int)
VIDIOC_G_PARM = _iowr(21, StreamParm)
VIDIOC_S_PARM = _iowr(22, StreamParm)
VIDIOC_G_CTRL = _iowr(27, Control)
VIDIOC_S_CTRL = _iowr(28, Control)
VIDIOC_QUERYCTRL = _iowr(36, QueryCtrl)
VIDIOC_QUERYMENU = _iowr(37, QueryMenu)
VIDIOC_G_EXT_CTRLS = _iowr(71, ExtControls)
VIDIOC_S_EXT_CTRLS = _iowr(72, ExtControls)
VIDIOC_TRY_EXT_CTRLS = _iowr(73, ExtControls)
VIDIOC_ENUM_FRAMESIZES = _iowr(74, FrmSizeEnum)
VIDIOC_ENUM_FRAMEINTERVALS = _iowr(75, FrmIvalEnum)
VIDIOC_QUERY_EXT_CTRL = _iowr(103, QueryExtCtrl)


# -- what the app reads -----------------------------------------------------------------------
def control_name(label: str) -> str:
    """The name v4l2-ctl shows for a control label: 'Focus, Automatic Continuous' ->
    'focus_automatic_continuous' (lower case, runs of other characters become one '_')."""
    out: list[str] = []
    pending = False
    for ch in label:
        if ch.isascii() and ch.isalnum():
            if pending:
                out.append("_")
            pending = False
            out.append(ch.lower())
        elif out:
            pending = True
    return "".join(out)


@dataclasses.dataclass(frozen=True)
class ControlInfo:
    """One control as the device describes it (VIDIOC_QUERY_EXT_CTRL / VIDIOC_QUERYCTRL)."""

    id: int
    name: str  # v4l2-ctl's name, e.g. 'focus_absolute'
    label: str  # the driver's label, e.g. 'Focus (absolute)'
    type: int
    minimum: int
    maximum: int
    step: int
    default: int
    flags: int
    menu: tuple[tuple[int, str], ...] = ()  # (index, entry) for menu / integer-menu controls

    @property
    def inactive(self) -> bool:
        return bool(self.flags & CTRL_FLAG_INACTIVE)

    @property
    def read_only(self) -> bool:
        return bool(self.flags & (CTRL_FLAG_READ_ONLY | CTRL_FLAG_GRABBED))

    @property
    def disabled(self) -> bool:
        return bool(self.flags & CTRL_FLAG_DISABLED)

    @property
    def type_name(self) -> str:
        return _TYPE_NAMES.get(self.type, f"type{self.type}")


_TYPE_NAMES = {
    CTRL_TYPE_INTEGER: "int",
    CTRL_TYPE_BOOLEAN: "bool",
    CTRL_TYPE_MENU: "menu",
    CTRL_TYPE_BUTTON: "button",
    CTRL_TYPE_INTEGER64: "int64",
    CTRL_TYPE_CTRL_CLASS: "ctrl_class",
    CTRL_TYPE_STRING: "string",
    CTRL_TYPE_BITMASK: "bitmask",
    CTRL_TYPE_INTEGER_MENU: "intmenu",
}


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


class Device:
    """An open V4L2 node. Every method raises OSError with the kernel's errno on failure."""

    def __init__(self, path: str) -> None:
        self.path = path
        # O_NONBLOCK as OpenCV and v4l2-ctl open it; no frame is ever waited for here.
        self.fd: int | None = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)

    def ioctl(self, request: int, arg: Any) -> None:
        if self.fd is None:
            raise OSError(errno.EBADF, "device is closed")
        fcntl.ioctl(self.fd, request, arg, True)

    # -- identity and formats --
    def querycap(self) -> Capability:
        cap = Capability()
        self.ioctl(VIDIOC_QUERYCAP, cap)
        return cap

    def is_video_capture(self) -> bool:
        cap = self.querycap()
        caps = cap.device_caps if cap.capabilities & CAP_DEVICE_CAPS else cap.capabilities
        return bool(caps & CAP_VIDEO_CAPTURE)

    def formats(self) -> list[str]:
        found: list[str] = []
        for index in range(64):
            desc = FmtDesc(index=index, type=BUF_TYPE_VIDEO_CAPTURE)
            try:
                self.ioctl(VIDIOC_ENUM_FMT, desc)
            except OSError as exc:
                if exc.errno == errno.EINVAL:
                    break
                raise
            found.append(fourcc_name(desc.pixelformat))
        return found

    def get_format(self) -> tuple[str, int, int]:
        fmt = Format(type=BUF_TYPE_VIDEO_CAPTURE)
        self.ioctl(VIDIOC_G_FMT, fmt)
        pix = fmt.fmt.pix
        return fourcc_name(pix.pixelformat), pix.width, pix.height

    def set_format(self, pixel_format: str, width: int, height: int) -> tuple[str, int, int]:
        fmt = Format(type=BUF_TYPE_VIDEO_CAPTURE)
        pix = fmt.fmt.pix
        pix.width, pix.height = width, height
        pix.pixelformat, pix.field = fourcc(pixel_format), FIELD_ANY
        self.ioctl(VIDIOC_S_FMT, fmt)
        return fourcc_name(pix.pixelformat), pix.width, pix.height

    def get_rate(self) -> float:
        """Frames per second from VIDIOC_G_PARM (0.0 when the driver does not say)."""
        parm = StreamParm(type=BUF_TYPE_VIDEO_CAPTURE)
        self.ioctl(VIDIOC_G_PARM, parm)
        tpf = parm.parm.capture.timeperframe
        return tpf.denominator / tpf.numerator if tpf.numerator else 0.0

    def set_rate(self, fps: float) -> float:
        parm = StreamParm(type=BUF_TYPE_VIDEO_CAPTURE)
        # 1000/25000 rather than 1/25 keeps rates such as 7.5 fps exact.
        parm.parm.capture.timeperframe.numerator = 1000
        parm.parm.capture.timeperframe.denominator = max(1, round(fps * 1000))
        self.ioctl(VIDIOC_S_PARM, parm)
        tpf = parm.parm.capture.timeperframe
        return tpf.denominator / tpf.numerator if tpf.numerator else 0.0

    # -- streaming (used to find out why OpenCV could not stream) --
    def request_buffers(self, count: int) -> int:
        req = RequestBuffers(count=count, type=BUF_TYPE_VIDEO_CAPTURE, memory=MEMORY_MMAP)
        self.ioctl(VIDIOC_REQBUFS, req)
        return req.count

    def queue_buffer(self, index: int) -> None:
        buf = Buffer(index=index, type=BUF_TYPE_VIDEO_CAPTURE, memory=MEMORY_MMAP)
        self.ioctl(VIDIOC_QBUF, buf)

    def stream_on(self) -> None:
        self.ioctl(VIDIOC_STREAMON, ctypes.c_int(BUF_TYPE_VIDEO_CAPTURE))

    def stream_off(self) -> None:
        self.ioctl(VIDIOC_STREAMOFF, ctypes.c_int(BUF_TYPE_VIDEO_CAPTURE))

    # -- controls --
    def controls(self) -> list[ControlInfo]:
        """Every control the device offers, in the driver's order (control classes left out)."""
        found: list[ControlInfo] = []
        for info in self._query_all():
            if info.type == CTRL_TYPE_CTRL_CLASS or info.disabled:
                continue
            if info.type in (CTRL_TYPE_MENU, CTRL_TYPE_INTEGER_MENU):
                info = dataclasses.replace(info, menu=self._menu(info))
            found.append(info)
        return found

    def query(self, info: ControlInfo) -> ControlInfo:
        """``info`` with the device's current flags (an automatic mode changes INACTIVE)."""
        q = QueryExtCtrl(id=info.id)
        try:
            self.ioctl(VIDIOC_QUERY_EXT_CTRL, q)
        except OSError as exc:
            if exc.errno != errno.ENOTTY:
                raise
            old = QueryCtrl(id=info.id)
            self.ioctl(VIDIOC_QUERYCTRL, old)
            return dataclasses.replace(info, flags=old.flags)
        return dataclasses.replace(info, flags=q.flags)

    def _query_all(self) -> Iterator[ControlInfo]:
        next_id = CTRL_FLAG_NEXT_CTRL
        try:
            while True:
                q = QueryExtCtrl(id=next_id)
                self.ioctl(VIDIOC_QUERY_EXT_CTRL, q)
                yield ControlInfo(
                    q.id,
                    control_name(_text(q.name)),
                    _text(q.name),
                    q.type,
                    q.minimum,
                    q.maximum,
                    q.step,
                    q.default_value,
                    q.flags,
                )
                next_id = q.id | CTRL_FLAG_NEXT_CTRL
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                return  # past the last control
            if exc.errno != errno.ENOTTY or next_id != CTRL_FLAG_NEXT_CTRL:
                raise
        # Drivers older than VIDIOC_QUERY_EXT_CTRL (Linux 3.17) only know VIDIOC_QUERYCTRL.
        next_id = CTRL_FLAG_NEXT_CTRL
        while True:
            old = QueryCtrl(id=next_id)
            try:
                self.ioctl(VIDIOC_QUERYCTRL, old)
            except OSError as exc:
                if exc.errno == errno.EINVAL:
                    return
                raise
            yield ControlInfo(
                old.id,
                control_name(_text(old.name)),
                _text(old.name),
                old.type,
                old.minimum,
                old.maximum,
                old.step,
                old.default_value,
                old.flags,
            )
            next_id = old.id | CTRL_FLAG_NEXT_CTRL

    def _menu(self, info: ControlInfo) -> tuple[tuple[int, str], ...]:
        entries: list[tuple[int, str]] = []
        for index in range(max(0, info.minimum), info.maximum + 1):
            q = QueryMenu(id=info.id, index=index)
            try:
                self.ioctl(VIDIOC_QUERYMENU, q)
            except OSError as exc:
                if exc.errno == errno.EINVAL:
                    continue  # a hole in the menu (an index the device does not offer)
                raise
            if info.type == CTRL_TYPE_INTEGER_MENU:
                entries.append((index, str(q.u.value)))
            else:
                entries.append((index, _text(q.u.name)))
        return tuple(entries)

    def get_controls(self, infos: list[ControlInfo]) -> dict[int, int]:
        """Current values by control id, read in one VIDIOC_G_EXT_CTRLS call."""
        if not infos:
            return {}
        array = (ExtControl * len(infos))()
        for slot, info in zip(array, infos, strict=True):
            slot.id = info.id
        self._ext(VIDIOC_G_EXT_CTRLS, array)
        return {info.id: _value(slot, info) for slot, info in zip(array, infos, strict=True)}

    def get_control(self, info: ControlInfo) -> int:
        return self.get_controls([info])[info.id]

    def set_control(self, info: ControlInfo, value: int, *, try_only: bool = False) -> int:
        """Set (or with try_only, only check) one control; returns the value the driver kept."""
        array = (ExtControl * 1)()
        array[0].id = info.id
        if info.type == CTRL_TYPE_INTEGER64:
            array[0].u.value64 = value
        else:
            array[0].u.value = value
        self._ext(VIDIOC_TRY_EXT_CTRLS if try_only else VIDIOC_S_EXT_CTRLS, array)
        return _value(array[0], info)

    def _ext(self, request: int, array: ctypes.Array[ExtControl]) -> None:
        ctrls = ExtControls(which=CTRL_WHICH_CUR_VAL, count=len(array))
        ctrls.controls = ctypes.cast(array, ctypes.POINTER(ExtControl))
        self.ioctl(request, ctrls)


def _value(slot: ExtControl, info: ControlInfo) -> int:
    return int(slot.u.value64 if info.type == CTRL_TYPE_INTEGER64 else slot.u.value)
