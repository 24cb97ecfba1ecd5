#!/usr/bin/env python3
"""Molecule verifier helper, run INSIDE a container (python3 stdlib only, no OpenCV needed).

  camera_check.py stream PORT [--host H] [--seconds S] [--user U --password P]
      reads /stream for S seconds (with mjpegclient.py, which must sit next to this file), checks every part is a whole JPEG (SOI..EOI) and decodes its size
      from the SOF marker; also fetches /snapshot.jpg and /healthz. Prints one JSON object.
  camera_check.py restart UNIT PORT [--host H] [--within S] [--user U --password P]
      kill -9 the unit's MainPID, then waits until systemd started a NEW MainPID and /stream yields a
      JPEG again; fails when that takes longer than S seconds (default 5). Prints one JSON object.
  camera_check.py units
      every snapshot-stream@*.service instance that is loaded or enabled, with ActiveState,
      UnitFileState and MainPID, and the /etc/snapshot-stream/*.env files (parsed). Prints JSON.
  camera_check.py scan
      reads a secret from stdin (never from argv) and reports where it occurs: files under / (except
      /proc, /sys, /dev), the journal (`journalctl -o cat` and all fields via `-o export`), the command
      lines and environments of running processes. Prints paths/sources only, never the secret.
H: the camera's address (default 127.0.0.1; a tailnet camera listens on the Tailscale address only).
Exit status 0 when every check passed, 1 otherwise (the JSON says which one failed).
"""

import argparse
import base64
import http.client
import json
import os
import stat
import subprocess
import sys
import time

DEFAULT_HOST = "127.0.0.1"


def jpeg_size(data):
    """(width, height) from the first SOF marker of a JPEG, or None."""
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            return width, height
        if marker == 0xDA:  # start of scan before any SOF
            return None
        i += 2 + length
    return None


def jpeg_ok(data):
    return (
        data[:2] == b"\xff\xd8"
        and data.rstrip(b"\r\n")[-2:] == b"\xff\xd9"
        and jpeg_size(data) is not None
    )


