#!/usr/bin/env python3
"""The hostile clients of issue 12, shared by bench/attacks.py (figures) and
app/tests/test_attacks.py (behaviour): dripping connections and a wrong-password flood.

Standard library only. Both attacks come from the loopback addresses of ATTACKERS, so a
per-address limit of the server sees ten different clients.

Run as a program it is the flood, in a process of its own so that its 100 threads cannot slow
the measuring process through the GIL; it prints the status codes it got as a JSON list:

    python bench/attackers.py flood PORT SECONDS [--timeout S]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

# Loopback addresses other than 127.0.0.1: every one is a different client address.
ATTACKERS = [f"127.0.0.{i}" for i in range(2, 12)]


def connect(
    port: int, source: str = "127.0.0.1", timeout: float = 5.0, host: str = "127.0.0.1"
) -> socket.socket:
    """A TCP connection to the server from the loopback address ``source``."""
    sock = socket.socket()
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect((host, port))
    return sock


class Drippers:
    """``n`` connections over ATTACKERS, each sending one byte of a request every ``every`` s.

    The request head is ``head_size`` bytes long, so it never completes while they drip.
    ``closed`` counts the connections the server has closed meanwhile.
    """

    def __init__(self, port: int, n: int, every: float = 2.0, head_size: int = 100_000) -> None:
        self.socks: list[socket.socket] = []
        for i in range(n):
            sock = connect(port, ATTACKERS[i % len(ATTACKERS)])
            sock.setblocking(False)
            self.socks.append(sock)
        self.every = every
        self.request = b"GET /stream HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * head_size
        self.closed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="drippers", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        sent = {s: 0 for s in self.socks}
        sel = selectors.DefaultSelector()
        for s in self.socks:
            sel.register(s, selectors.EVENT_READ)
        while not self._stop.is_set():
            for s in list(sent):
                try:
                    s.send(self.request[sent[s] : sent[s] + 1])
                    sent[s] += 1
                except OSError:
                    del sent[s]
            deadline = time.monotonic() + self.every
            while (left := deadline - time.monotonic()) > 0 and not self._stop.is_set():
                for key, _ in sel.select(min(left, 0.2)):
                    sock = key.fileobj
                    data = b""
                    with contextlib.suppress(OSError):
                        data = sock.recv(4096)  # type: ignore[union-attr]
                    if not data:
                        sel.unregister(sock)
                        sent.pop(sock, None)  # type: ignore[call-overload]
                        self.closed += 1
        sel.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for s in self.socks:
            s.close()


def flood(port: int, seconds: float, timeout: float = 5.0, guessers: int = 100) -> list[int]:
    """``guessers`` connections guessing passwords for ``seconds``; the status codes they got.

    Each guess is a new connection with a new password, so no cache of verified logins helps;
    0 stands for a connection that got no HTTP answer.
    """
    answers: list[int] = []
    end = time.monotonic() + seconds

    def guesser(n: int) -> None:
        i = 0
        while time.monotonic() < end:
            i += 1
            auth = base64.b64encode(f"cam:guess-{n}-{i}".encode()).decode()
            with contextlib.suppress(OSError), connect(port, ATTACKERS[n % 10], timeout) as sock:
                head = f"GET /snapshot.jpg HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n"
                sock.sendall(head.encode() + b"\r\n")
                got = sock.recv(64)
                answers.append(int(got.split(b" ")[1]) if got.startswith(b"HTTP/") else 0)

    threads = [threading.Thread(target=guesser, args=(n,)) for n in range(guessers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def start_flood(port: int, seconds: float, timeout: float = 5.0) -> subprocess.Popen[str]:
    """Run :func:`flood` in a separate process; read its answers with :func:`flood_answers`."""
    cmd = [sys.executable, __file__, "flood", str(port), str(seconds), "--timeout", str(timeout)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def flood_answers(proc: subprocess.Popen[str], timeout: float = 120.0) -> list[int]:
    out, _ = proc.communicate(timeout=timeout)
    return list(json.loads(out))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="attack", required=True)
    run = sub.add_parser("flood", help="wrong-password flood; prints the status codes (JSON)")
    run.add_argument("port", type=int)
    run.add_argument("seconds", type=float)
    run.add_argument("--timeout", type=float, default=5.0, help="socket timeout, seconds")
    args = parser.parse_args(argv)
    print(json.dumps(flood(args.port, args.seconds, args.timeout)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
