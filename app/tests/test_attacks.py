"""Hostile and unlucky clients: bounded requests, caps, dripping connections, auth floods.

Each test is a behaviour bound with a generous margin (the speed figures are bench/'s job).
The streamer runs as a separate process where timing matters, so the attacking clients in
this process cannot slow it down through the GIL.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import selectors
import socket
import statistics
import threading
import time
from pathlib import Path
from types import ModuleType

import pytest
import requests
from conftest import MjpegClient, base_url, cfg, running, wait_for
from werkzeug.security import generate_password_hash

import snapshot_stream.httpd as httpd


def _load_attackers() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "bench" / "attackers.py"
    spec = importlib.util.spec_from_file_location("snapshot_stream_attackers", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The attacking clients, shared with bench/attacks.py.
attackers = _load_attackers()
ATTACKERS = attackers.ATTACKERS


_connect = attackers.connect


def _response(sock: socket.socket, limit: int = 65536) -> bytes:
    """Everything the server sends until it closes (or ``limit`` bytes)."""
    out = b""
    with contextlib.suppress(OSError):
        while len(out) < limit:
            chunk = sock.recv(65536)
            if not chunk:
                break
            out += chunk
    return out


def _status(data: bytes) -> int:
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.") else 0


def _kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(key)


# --- bounded requests -----------------------------------------------------------------------


def test_head_over_16_kib_is_refused_with_431(spawn) -> None:
    proc = spawn("--source", "synthetic", "--width", "160", "--height", "120")
    with _connect(proc.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
        assert _status(_response(sock)) == 431
    with _connect(proc.port) as sock:  # one endless header line, never finished
        sock.sendall(b"GET /healthz HTTP/1.1\r\nX-Line: " + b"b" * 100_000)
        assert _status(_response(sock)) == 431
    # Just under the limit is fine.
    with _connect(proc.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 15000 + b"\r\n\r\n")
        assert _status(_response(sock, 200)) == 200


def test_large_body_gets_413_before_it_is_sent(spawn) -> None:
    proc = spawn("--source", "synthetic", "--width", "160", "--height", "120")
    with _connect(proc.port) as sock:
        sock.sendall(b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 157286400\r\n\r\n")
        began = time.monotonic()
        reply = _response(sock)  # answered and closed without a byte of the body
        assert _status(reply) == 413
        assert time.monotonic() - began < 2.0
    with _connect(proc.port) as sock:  # chunked: read up to the limit, then refused
        sock.sendall(b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        with contextlib.suppress(OSError):
            for _ in range(40):
                sock.sendall(b"4000\r\n" + b"z" * 0x4000 + b"\r\n")
        assert _status(_response(sock)) == 413


def test_chunked_body_cannot_smuggle_a_request(spawn) -> None:
    proc = spawn("--source", "synthetic", "--width", "160", "--height", "120")
    hidden = b"GET /snapshot.jpg HTTP/1.1\r\nHost: x\r\n\r\n"
    body = f"{len(hidden):x}\r\n".encode() + hidden + b"\r\n0\r\n\r\n"
    with _connect(proc.port) as sock:
        sock.sendall(
            b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n" + body
        )
        reply = _response(sock)
    assert _status(reply) == 405  # the POST, body and all, is one request
    assert reply.count(b"HTTP/1.1 ") == 1, reply[:300]
    assert b"image/jpeg" not in reply
    # Two framings at once are refused outright, and the connection closed.
    with _connect(proc.port) as sock:
        sock.sendall(
            b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + hidden
        )
        reply = _response(sock)
    assert _status(reply) == 400
    assert reply.count(b"HTTP/1.1 ") == 1


def test_huge_unauthenticated_requests_leave_memory_alone(spawn) -> None:
    """3 x 150 MB bodies and a 40 MB header line: peak RSS grows by far less than 30 MB."""
    hashed = generate_password_hash("pw", method="pbkdf2:sha256:1000")
    proc = spawn("--source", "synthetic", "--auth-user", "u", "--auth-hash", hashed)
    pid = proc.proc.pid
    time.sleep(1.0)  # let the first frames settle the baseline
    before = _kib(pid, "VmHWM")
    chunk = b"x" * (1 << 20)
    results: list[int] = []

    def body(chunked: bool) -> None:
        with _connect(proc.port, timeout=10) as sock:
            framing = (
                b"Transfer-Encoding: chunked\r\n" if chunked else b"Content-Length: 157286400\r\n"
            )
            sock.sendall(b"POST /snapshot.jpg HTTP/1.1\r\nHost: x\r\n" + framing + b"\r\n")
            with contextlib.suppress(OSError):
                for _ in range(150):
                    sock.sendall(b"100000\r\n" + chunk + b"\r\n" if chunked else chunk)
            results.append(_status(_response(sock)))

    def header_line() -> None:
        with _connect(proc.port, timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nX-A: ")
            with contextlib.suppress(OSError):
                for _ in range(40):
                    sock.sendall(chunk)
            results.append(_status(_response(sock)))

    threads = [threading.Thread(target=body, args=(c,)) for c in (False, True, False)]
    threads.append(threading.Thread(target=header_line))
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    grown = (_kib(pid, "VmHWM") - before) / 1024
    print(f"peak RSS grew by {grown:.1f} MB; answers {sorted(results)}")
    assert grown < 30, f"peak RSS grew by {grown:.1f} MB"
    # Refused (unauthenticated, or too large) -- or cut off before an answer could be read.
    assert all(status in (0, 401, 413, 431) for status in results), results
    assert requests.get(proc.url + "/healthz", timeout=5).status_code == 200


# --- dripping and idle connections ----------------------------------------------------------


def test_300_dripping_connections_block_nobody(spawn) -> None:
    proc = spawn("--source", "synthetic", "--fps", "25")
    drippers = attackers.Drippers(proc.port, 300, head_size=10_000)
    try:
        time.sleep(3.0)  # every dripper has sent a few bytes and holds its connection
        assert drippers.closed == 0
        took = {}
        began = time.monotonic()
        assert requests.get(proc.url + "/healthz", timeout=5).status_code == 200
        took["healthz"] = time.monotonic() - began
        began = time.monotonic()
        assert requests.get(proc.url + "/snapshot.jpg", timeout=5).status_code == 200
        took["snapshot"] = time.monotonic() - began
        began = time.monotonic()
        client = MjpegClient(proc.url + "/stream")
        try:
            client.read_part()
        finally:
            client.close()
        took["first stream frame"] = time.monotonic() - began
        print(took)
        assert all(t < 1.0 for t in took.values()), took
    finally:
        drippers.close()
    assert "Traceback" not in proc.log()


def test_unfinished_requests_are_closed_after_the_deadline(monkeypatch) -> None:
    monkeypatch.setattr(httpd, "REQUEST_TIMEOUT", 1.0)
    with running(cfg(width=160, height=120, fps=5)) as s:
        idle = _connect(s.port)  # sends nothing at all
        dripping = _connect(s.port)
        dripping.sendall(b"GET /healthz HTTP/1.1\r\n")
        began = time.monotonic()
        assert _response(idle) == b""  # closed silently: nothing was asked
        reply = _response(dripping)
        assert _status(reply) == 408
        assert time.monotonic() - began < 3.0
        idle.close()
        dripping.close()


def test_connection_caps_per_address_and_total(caplog) -> None:
    with running(cfg(width=160, height=120, fps=5, max_per_address=4, max_connections=16)) as s:
        held = [_connect(s.port, "127.0.0.2") for _ in range(4)]
        time.sleep(0.2)
        with _connect(s.port, "127.0.0.2") as extra:
            reply = _response(extra)
        assert _status(reply) == 503
        assert b"Retry-After" in reply
        # Another address is not affected.
        health = requests.get(base_url(s) + "/healthz", headers={"Connection": "close"}, timeout=5)
        assert health.status_code == 200
        assert wait_for(lambda: s.http.caps.open == 4, 3)
        held += [_connect(s.port, f"127.0.0.{3 + i // 4}") for i in range(12)]
        assert wait_for(lambda: s.http.caps.open == 16, 3)
        with _connect(s.port, "127.0.1.1") as extra:
            assert _status(_response(extra)) == 503
        for sock in held:
            sock.close()
        assert wait_for(lambda: s.http.caps.open == 0, 3)
        text = requests.get(base_url(s) + "/metrics", timeout=5).text
    assert 'snapshot_stream_connections_refused_total{cap="per_address"} 1' in text
    assert 'snapshot_stream_connections_refused_total{cap="total"} 1' in text


# --- auth floods ----------------------------------------------------------------------------


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_wrong_password_flood_is_contained(spawn) -> None:
    # A deliberately slow hash, so that 100 guessing connections would swamp a naive server.
    hashed = generate_password_hash("right", method="pbkdf2:sha256:200000")
    began = time.monotonic()
    generate_password_hash("x", method="pbkdf2:sha256:200000")
    verify_s = time.monotonic() - began
    proc = spawn("--source", "synthetic", "--auth-user", "cam", "--auth-hash", hashed)
    good = _basic("cam", "right")
    viewer = requests.Session()
    viewer.headers["Authorization"] = good

    # The guessers run in their own process: their 100 threads must not slow this one's
    # measurements through the GIL.
    flood = attackers.start_flood(proc.port, 8)
    try:
        time.sleep(1.0)
        # The right password, never verified before: a real check, in the middle of the flood.
        t0 = time.monotonic()
        fresh = viewer.get(proc.url + "/snapshot.jpg", timeout=10)
        login = time.monotonic() - t0
        health, viewing = [], []
        for _ in range(10):
            t0 = time.monotonic()
            assert requests.get(proc.url + "/healthz", timeout=5).status_code == 200
            health.append(time.monotonic() - t0)
            t0 = time.monotonic()
            assert viewer.get(proc.url + "/snapshot.jpg", timeout=5).status_code == 200
            viewing.append(time.monotonic() - t0)
            time.sleep(0.1)
    finally:
        answers = attackers.flood_answers(flood, timeout=30)
    print(
        f"verification {verify_s * 1000:.0f} ms; healthz median "
        f"{statistics.median(health) * 1000:.0f} ms max {max(health) * 1000:.0f} ms; viewer "
        f"median {statistics.median(viewing) * 1000:.0f} ms; new login {login * 1000:.0f} ms; "
        f"{len(answers)} guesses: {answers.count(401)} x 401, {answers.count(429)} x 429"
    )
    assert fresh.status_code == 200
    # The target is 100 ms (bench/ measures it); the bounds leave room for a busy machine.
    assert statistics.median(health) < 0.1 and max(health) < 1.0, health
    assert statistics.median(viewing) < 0.25 and max(viewing) < 1.0, viewing
    # "At most about two verification times" (the one running, then ours; bench/ measures it).
    # The bound leaves room for a loaded CI machine and still fails a login that queues behind
    # the guessers: 100 of them make a queue of about 100 verifications.
    assert login < 4 * verify_s + 1.0, (login, verify_s)
    # Guessing addresses were throttled before pbkdf2 ran.
    assert answers.count(429) > answers.count(401)
    log = proc.log()
    assert "Traceback" not in log
    # Summarised: a handful of lines, not one per refusal.
    refusal_lines = [ln for ln in log.splitlines() if "refused (" in ln or "more refusal" in ln]
    assert len(refusal_lines) <= 10, refusal_lines[:20]


def test_verifier_uses_one_thread_and_is_fair() -> None:
    from snapshot_stream.auth import BasicAuth, PendingCheck, Verifier

    hashed = generate_password_hash("pw", method="pbkdf2:sha256:1000")
    running_now = 0
    most = 0
    order: list[str] = []
    lock = threading.Lock()

    class Slow(BasicAuth):
        def _verify(self, user: str, password: str) -> bool:
            nonlocal running_now, most
            with lock:
                running_now += 1
                most = max(most, running_now)
            time.sleep(0.02)
            with lock:
                running_now -= 1
            return super()._verify(user, password)

    auth = Slow("u", hashed)
    verifier = Verifier(auth)
    done = threading.Event()
    results: dict[str, bool] = {}

    def submit(address: str, password: str, suspect: bool = True) -> bool:
        found = auth.lookup(_basic("u", password))
        assert isinstance(found, PendingCheck)

        def finished(result: object) -> None:
            order.append(address)
            results[password] = bool(getattr(result, "ok", False))
            if len(order) == 13:
                done.set()

        return verifier.submit(address, found, finished, suspect)

    try:
        for i in range(4):
            for a in ("10.0.0.1", "10.0.0.3", "10.0.0.4"):  # addresses that failed before
                assert submit(a, f"guess{i}-{a}")
        assert not submit("10.0.0.1", "guess-too-many")  # the address's queue is full
        assert submit("10.0.0.2", "pw", suspect=False)  # an address with no failures
        assert done.wait(5)
    finally:
        verifier.stop()
    assert most == 1
    assert results["pw"] is True
    # The genuine login went right after the check in progress, not after the 12 guesses.
    assert order.index("10.0.0.2") <= 1, order
    # Between the guessing addresses: one job each in turn.
    assert order[2:5] != ["10.0.0.1"] * 3, order


# --- logs -----------------------------------------------------------------------------------


def test_refusal_log_is_summarised(caplog) -> None:
    from snapshot_stream.guard import RefusalLog

    now = [100.0]
    refusals = RefusalLog(window=10.0, clock=lambda: now[0])
    for i in range(500):
        refusals.request(401, "missing credentials", f"10.0.0.{i % 7} GET / refused (401): x")
    refusals.request(403, "not in allow-list", "10.9.9.9 GET / refused (403): y")
    assert refusals.requests_refused == {401: 500, 403: 1}
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2  # the first of each cause
    now[0] += 10.0
    refusals.flush()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert lines[-1].startswith("499 more refusals like this in the last 10 s")


def test_unauthenticated_requests_log_one_line_per_cause(spawn) -> None:
    hashed = generate_password_hash("pw", method="pbkdf2:sha256:1000")
    proc = spawn("--source", "synthetic", "--auth-user", "u", "--auth-hash", hashed)
    with requests.Session() as session:
        for _ in range(200):
            assert session.get(proc.url + "/snapshot.jpg", timeout=5).status_code == 401
    lines = [ln for ln in proc.log().splitlines() if "refused (401)" in ln]
    assert len(lines) == 1, lines[:5]


# --- fan-out and idle -----------------------------------------------------------------------


def test_many_viewers_each_get_the_full_rate(spawn) -> None:
    fps = 20.0
    proc = spawn(
        "--source",
        "synthetic",
        "--fps",
        str(fps),
        "--width",
        "320",
        "--height",
        "240",
        "--max-per-address",
        "64",
    )
    clients = [MjpegClient(proc.url + "/stream") for _ in range(48)]
    try:
        counts = [0] * len(clients)
        sel = selectors.DefaultSelector()
        for i, c in enumerate(clients):
            c.read_part()
            sel.register(c.sock, selectors.EVENT_READ, i)
        end = time.monotonic() + 2.0
        boundary = b"--frame\r\n"
        while (left := end - time.monotonic()) > 0:
            for key, _ in sel.select(left):
                data = key.fileobj.recv(262144)  # type: ignore[union-attr]
                counts[key.data] += data.count(boundary)
        sel.close()
    finally:
        for c in clients:
            c.close()
    assert min(counts) >= 0.7 * fps * 2.0, counts


def test_nothing_is_encoded_while_nobody_watches() -> None:
    with running(cfg(width=320, height=240, fps=20)) as s:
        assert wait_for(lambda: s.hub.frames_captured >= 20, 5)
        assert s.hub.frames_encoded == 0  # captured, not encoded
        url = base_url(s)
        r = requests.get(url + "/snapshot.jpg", timeout=5)
        assert r.status_code == 200 and r.content[:2] == b"\xff\xd8"
        assert abs(float(r.headers["X-Timestamp"]) - time.time()) < 1.0  # fresh
        assert s.hub.frames_encoded == 1
        c = MjpegClient(url + "/stream")
        try:
            parts = c.parts_for(1.0)
        finally:
            c.close()
        assert len(parts) >= 15
        encoded = s.hub.frames_encoded
        assert encoded >= 15  # every frame while somebody watches
        assert wait_for(lambda: s.hub.clients == 0, 3)
        time.sleep(0.5)
        settled = s.hub.frames_encoded
        time.sleep(1.0)
        assert s.hub.frames_encoded == settled


@pytest.mark.parametrize("path", ["/stream", "/?action=stream"])
def test_stream_head_has_no_chunked_coding(path: str) -> None:
    with running(cfg(width=160, height=120, fps=10)) as s:
        with _connect(s.port) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            data = b""
            while b"\r\n\r\n" not in data:
                data += sock.recv(4096)
        head = data.split(b"\r\n\r\n", 1)[0].decode().lower()
        assert head.startswith("http/1.1 200")
        assert "transfer-encoding" not in head
        assert "connection: close" in head


def test_one_address_cannot_take_every_app_worker() -> None:
    with running(cfg(width=160, height=120, fps=5)) as s:
        gate = threading.Event()

        def slow() -> str:
            gate.wait(10)
            return "done"

        s.app.add_url_rule("/slow", "slow", slow)
        socks = [_connect(s.port, "127.0.0.2") for _ in range(httpd.WORKERS)]
        try:
            for sock in socks:
                sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.3)  # the first WORKERS_PER_ADDRESS are in the app, the rest wait
            began = time.monotonic()
            assert requests.get(base_url(s) + "/healthz", timeout=5).status_code == 200
            assert time.monotonic() - began < 1.0
        finally:
            gate.set()
        for sock in socks:
            assert _status(_response(sock, 100)) == 200
            sock.close()
