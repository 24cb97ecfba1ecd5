#!/usr/bin/env python3
"""Molecule verifier helper for the emulated camera, run INSIDE a container (python3 stdlib only).

  fakecam_check.py state --dir DIR --lib LIB
      the emulated cameras' state (fakecam.Cameras.state(): node, by-id, owner, controls...) as JSON.
  fakecam_check.py replug PORT --dir DIR --lib LIB --camera K [--number N]
      holds one /stream connection open while camera K is unplugged and plugged back in (as
      /dev/videoN with --number): the stream must turn to NO SIGNAL placeholders within 2 s, /healthz
      must answer 503 with a reason naming the camera's device, and real frames must come back on
      the SAME connection within 3 s of the replug. Prints one JSON object; exit 1 when a check fails.
The emulation's Python module and library are copied to the container by prepare.yml (tests/fakecam).
"""

import argparse
import http.client
import json
import os
import sys
import time
from pathlib import Path

UNPLUG_WITHIN = 2.0
REPLUG_WITHIN = 3.0


def cameras(args):
    sys.path.insert(0, str(Path(args.lib).parent))
    import fakecam  # copied next to the library by prepare.yml

    return fakecam.Cameras(args.dir, Path(args.lib))


def healthz(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/healthz")
    resp = conn.getresponse()
    body = json.loads(resp.read())
    conn.close()
    return resp.status, body


class Stream:
    """One /stream connection, read part by part (the parts' X-Placeholder header says which
    are NO SIGNAL images)."""

    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.conn.request("GET", "/stream")
        self.resp = self.conn.getresponse()
        if self.resp.status != 200:
            raise RuntimeError(f"/stream answered {self.resp.status}")

    def part(self):
        """(placeholder?, jpeg) of the next part."""
        line = self.resp.readline()
        while line.strip() == b"":
            line = self.resp.readline()
        headers = {}
        while True:
            line = self.resp.readline().strip()
            if not line:
                break
            key, _, value = line.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()
        data = self.resp.read(int(headers["content-length"]))
        return headers.get("x-placeholder") == "1", data

    def until(self, placeholder, within):
        """Seconds until a part of the wanted kind arrived, or None after ``within``."""
        start = time.monotonic()
        while time.monotonic() - start < within:
            is_placeholder, data = self.part()
            if is_placeholder == placeholder and data[:2] == b"\xff\xd8":
                return round(time.monotonic() - start, 2)
        return None

    def close(self):
        self.conn.close()


def cmd_state(args):
    print(json.dumps(cameras(args).state()))
    return 0


def cmd_replug(args):
    cams = cameras(args)
    result = {"ok": False}
    status, body = healthz(args.port)
    result["before"] = {
        "status": status,
        "state": body.get("state"),
        "source": body.get("source"),
    }
    stream = Stream(args.port)
    try:
        result["first_frame_s"] = stream.until(False, 10)
        cams.unplug(args.camera)
        result["placeholder_after_s"] = stream.until(True, UNPLUG_WITHIN)
        status, body = healthz(args.port)
        result["unplugged"] = {"status": status, "reason": body.get("reason")}
        time.sleep(1)
        cams.replug(args.camera, args.number)
        result["frame_after_replug_s"] = stream.until(False, REPLUG_WITHIN)
        status, body = healthz(args.port)
        result["replugged"] = {"status": status, "source": body.get("source")}
        result["node"] = cams.camera(args.camera)["node"]
    finally:
        stream.close()
    source = result["before"]["source"] or ""
    result["ok"] = (
        result["before"]["status"] == 200
        and result["first_frame_s"] is not None
        and result["placeholder_after_s"] is not None
        and result["unplugged"]["status"] == 503
        and source != ""
        and source in (result["unplugged"]["reason"] or "")
        and result["frame_after_replug_s"] is not None
        and result["replugged"]["status"] == 200
    )
    print(json.dumps(result))
    return 0 if result["ok"] else 1


def main():
    # Files the emulation (re)creates on a replug stand in for device nodes: the streamer runs as
    # another user than this checker (root).
    os.umask(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", required=True, help="the emulation's camera directory")
    common.add_argument(
        "--lib", required=True, help="libfakecam.so (fakecam.py beside it)"
    )
    sub.add_parser("state", parents=[common])
    replug = sub.add_parser("replug", parents=[common])
    replug.add_argument("port", type=int)
    replug.add_argument("--camera", type=int, default=0)
    replug.add_argument("--number", type=int)
    args = parser.parse_args()
    return {"state": cmd_state, "replug": cmd_replug}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
