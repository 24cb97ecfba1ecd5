from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from snapshot_stream.sdnotify import SEND_TIMEOUT, SystemdNotifier


@pytest.fixture
def listener(tmp_path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield sock, path
    sock.close()


def received(sock: socket.socket) -> bytes:
    return sock.recv(4096)


def test_disabled_without_notify_socket() -> None:
    notifier = SystemdNotifier({})
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog() is False
    assert notifier.status("x") is False
    assert notifier.stopping() is False
    assert notifier.notify(READY="1") is False


def test_defaults_to_os_environ(monkeypatch, listener) -> None:
    sock, path = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert SystemdNotifier().ready() is True
    assert received(sock) == b"READY=1"


def test_messages(listener) -> None:
    sock, path = listener
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready()
    assert received(sock) == b"READY=1"
    assert notifier.ready("streaming /dev/video0")
    assert received(sock) == b"READY=1\nSTATUS=streaming /dev/video0"
    assert notifier.watchdog()
    assert received(sock) == b"WATCHDOG=1"
    assert notifier.status("no signal: end of file")
    assert received(sock) == b"STATUS=no signal: end of file"
    assert notifier.stopping()
    assert received(sock) == b"STOPPING=1"
    assert notifier.notify(STATUS="a", ERRNO="5")
    assert received(sock) == b"STATUS=a\nERRNO=5"


def test_newlines_in_values_cannot_inject_fields(listener) -> None:
    sock, path = listener
    SystemdNotifier({"NOTIFY_SOCKET": path}).status("line one\nREADY=1")
    assert received(sock) == b"STATUS=line one READY=1"


def test_abstract_socket() -> None:
    name = f"snapshot-stream-test-{os.getpid()}-{threading.get_ident()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        notifier = SystemdNotifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.watchdog()
        assert received(sock) == b"WATCHDOG=1"


def test_socket_errors_warn_once_and_never_raise(tmp_path, caplog) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "missing")})
    with caplog.at_level(logging.DEBUG, logger="snapshot_stream.sdnotify"):
        results = [notifier.watchdog() for _ in range(5)]
    assert results == [False] * 5
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "missing" in warnings[0].getMessage()


def test_recovers_when_the_socket_appears(tmp_path) -> None:
    path = str(tmp_path / "late")
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    assert notifier.ready() is False
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(2)
        assert notifier.ready() is True
        assert received(sock) == b"READY=1"


def test_thread_safe(listener) -> None:
    sock, path = listener
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    messages: list[bytes] = []
    reader = threading.Thread(target=lambda: messages.extend(received(sock) for _ in range(200)))
    reader.start()
    senders = [
        threading.Thread(target=lambda n=n: [notifier.status(f"t{n}") for _ in range(50)])
        for n in range(4)
    ]
    for t in senders:
        t.start()
    for t in senders:
        t.join()
    reader.join(10)
    assert sorted(messages) == sorted(f"STATUS=t{n}".encode() for n in range(4) for _ in range(50))


@pytest.mark.timeout(20)
def test_a_stuck_manager_cannot_block_forever(listener) -> None:
    # Nobody reads the socket: once its queue is full a send fails after SEND_TIMEOUT.
    sock, path = listener
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    start = time.monotonic()
    results = [notifier.watchdog() for _ in range(2000)]
    assert results[0] is True
    assert False in results
    assert time.monotonic() - start < SEND_TIMEOUT * 4
    # Once the manager catches up, notifications flow again.
    while True:
        try:
            sock.recv(4096, socket.MSG_DONTWAIT)
        except (BlockingIOError, TimeoutError):
            break
    assert notifier.watchdog() is True
    assert sock.recv(4096) == b"WATCHDOG=1"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "20000000"}, 20.0),
        ({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": "{pid}"}, 0.5),
        ({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": "me"}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    env = {k: v.format(pid=os.getpid()) for k, v in env.items()}
    assert SystemdNotifier(env).watchdog_interval == expected
