"""Shared helpers: real streamer processes / in-process servers and a raw MJPEG client."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from snapshot_stream.config import Config
from snapshot_stream.server import Streamer
from snapshot_stream.sources import SourceFactory

APP_DIR = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _info_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 15.0) -> requests.Response:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            return requests.get(url, timeout=2)
        except requests.RequestException as exc:
            last = exc
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer: {last}")


def wait_for(predicate, timeout: float = 10.0, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


@dataclass
class Proc:
    proc: subprocess.Popen
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def start_process(
    args: list[str], tmp_path: Path, port: int | None = None, env: dict | None = None
) -> Proc:
    port = port or free_port()
    log_path = tmp_path / f"streamer-{port}-{time.monotonic_ns()}.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SNAPSHOT_STREAM_")}
    full_env.update(env or {})
    cmd = [sys.executable, "-m", "snapshot_stream", "--host", "127.0.0.1", "--port", str(port)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd + args, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=APP_DIR
        )
    p = Proc(proc, port, log_path)
    try:
        wait_http(p.url + "/healthz")
    except AssertionError:
        p.stop()
        raise AssertionError("streamer did not start:\n" + p.log()) from None
    return p


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator:
    procs: list[Proc] = []

    def _spawn(*args: str, port: int | None = None, env: dict | None = None) -> Proc:
        p = start_process(list(args), tmp_path, port, env)
        procs.append(p)
        return p

    yield _spawn
    for p in procs:
        p.stop()


@contextlib.contextmanager
def running(config: Config, factory: SourceFactory | None = None) -> Iterator[Streamer]:
    """An in-process streamer on a free loopback port."""
    streamer = Streamer(config, factory=factory, port=0)
    streamer.start()
    try:
        yield streamer
    finally:
        streamer.stop()


def base_url(streamer: Streamer) -> str:
    return f"http://127.0.0.1:{streamer.port}"


def cfg(**kw: object) -> Config:
    values: dict = {"host": "127.0.0.1", "port": 0, "name": "test", "source": "synthetic"}
    values.update(kw)
    return Config(**values)  # type: ignore[arg-type]


@dataclass
class Part:
    headers: dict[str, str]
    jpeg: bytes
    received: float  # time.time() when the part was complete

    @property
    def timestamp(self) -> float:
        return float(self.headers["x-timestamp"])

    @property
    def placeholder(self) -> bool:
        return self.headers.get("x-placeholder") == "1"


@dataclass
class MjpegClient:
    """A raw-socket MJPEG client, optionally reading slowly through a small receive buffer."""

    url: str
    rate: float | None = None  # bytes/s
    rcvbuf: int | None = None
    timeout: float = 10.0
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rest = self.url.split("://", 1)[1]
        hostport, _, path = rest.partition("/")
        host, _, port = hostport.partition(":")
        self.sock = socket.socket()
        if self.rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        self.sock.settimeout(self.timeout)
        self.sock.connect((host, int(port)))
        self.sock.sendall(f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\n\r\n".encode())
        self.buf = bytearray()
        self.read_bytes = 0
        self.t0 = time.monotonic()
        head = self._until(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()

    def _fill(self) -> None:
        size = 4096 if self.rate else 65536
        if self.rate:
            due = self.t0 + self.read_bytes / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        data = self.sock.recv(size)
        if not data:
            raise EOFError("connection closed")
        self.read_bytes += len(data)
        self.buf += data

    def _until(self, sep: bytes) -> bytes:
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[: i + len(sep)]
                return out
            self._fill()

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_part(self) -> Part:
        line = self._until(b"\r\n")
        while line == b"":
            line = self._until(b"\r\n")
        assert line == b"--frame", line[:80]
        head = self._until(b"\r\n\r\n").decode("latin-1")
        headers = {}
        for h in head.split("\r\n"):
            k, _, v = h.partition(":")
            headers[k.strip().lower()] = v.strip()
        jpeg = self._exact(int(headers["content-length"]))
        assert self._exact(2) == b"\r\n"
        return Part(headers, jpeg, time.time())

    def parts_for(self, seconds: float) -> list[Part]:
        out: list[Part] = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            out.append(self.read_part())
        return out

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
