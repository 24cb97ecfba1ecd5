#!/usr/bin/env python3
"""A tiny V4L2 capture client for tests: raw ioctls through libc, one JSON line per event.

    v4l2probe.py DEVICE [--fourcc MJPG] [--size 640x480] [--fps 30] [--buffers 4]
                 [--events 20] [--wait 2.0]

Opens DEVICE, sets the format and rate, maps the buffers, streams, and for each select()
prints {"event": "frame", "seq", "bytes", "flags", "error", "sha256", "soi", "eoi"} or
{"event": "timeout"}; a failing call prints {"event": "error", "call", "errno"} and, after
DQBUF or select() failures, the script goes on reporting until --events lines were printed.
Run under the emulation (fakecam-run, or Cameras.env()) it exercises the same ioctls as
OpenCV's V4L2 backend without OpenCV. Its structures are the app's (snapshot_stream.videodev):
run it with the venv's Python.
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

# The app's V4L2 ABI (checked against <linux/videodev2.h> by app/tests/test_videodev.py).
from snapshot_stream.videodev import (
    BUF_FLAG_ERROR,
    BUF_TYPE_VIDEO_CAPTURE,
    MEMORY_MMAP,
    VIDIOC_DQBUF,
    VIDIOC_QBUF,
    VIDIOC_QUERYBUF,
    VIDIOC_REQBUFS,
    VIDIOC_S_FMT,
    VIDIOC_S_PARM,
    VIDIOC_STREAMON,
    Buffer,
    Format,
    RequestBuffers,
    StreamParm,
)


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
    fmt = Format(type=BUF_TYPE_VIDEO_CAPTURE)
    pix = fmt.fmt.pix
    pix.width, pix.height, pix.pixelformat, pix.field = width, height, fourcc(a.fourcc), 1
    if not call(fd, "S_FMT", VIDIOC_S_FMT, fmt):
        return 1
    parm = StreamParm(type=BUF_TYPE_VIDEO_CAPTURE)
    parm.parm.capture.timeperframe.numerator = 1
    parm.parm.capture.timeperframe.denominator = a.fps
    if not call(fd, "S_PARM", VIDIOC_S_PARM, parm):
        return 1
    interval = parm.parm.capture.timeperframe
    emit(
        event="format",
        fourcc=struct.pack("<I", pix.pixelformat).decode(),
        width=pix.width,
        height=pix.height,
        interval=[interval.numerator, interval.denominator],
    )
    req = RequestBuffers(count=a.buffers, type=BUF_TYPE_VIDEO_CAPTURE, memory=MEMORY_MMAP)
    if not call(fd, "REQBUFS", VIDIOC_REQBUFS, req):
        return 1
    count = req.count
    maps = []
    for i in range(count):
        b = Buffer(index=i, type=BUF_TYPE_VIDEO_CAPTURE, memory=MEMORY_MMAP)
        if not call(fd, "QUERYBUF", VIDIOC_QUERYBUF, b):
            return 1
        maps.append(mmap.mmap(fd, b.length, mmap.MAP_SHARED, mmap.PROT_READ, offset=b.m.offset))
        if not call(fd, "QBUF", VIDIOC_QBUF, b):
            return 1
    if not call(fd, "STREAMON", VIDIOC_STREAMON, ctypes.c_int(BUF_TYPE_VIDEO_CAPTURE)):
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
        b = Buffer(type=BUF_TYPE_VIDEO_CAPTURE, memory=MEMORY_MMAP)
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
            error=bool(b.flags & BUF_FLAG_ERROR),
            ts=b.timestamp.tv_sec + b.timestamp.tv_usec / 1e6,
            sha256=hashlib.sha256(data).hexdigest(),
            soi=data[:2] == b"\xff\xd8",
            eoi=data[-2:] == b"\xff\xd9",
        )
        printed += 1
        call(fd, "QBUF", VIDIOC_QBUF, b)
    return 0


if __name__ == "__main__":
    sys.exit(main())
