"""Shared helpers: real streamer processes, in-process servers; the MJPEG client is the app's
strict stdlib one (snapshot_stream.mjpegclient), shared with bench/ and Molecule."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from snapshot_stream.config import Config
from snapshot_stream.mjpegclient import MjpegClient, Part
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


def local_non_loopback_ipv4() -> str | None:
    """An address of this machine that is not loopback, so a connection to it is not 'local'."""
    for probe in ("192.0.2.1", "10.255.255.254", "198.51.100.1"):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.connect((probe, 9))  # UDP: picks a route and source address, sends nothing
            except OSError:
                continue
            addr = s.getsockname()[0]
            if not ipaddress.ip_address(addr).is_loopback:
                return addr
    return None


def cfg(**kw: object) -> Config:
    values: dict = {"host": "127.0.0.1", "port": 0, "name": "test", "source": "synthetic"}
    values.update(kw)
    return Config(**values)  # type: ignore[arg-type]


__all__ = ["MjpegClient", "Part"]