def headers(auth):
    h = {"Connection": "close"}
    if auth:
        h["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    return h


def get(path, host, port, auth=None, timeout=5):
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    conn.request("GET", path, headers=headers(auth))
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, dict(resp.getheaders()), body


def read_stream(host, port, seconds, auth=None, max_frames=None, timeout=5):
    """Reads multipart parts from /stream for `seconds`; returns a result dict."""
    # The strict MJPEG client shared with the app's tests and bench/ (app/snapshot_stream/
    # mjpegclient.py, standard library only), copied next to this file by the verify playbooks;
    # imported here so that `units` and `scan` work without it.
    from mjpegclient import MjpegClient, ProtocolError

    hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    extra = {"Authorization": headers(auth)["Authorization"]} if auth else {}
    client = MjpegClient(
        f"http://{hostport}/stream", timeout=timeout, request_headers=extra
    )
    out = {
        "status": client.status,
        "content_type": client.headers.get("content-type", ""),
        "frames": 0,
        "bad_frames": 0,
    }
    if client.status != 200:
        client.close()
        return out
    sizes, stamps, arrivals = set(), [], []
    deadline = None
    try:
        while True:
            try:
                part = client.read_part()
            except EOFError:
                break
            except ProtocolError as exc:
                out["error"] = str(exc)
                break
            now = time.monotonic()
            if deadline is None:
                deadline = now + seconds
            out["frames"] += 1
            if jpeg_ok(part.jpeg) and part.headers.get("content-type") == "image/jpeg":
                sizes.add(jpeg_size(part.jpeg))
            else:
                out["bad_frames"] += 1
            arrivals.append(now)
            if "x-timestamp" in part.headers:
                stamps.append(part.timestamp)
            if now >= deadline or (max_frames and out["frames"] >= max_frames):
                break
    finally:
        client.close()
    out["sizes"] = sorted(list(s) for s in sizes)
    # The first part can be an already-buffered frame: measure the rate from the second one on.
    if len(arrivals) >= 3:
        out["fps_arrival"] = round(
            (len(arrivals) - 2) / (arrivals[-1] - arrivals[1]), 2
        )
    if len(stamps) >= 3 and stamps[-1] > stamps[1]:
        out["fps_timestamps"] = round((len(stamps) - 2) / (stamps[-1] - stamps[1]), 2)
    return out


def login(args):
    """USER:PASSWORD for Basic auth from --user/--password, or None."""
    return f"{args.user}:{args.password}" if args.user else None


def cmd_stream(args):
    auth = login(args)
    result = {
        "host": args.host,
        "port": args.port,
        "stream": read_stream(args.host, args.port, args.seconds, auth),
    }
    status, hdrs, body = get("/snapshot.jpg", args.host, args.port, auth)
    result["snapshot"] = {
        "status": status,
        "content_type": hdrs.get("Content-Type", ""),
        "jpeg_ok": jpeg_ok(body),
        "size": list(jpeg_size(body) or ()),
        "placeholder": hdrs.get("X-Snapshot-Placeholder") == "1",
    }
    status, _, body = get("/healthz", args.host, args.port)
    try:
        health = json.loads(body)
    except ValueError:
        health = {"unparsable": body[:200].decode("latin-1")}
    result["healthz"] = {"status": status, **health}
    s = result["stream"]
    ok = (
        s["status"] == 200
        and s["content_type"].startswith("multipart/x-mixed-replace")
        and s["frames"] >= 2
        and s["bad_frames"] == 0
        and result["snapshot"]["status"] == 200
        and result["snapshot"]["jpeg_ok"]
        and status == 200
    )
    result["ok"] = ok
    print(json.dumps(result))
    return 0 if ok else 1


def main_pid(unit):
    out = subprocess.run(
        ["systemctl", "show", "-p", "MainPID", "--value", unit],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip() or 0)


def cmd_restart(args):
    auth = login(args)
    old = main_pid(args.unit)
    result = {"unit": args.unit, "old_pid": old, "ok": False}
    if not old:
        result["error"] = "unit has no MainPID"
        print(json.dumps(result))
        return 1
    start = time.monotonic()
    os.kill(old, 9)
    new, stream = 0, None
    while time.monotonic() - start < args.within:
        new = main_pid(args.unit)
        if new and new != old:
            try:
                stream = read_stream(
                    args.host, args.port, 0, auth, max_frames=1, timeout=2
                )
            except OSError:
                stream = None
            if (
                stream
                and stream["status"] == 200
                and stream["frames"] >= 1
                and stream["bad_frames"] == 0
            ):
                break
            stream = None
        time.sleep(0.1)
    elapsed = round(time.monotonic() - start, 2)
    result.update(new_pid=new, seconds=elapsed, stream_back=stream is not None)
    result["ok"] = bool(
        new and new != old and stream is not None and elapsed <= args.within
    )
    print(json.dumps(result))
    return 0 if result["ok"] else 1


def read_env(path):
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            k, _, v = line.partition("=")
            v = v.strip()
            if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
                v = v[1:-1]
            env[k.strip()] = v
    return env


def cmd_units(_args):
    names = set()
    out = subprocess.run(
        [
            "systemctl",
            "list-units",
            "--all",
            "--plain",
            "--no-legend",
            "snapshot-stream@*",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names.update(line.split()[0] for line in out.splitlines() if line.strip())
    for wants in ("/etc/systemd/system",):
        for root, _dirs, files in os.walk(wants):
            names.update(
                f
                for f in files
                if f.startswith("snapshot-stream@")
                and f.endswith(".service")
                and f != "snapshot-stream@.service"
            )
    units = {}
    for name in sorted(names):
        props = subprocess.run(
            [
                "systemctl",
                "show",
                name,
                "-p",
                "ActiveState",
                "-p",
                "UnitFileState",
                "-p",
                "MainPID",
                "-p",
                "LoadState",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        info = dict(line.split("=", 1) for line in props.splitlines() if "=" in line)
        info["MainPID"] = int(info.get("MainPID") or 0)
        units[name[len("snapshot-stream@") : -len(".service")]] = info
    envs = {}
    if os.path.isdir("/etc/snapshot-stream"):
        for f in sorted(os.listdir("/etc/snapshot-stream")):
            if f.endswith(".env"):
                envs[f[: -len(".env")]] = read_env(
                    os.path.join("/etc/snapshot-stream", f)
                )
    print(json.dumps({"units": units, "env_files": envs}))
    return 0


def cmd_scan(_args):
    secret = sys.stdin.read().strip().encode()
    result = {"ok": False, "found": []}
    if len(secret) < 12:
        result["error"] = "secret on stdin is missing or too short"
        print(json.dumps(result))
        return 1
    found = result["found"]
    skip = {"/proc", "/sys", "/dev"}
    scanned = 0
    for root, dirs, files in os.walk("/", topdown=True):
        dirs[:] = [d for d in dirs if os.path.join(root, d) not in skip]
        for name in files:
            path = os.path.join(root, name)
            try:
                st = os.lstat(path)
                if not stat.S_ISREG(st.st_mode):
                    continue
                with open(path, "rb") as f:
                    tail = b""
                    while True:
                        chunk = f.read(1 << 20)
                        if not chunk:
                            break
                        if secret in tail + chunk:
                            found.append("file:" + path)
                            break
                        tail = chunk[-len(secret) :]
                scanned += 1
            except OSError:
                continue
    result["files_scanned"] = scanned
    for fmt in ("cat", "export"):
        out = subprocess.run(
            ["journalctl", "--no-pager", "-o", fmt], capture_output=True, check=False
        ).stdout
        result[f"journal_{fmt}_bytes"] = len(out)
        if secret in out:
            found.append(f"journalctl -o {fmt}")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        for what in ("cmdline", "environ"):
            try:
                with open(f"/proc/{pid}/{what}", "rb") as f:
                    if secret in f.read():
                        found.append(f"/proc/{pid}/{what}")
            except OSError:
                continue
    result["ok"] = not found
    print(json.dumps(result))
    return 0 if result["ok"] else 1


def main():
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    # How to reach a camera: shared by `stream` and `restart`.
    reach = argparse.ArgumentParser(add_help=False)
    reach.add_argument("--host", default=DEFAULT_HOST)
    reach.add_argument("--user")
    reach.add_argument("--password")
    s = sub.add_parser("stream", parents=[reach])
    s.add_argument("port", type=int)
    s.add_argument("--seconds", type=float, default=3.0)
    s.set_defaults(func=cmd_stream)
    r = sub.add_parser("restart", parents=[reach])
    r.add_argument("unit")
    r.add_argument("port", type=int)
    r.add_argument("--within", type=float, default=5.0)
    r.set_defaults(func=cmd_restart)
    u = sub.add_parser("units")
    u.set_defaults(func=cmd_units)
    c = sub.add_parser("scan")
    c.set_defaults(func=cmd_scan)
    args = p.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
