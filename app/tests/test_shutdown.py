"""SIGTERM with clients connected, and no threads left behind by connect/disconnect cycles."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time

from conftest import MjpegClient, base_url, cfg, running, wait_for


def test_sigterm_with_four_clients_exits_zero_fast(spawn) -> None:
    proc = spawn("--source", "synthetic", "--fps", "15", "--width", "320", "--height", "240")
    clients = [MjpegClient(proc.url + "/stream") for _ in range(4)]
    ended = [False] * 4

    def drain(i: int, c: MjpegClient) -> None:
        try:
            while True:
                c.read_part()
        except (EOFError, OSError, AssertionError):
            ended[i] = True

    for c in clients:
        c.read_part()
    threads = [threading.Thread(target=drain, args=(i, c)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    start = time.monotonic()
    proc.proc.send_signal(signal.SIGTERM)
    try:
        code = proc.proc.wait(2.0)
    except subprocess.TimeoutExpired:
        raise AssertionError("did not exit within 2 s:\n" + proc.log()) from None
    took = time.monotonic() - start
    assert code == 0, proc.log()
    assert took < 2.0
    for t in threads:
        t.join(5)
    assert all(ended), "streams did not end"
    for c in clients:
        c.close()
    log = proc.log()
    assert "SIGTERM received" in log
    assert "Traceback" not in log


def test_sigint_exits_zero(spawn) -> None:
    proc = spawn("--source", "synthetic", "--fps", "5", "--width", "160", "--height", "120")
    proc.proc.send_signal(signal.SIGINT)
    assert proc.proc.wait(3) == 0


def test_connect_disconnect_cycles_leave_no_threads() -> None:
    with running(cfg(width=160, height=120, fps=20, max_clients=8)) as s:
        url = base_url(s)
        # Warm up: the worker pool exists from the start; a first client creates nothing.
        c = MjpegClient(url + "/stream")
        c.read_part()
        c.close()
        assert wait_for(lambda: s.hub.clients == 0, 5)
        time.sleep(0.3)
        before = threading.active_count()
        for i in range(50):
            # A closed client is noticed at the next frame write; don't hit --max-clients.
            assert wait_for(lambda: s.hub.clients < 8, 5)
            c = MjpegClient(url + "/stream")
            if i % 2:
                c.read_part()
            if i % 3 == 0:
                # An abrupt reset instead of a clean close.
                linger = b"\x01\x00\x00\x00\x00\x00\x00\x00"
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            c.close()
        assert wait_for(lambda: s.hub.clients == 0, 10), s.hub.clients
        time.sleep(0.5)
        after = threading.active_count()
        assert after <= before + 1, (before, after, [t.name for t in threading.enumerate()])
        # No per-connection state is left behind either (no thread per client to count).
        assert wait_for(lambda: not s.http.conns and not s.http.streams, 5)
        assert s.http.caps.open == 0


def test_sigterm_with_a_client_that_stopped_reading(spawn) -> None:
    proc = spawn("--source", "synthetic", "--fps", "25", "--width", "640", "--height", "480")
    stuck = MjpegClient(proc.url + "/stream", rcvbuf=4096)
    stuck.read_part()
    others = [MjpegClient(proc.url + "/stream") for _ in range(3)]
    for c in others:
        c.read_part()
    time.sleep(1.0)  # the stuck client's server thread is now blocked in send()
    start = time.monotonic()
    proc.proc.send_signal(signal.SIGTERM)
    try:
        assert proc.proc.wait(2.0) == 0
    except subprocess.TimeoutExpired:
        raise AssertionError("did not exit within 2 s:\n" + proc.log()) from None
    assert time.monotonic() - start < 2.0
    for c in [stuck, *others]:
        c.close()
