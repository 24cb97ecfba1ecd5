#!/usr/bin/env python3
"""A tiny V4L2 capture client for tests: raw ioctls through libc, one JSON line per event.

    v4l2probe.py DEVICE [--fourcc MJPG] [--size 640x480] [--fps 30] [--buffers 4]
                 [--events 20] [--wait 2.0]

Opens DEVICE, sets the format and rate, maps the buffers, streams, and for each select()
prints {"event": "frame", "seq", "bytes", "flags", "error", "sha256", "soi", "eoi"} or
{"event": "timeout"}; a failing call prints {"event": "error", "call", "errno"} and, after
DQBUF or select() failures, the script goes on reporting until --events lines were printed.
Run under the emulation (fakecam-run, or Cameras.env()) it exercises the same ioctls as
OpenCV's V4L2 backend without OpenCV.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import fcntl
import hashlib
import json
import mmap
import os
import select
import struct
import sys
import time


# ioctl numbers: _IOC(dir, 'V', nr, size) with dir 1 = write, 2 = read, 3 = both
def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (ord("V") << 8) | nr


class Timeval(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_long), ("usec", ctypes.c_long)]


class Buffer(ctypes.Structure):
    _fields_ = [
        ("index", ctypes.c_uint32),
        ("type", ctypes.c_uint32),
        ("bytesused", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("field", ctypes.c_uint32),
        ("timestamp", Timeval),
        ("timecode", ctypes.c_uint8 * 16),
        ("sequence", ctypes.c_uint32),
        ("memory", ctypes.c_uint32),
        ("offset", ctypes.c_ulong),  # union m: offset / userptr / fd
        ("length", ctypes.c_uint32),
        ("reserved2", ctypes.c_uint32),
        ("request_fd", ctypes.c_int32),
    ]


FMT_SIZE = 208
PARM_SIZE = 204
VIDIOC_S_FMT = _ioc(3, 5, FMT_SIZE)
VIDIOC_REQBUFS = _ioc(3, 8, 20)
VIDIOC_QUERYBUF = _ioc(3, 9, ctypes.sizeof(Buffer))
VIDIOC_QBUF = _ioc(3, 15, ctypes.sizeof(Buffer))
VIDIOC_DQBUF = _ioc(3, 17, ctypes.sizeof(Buffer))
VIDIOC_STREAMON = _ioc(1, 18, 4)
VIDIOC_G_PARM = _ioc(3, 21, PARM_SIZE)
VIDIOC_S_PARM = _ioc(3, 22, PARM_SIZE)
CAPTURE = 1
MMAP = 1
FLAG_ERROR = 0x40


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def fourcc(text: str) -> int:
    return struct.unpack("<I", text.encode())[0]


def call(fd: int, name: str, request: int, arg: object) -> bool:
    try:
        fcntl.ioctl(fd, request, arg)
    except OSError as exc:
        emit(event="error", call=name, errno=errno.errorcode.get(exc.errno, str(exc.errno)))
        return False
    return True


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("device")
    p.add_argument("--fourcc", default="MJPG")
    p.add_argument("--size", default="640x480")
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--buffers", type=int, default=4)
    p.add_argument("--events", type=int, default=20)
    p.add_argument("--wait", type=float, default=2.0, help="select() timeout in seconds")
    p.add_argument("--blocking", action="store_true", help="no select(): a blocking DQBUF waits")
    a = p.parse_args()
    width, height = (int(v) for v in a.size.split("x"))

    try:
        fd = os.open(a.device, os.O_RDWR | (0 if a.blocking else os.O_NONBLOCK))
    except OSError as exc:
        emit(event="error", call="open", errno=errno.errorcode.get(exc.errno, str(exc.errno)))
        return 1
    fmt = bytearray(FMT_SIZE)
    struct.pack_into("<I", fmt, 0, CAPTURE)
    struct.pack_into("<IIII", fmt, 8, width, height, fourcc(a.fourcc), 1)
    if not call(fd, "S_FMT", VIDIOC_S_FMT, fmt):
        return 1
    got_w, got_h, got_fourcc = struct.unpack_from("<III", fmt, 8)
    parm = bytearray(PARM_SIZE)
    struct.pack_into("<III", parm, 0, CAPTURE, 0, 0)
    struct.pack_into("<II", parm, 12, 1, a.fps)  # timeperframe = 1/fps
    if not call(fd, "S_PARM", VIDIOC_S_PARM, parm):
        return 1
    num, den = struct.unpack_from("<II", parm, 12)
    emit(
        event="format",
        fourcc=struct.pack("<I", got_fourcc).decode(),
        width=got_w,
        height=got_h,
        interval=[num, den],
    )
    req = bytearray(struct.pack("<IIII4x", a.buffers, CAPTURE, MMAP, 0))
    if not call(fd, "REQBUFS", VIDIOC_REQBUFS, req):
        return 1
    count = struct.unpack_from("<I", req, 0)[0]
    maps = []
    for i in range(count):
        b = Buffer(index=i, type=CAPTURE, memory=MMAP)
        if not call(fd, "QUERYBUF", VIDIOC_QUERYBUF, b):
            return 1
        maps.append(mmap.mmap(fd, b.length, mmap.MAP_SHARED, mmap.PROT_READ, offset=b.offset))
        if not call(fd, "QBUF", VIDIOC_QBUF, b):
            return 1
    if not call(fd, "STREAMON", VIDIOC_STREAMON, ctypes.c_int(CAPTURE)):
        return 1
    emit(event="streaming", buffers=count)
    printed = 0
    while printed < a.events:
        if a.blocking:
            readable = [fd]
        else:
            try:
                readable, _, _ = select.select([fd], [], [fd], a.wait)
            except OSError as exc:
                emit(event="error", call="select", errno=errno.errorcode.get(exc.errno, "?"))
                printed += 1
                continue
        if not readable:
            emit(event="timeout", t=time.monotonic())
            printed += 1
            continue
        b = Buffer(type=CAPTURE, memory=MMAP)
        if not call(fd, "DQBUF", VIDIOC_DQBUF, b):
            printed += 1
            time.sleep(0.05)
            continue
        data = maps[b.index][: b.bytesused]
        emit(
            event="frame",
            seq=b.sequence,
            bytes=b.bytesused,
            flags=b.flags,
            error=bool(b.flags & FLAG_ERROR),
            ts=b.timestamp.sec + b.timestamp.usec / 1e6,
            sha256=hashlib.sha256(data).hexdigest(),
            soi=data[:2] == b"\xff\xd8",
            eoi=data[-2:] == b"\xff\xd9",
        )
        printed += 1
        call(fd, "QBUF", VIDIOC_QBUF, b)
    return 0


if __name__ == "__main__":
    sys.exit(main())
