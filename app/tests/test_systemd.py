"""systemd integration of the real process: READY/STATUS/WATCHDOG/STOPPING, journald logging."""

from __future__ import annotations

import re
import signal
import socket
import time
from pathlib import Path

import requests


def _messages(sock: socket.socket, until: float) -> list[str]:
    out: list[str] = []
    while time.monotonic() < until:
        try:
            out.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
    return out


def test_notify_protocol(spawn, tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.2)
    try:
        env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000", "JOURNAL_STREAM": "8:1234"}
        proc = spawn(
            "--source", "synthetic", "--fps", "5", "--width", "160", "--height", "120", env=env
        )
        messages = _messages(sock, time.monotonic() + 2.5)
        assert any("READY=1" in m for m in messages), messages
        assert sum("WATCHDOG=1" in m for m in messages) >= 3, messages  # every 0.5 s
        assert any("STATUS=streaming" in m for m in messages), messages
        assert requests.get(proc.url + "/healthz", timeout=5).status_code == 200
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(3) == 0
        messages = _messages(sock, time.monotonic() + 0.5)
        assert any("STOPPING=1" in m for m in messages), messages
        # Under journald (JOURNAL_STREAM set) lines carry no timestamp of their own.
        lines = [ln for ln in proc.log().splitlines() if ln.strip()]
        assert lines and not any(re.match(r"\d{4}-\d\d-\d\d", ln) for ln in lines), lines
        assert any(ln.startswith("INFO snapshot_stream: listening on") for ln in lines), lines
    finally:
        sock.close()


def test_plain_logs_have_timestamps(spawn) -> None:
    proc = spawn("--source", "synthetic", "--fps", "5", "--width", "160", "--height", "120")
    proc.stop()
    first = proc.log().splitlines()[0]
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", first), first


def test_no_camera_is_logged_with_reason(spawn, tmp_path: Path) -> None:
    device = str(tmp_path / "video3")
    proc = spawn("--device", device, "--width", "160", "--height", "120")
    r = requests.get(proc.url + "/healthz", timeout=5)
    assert r.status_code == 503
    assert device in r.json()["reason"]
    snap = requests.get(proc.url + "/snapshot.jpg", timeout=5)
    assert snap.headers["X-Snapshot-Placeholder"] == "1"
    proc.stop()
    log = proc.log()
    assert f"cannot start {device}: no such device" in log
    assert "retrying every" in log
