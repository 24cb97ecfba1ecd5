"""The tailscaled double (/usr/sbin/tailscaled) for the Molecule scenarios. It is NOT Tailscale.

Control plane (always): it only listens on the local API socket (default
/run/tailscale/tailscaled.sock) so that the `tailscale` double can tell whether "the daemon"
runs, tells systemd READY=1 (Type=notify like the real unit) and exits on SIGTERM. Every start is
appended to /var/lib/tailscale-double/daemon.jsonl (argv verbatim). Without the data-plane file
below, `--cleanup` (the real unit's ExecStopPost) does nothing and the double touches no network
at all.

Data plane (opt-in per container: /etc/tailscale-double.json is {"dataplane": true,
"ingress_ports": [9001, 8443]}, re-read on every reconcile tick, every 0.5 s). It emulates, on
ONE machine and without any VPN, what a tailnet peer would see of this node:
  - the node's Tailscale addresses: while the node is logged in (state.json "logged_in"), the
    addresses `tailscale ip` prints are on `lo` (v4 /32, v6 /128), where real tailscaled puts
    them on tailscale0; other addresses of the Tailscale ranges on lo are removed (after a
    logout, or after the addresses changed: see common.tailnet_ips()). `--cleanup` removes them
    too, like the real cleanup removes tailscale0. Needs `ip` (iproute2) and CAP_NET_ADMIN.
  - traffic arriving over the tailnet ("ingress"): for each port in ingress_ports, a listener on
    each of the container's own IPv4 addresses (eth0's, never 0.0.0.0, never lo or tailnet ones)
    relays each TCP connection byte for byte to (the node's Tailscale IPv4, same port); ports
    published by Docker thus reach what binds the Tailscale address. When the node is not logged
    in, it accepts and closes.
  - `tailscale serve` (serve.json "Web" entries with a "/" handler proxying to
    http://HOST:PORT): a TLS listener on the node's Tailscale IPv4 at the served port, with a
    self-signed certificate for the served DNS name (<hostname>.tail-double.ts.net, made once
    with the openssl CLI and kept in /var/lib/tailscale-double/), relaying the decrypted bytes to
    the target. It is a byte relay, not an HTTP reverse proxy: no X-Forwarded-*/Tailscale-*
    headers, no path routing, HTTP/1.1 only, and a 502 answer when the target refuses. "TCP"
    forwards (serve --tcp) are not emulated.
A listener added or removed, and every failure, is logged (once per distinct failure); nothing in
the data plane can stop the daemon.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import os
import select
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse
from collections.abc import Callable
from types import FrameType
from typing import Any

from .common import DATAPLANE_CONFIG as CONFIG
from .common import SERVE, STATE, STATE_DIR, ipv6_on_lo, read_json, tailnet_ips

# One connection's handler; a listener's wanted entry: (description, address, port, make handler).
Handler = Callable[[socket.socket], None]
Wanted = dict[tuple[Any, ...], tuple[str, str, int, Callable[[], Handler]]]
TLS = tuple[ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO]
TICK = 0.5  # seconds between two reconciles of the data plane
TAILNET_V4 = ipaddress.ip_network("100.64.0.0/10")
TAILNET_V6 = ipaddress.ip_network("fd7a:115c:a1e0::/48")
CHUNK = 65536
MAX_BUFFERED = (
    256 * 1024
)  # per direction and connection: stop reading while this much waits to be sent


def log(message: str) -> None:
    print(f"tailscaled-double: {message}", flush=True)


def notify(message: str) -> None:
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(message.encode(), path)


def close_quietly(*socks: socket.socket | None, reset: bool = False) -> None:
    for s in socks:
        if s is None:
            continue
        try:
            if reset:  # RST instead of FIN, like a refused or aborted connection
                s.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
            s.close()
        except OSError:
            pass


# -- relaying one connection ----------------------------------------------------------------------


class Relay:
    """Copies bytes both ways between a client and an upstream socket, in one thread (poll loop).

    With `tls` (what tls_handshake() returns) the client side speaks TLS, terminated here with
    in-memory BIOs, so that one thread owns the TLS object (an SSLSocket must not be read and
    written from two threads at once).
    Half-close is passed on: the client's end of stream becomes a shutdown(SHUT_WR) of the upstream
    socket once everything before it was sent, and the other way round (with a TLS close_notify
    first).
    Any error, e.g. a reset by either side or a client that went away, closes both sockets.
    """

    def __init__(
        self, client: socket.socket, upstream: socket.socket, tls: TLS | None = None
    ) -> None:
        self.client, self.upstream = client, upstream
        self.tls = tls  # (SSLObject, incoming MemoryBIO, outgoing MemoryBIO) after the handshake
        self.to_upstream = bytearray()  # plaintext
        self.to_client = bytearray()  # bytes on the wire (ciphertext with TLS)
        self.client_eof = self.upstream_eof = False  # read side ended
        self.client_shut = self.upstream_shut = False  # write side shut down by us
        self.tls_closed = False

    def run(self) -> None:
        try:
            self.client.setblocking(False)
            self.upstream.setblocking(False)
            if self.tls is not None:  # the request may have come with the handshake's last bytes
                self.decrypt_from_client()
            while not (self.client_shut and self.upstream_shut):
                self.step()
        except Exception as e:
            close_quietly(self.client, self.upstream, reset=True)
            if not isinstance(e, OSError):  # ssl.SSLError and ConnectionError are OSErrors
                raise  # a bug in the double: the listener logs it
            return
        close_quietly(self.client, self.upstream)

    def step(self) -> None:
        want = {
            self.client: (
                select.POLLIN if not self.client_eof and len(self.to_upstream) < MAX_BUFFERED else 0
            )
            | (select.POLLOUT if self.to_client else 0),
            self.upstream: (
                select.POLLIN if not self.upstream_eof and len(self.to_client) < MAX_BUFFERED else 0
            )
            | (select.POLLOUT if self.to_upstream else 0),
        }
        if not any(want.values()):  # cannot happen while a direction is open; never wait forever
            raise ConnectionError("relay has nothing left to wait for")
        poller = select.poll()
        for sock, mask in want.items():
            if mask:
                poller.register(sock, mask)
        ready = dict(poller.poll())
        wake = select.POLLHUP | select.POLLERR | select.POLLNVAL
        for sock, mask in want.items():
            revents = ready.get(sock.fileno(), 0)
            if mask & select.POLLIN and revents & (select.POLLIN | wake):
                self.read_client() if sock is self.client else self.read_upstream()
            if mask & select.POLLOUT and revents & (select.POLLOUT | wake):
                buf = self.to_client if sock is self.client else self.to_upstream
                with contextlib.suppress(BlockingIOError):
                    del buf[: sock.send(buf)]
        self.pass_on_end_of_stream()

    def read_client(self) -> None:
        try:
            data = self.client.recv(CHUNK)
        except BlockingIOError:
            return
        if self.tls is None:
            self.to_upstream += data
            self.client_eof = not data
            return
        incoming = self.tls[1]
        if data:
            incoming.write(data)
        else:
            incoming.write_eof()
            self.client_eof = True
        self.decrypt_from_client()

    def decrypt_from_client(self) -> None:
        """Everything the incoming BIO holds, decrypted into to_upstream (and TLS answers to
        to_client)."""
        tls, _, outgoing = self.tls
        while True:
            try:
                plain = tls.read(CHUNK)
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):  # close_notify, or EOF without it
                self.client_eof = True
                break
            if not plain:
                self.client_eof = True
                break
            self.to_upstream += plain
        self.to_client += outgoing.read()

    def read_upstream(self) -> None:
        try:
            data = self.upstream.recv(CHUNK)
        except BlockingIOError:
            return
        if not data:
            self.upstream_eof = True
        elif self.tls is None:
            self.to_client += data
        else:
            tls, _, outgoing = self.tls
            tls.write(data)
            self.to_client += outgoing.read()

    def pass_on_end_of_stream(self) -> None:
        if self.client_eof and not self.to_upstream and not self.upstream_shut:
            self.upstream.shutdown(socket.SHUT_WR)
            self.upstream_shut = True
        if self.upstream_eof and not self.client_shut:
            if self.tls is not None and not self.tls_closed:
                tls, _, outgoing = self.tls
                # queues our close_notify; the peer's is not waited for (SSLWantReadError)
                with contextlib.suppress(ssl.SSLError):
                    tls.unwrap()
                self.to_client += outgoing.read()
                self.tls_closed = True
            if not self.to_client:
                self.client.shutdown(socket.SHUT_WR)
                self.client_shut = True


def tls_handshake(client: socket.socket, context: ssl.SSLContext, timeout: float = 10) -> TLS:
    """Server-side TLS handshake over in-memory BIOs; returns (SSLObject, incoming, outgoing)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_side=True)
    client.settimeout(timeout)
    while True:
        try:
            tls.do_handshake()
            client.sendall(outgoing.read())
            return tls, incoming, outgoing
        except ssl.SSLWantReadError:
            client.sendall(outgoing.read())
            data = client.recv(CHUNK)
            if not data:
                raise ConnectionError("client closed during the TLS handshake") from None
            incoming.write(data)


def connect(address: tuple[str, int], timeout: float = 5) -> socket.socket:
    sock = socket.create_connection(address, timeout=timeout)
    sock.settimeout(None)
    return sock


# -- listeners ------------------------------------------------------------------------------------


class Listener:
    """A TCP listening socket with its accept thread; each accepted connection gets its own
    thread."""

    def __init__(self, description: str, address: str, port: int, handle: Handler) -> None:
        self.description, self.handle = description, handle
        self.stopping = False
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((address, port))
            self.sock.listen(128)
        except OSError:
            self.sock.close()
            raise
        self.thread = threading.Thread(target=self.accept_loop, name=description, daemon=True)
        self.thread.start()

    def accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError as e:
                if self.stopping:
                    break
                log(f"{self.description}: accept failed: {e}")
                time.sleep(0.2)
                continue
            threading.Thread(target=self.serve_one, args=(conn,), daemon=True).start()
        self.sock.close()

    def serve_one(self, conn: socket.socket) -> None:
        try:
            self.handle(conn)
        except Exception as e:  # one connection's trouble must not reach the accept loop
            log(f"{self.description}: connection failed: {e!r}")
            close_quietly(conn)

    def close(self) -> None:
        """Stops accepting at once (shutdown wakes the blocked accept); open connections go on."""
        self.stopping = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.thread.join(timeout=2)


# -- the data plane -------------------------------------------------------------------------------


class DataPlane:
    def __init__(self) -> None:
        self.enabled = False  # the config file said so at the last tick
        self.tailnet_v4 = None  # where ingress relays to; None while not logged in
        self.listeners = {}  # key (tuple) -> Listener
        self.problems = {}  # what -> last message logged, so that a lasting failure is logged once
        self.contexts = {}  # served DNS name -> SSLContext

    # logging of failures, once per distinct message
    def problem(self, what: object, message: str) -> None:
        if self.problems.get(what) != message:
            self.problems[what] = message
            log(message)

    def solved(self, what: object) -> None:
        self.problems.pop(what, None)

    def run_forever(self) -> None:
        while True:
            self.safe_tick()
            time.sleep(TICK)

    def safe_tick(self) -> None:
        try:
            self.tick()
            self.solved("tick")
        except Exception:
            self.problem(
                "tick", "data plane reconcile failed (retrying):\n" + traceback.format_exc()
            )

    def read_config(self) -> dict[str, Any] | None:
        try:
            cfg = read_json(CONFIG)
        except (OSError, ValueError) as e:
            self.problem("config", f"{CONFIG} unreadable, data plane off: {e}")
            return None
        if cfg is None:
            return None
        if not isinstance(cfg, dict):
            self.problem("config", f"{CONFIG}: not a JSON object, data plane off")
            return None
        ports = cfg.get("ingress_ports", [])
        if not isinstance(ports, list) or not all(type(p) is int and 0 < p < 65536 for p in ports):
            self.problem(
                "config", f"{CONFIG}: ingress_ports must be a list of TCP ports, data plane off"
            )
            return None
        self.solved("config")
        return cfg if cfg.get("dataplane") is True else None

    def tick(self) -> None:
        cfg = self.read_config()
        if cfg is None:
            if self.enabled:  # switched off while running: undo what it did
                log(f"data plane off ({CONFIG} gone or not enabling it)")
                self.tailnet_v4 = None
                self.set_listeners({})
                self.set_lo_addresses([])
                self.enabled = False
            return
        if not self.enabled:
            log(f"data plane on ({CONFIG}): ingress ports {cfg.get('ingress_ports', [])}")
            self.enabled = True
        state = read_json(STATE) or {}
        ips = tailnet_ips() if state.get("logged_in") else []
        v4_ok = self.set_lo_addresses(ips)
        self.tailnet_v4 = ips[0] if ips and v4_ok else None
        wanted = {}
        for address in self.own_ipv4_addresses():
            for port in cfg.get("ingress_ports", []):
                wanted[("ingress", address, port)] = (
                    f"ingress {address}:{port} -> tailnet:{port}",
                    address,
                    port,
                    lambda port=port: functools.partial(self.relay_ingress, port),
                )
        if self.tailnet_v4:
            wanted.update(self.serve_listeners(self.tailnet_v4))
        self.set_listeners(wanted)

    # addresses on lo
    def ip(self, *args: str) -> str | None:
        """Runs `ip ARGS`; returns its stdout, or None after logging a failure (once)."""
        what = "ip " + " ".join(args)
        try:
            done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
        except FileNotFoundError:
            self.problem("ip-missing", "`ip` not found: install iproute2 for the data plane")
            return None
        except subprocess.TimeoutExpired:
            self.problem(what, f"{what}: timed out")
            return None
        self.solved("ip-missing")
        if done.returncode != 0:
            self.problem(what, f"{what} failed: {done.stderr.strip()}")
            return None
        self.solved(what)
        return done.stdout

    def ipv6_enabled(self) -> bool:
        enabled = ipv6_on_lo()
        if enabled:
            self.solved("ipv6")
        else:
            self.problem(
                "ipv6", "IPv6 is disabled on lo: the node's Tailscale IPv6 address is left out"
            )
        return enabled

    def set_lo_addresses(self, ips: list[str]) -> bool:
        """Puts exactly `ips` of the Tailscale ranges on lo; returns whether the IPv4 one is
        there."""
        shown = self.ip("-o", "addr", "show", "dev", "lo")
        if shown is None:
            return False
        present = set()
        for line in shown.splitlines():
            words = line.split()
            for family in ("inet", "inet6"):
                if family in words:
                    address = ipaddress.ip_address(words[words.index(family) + 1].split("/")[0])
                    if address in TAILNET_V4 or address in TAILNET_V6:
                        present.add(address)
        wanted = {ipaddress.ip_address(a) for a in ips}
        if any(a.version == 6 for a in wanted) and not self.ipv6_enabled():
            wanted = {a for a in wanted if a.version == 4}
        for address in sorted(present - wanted, key=str):
            if (
                self.ip("addr", "del", f"{address}/{address.max_prefixlen}", "dev", "lo")
                is not None
            ):
                log(f"removed {address} from lo")
        v4_ok = True
        for address in sorted(wanted - present, key=str):
            extra = ["nodad"] if address.version == 6 else []  # usable at once, never "tentative"
            if (
                self.ip("addr", "add", f"{address}/{address.max_prefixlen}", "dev", "lo", *extra)
                is not None
            ):
                log(f"added {address} to lo")
            elif address.version == 4:
                v4_ok = False
        return v4_ok

    def own_ipv4_addresses(self) -> list[str]:
        """The container's IPv4 addresses where "tailnet traffic" arrives: not lo, not Tailscale
        ones."""
        shown = self.ip("-4", "-o", "addr", "show", "scope", "global")
        addresses = []
        for line in (shown or "").splitlines():
            words = line.split()
            if len(words) < 4 or words[1] == "lo" or words[2] != "inet":
                continue
            address = ipaddress.ip_address(words[3].split("/")[0])
            if address not in TAILNET_V4:
                addresses.append(str(address))
        return addresses

    # listeners
    def set_listeners(self, wanted: Wanted) -> None:
        """wanted: key -> (description, address, port, make_handler). Closes the others, opens
        the missing.

        make_handler() returns the function given each accepted connection; it is only called for a
        listener about to be opened.
        """
        for key in [k for k in self.listeners if k not in wanted]:
            listener = self.listeners.pop(key)
            listener.close()
            log(f"listener removed: {listener.description}")
        for key, (description, address, port, make_handler) in wanted.items():
            if key in self.listeners:
                continue
            try:
                self.listeners[key] = Listener(description, address, port, make_handler())
            except (OSError, ssl.SSLError) as e:
                self.problem(("listen", key), f"listener {description} failed (retrying): {e}")
                continue
            self.solved(("listen", key))
            log(f"listener added: {description}")

    def relay_ingress(self, port: int, conn: socket.socket) -> None:
        """One connection "arriving over the tailnet": relayed to the node's Tailscale IPv4, same
        port."""
        target = self.tailnet_v4
        if target is None:  # not logged in: nothing answers on the tailnet
            close_quietly(conn)
            return
        try:
            upstream = connect((target, port))
        except OSError:
            close_quietly(conn, reset=True)  # like the refused connection it stands for
            return
        Relay(conn, upstream).run()

    def serve_listeners(self, tailnet_v4: str) -> Wanted:
        """The TLS listeners serve.json asks for, keyed so that any change of target makes a new
        one."""
        wanted = {}
        serve = read_json(SERVE) or {}
        for hostport, web in sorted(serve.get("Web", {}).items()):
            host, _, port = hostport.rpartition(":")
            handlers = web.get("Handlers", {})
            proxy = urllib.parse.urlsplit(handlers.get("/", {}).get("Proxy", ""))
            if not (
                port.isdigit()
                and set(handlers) == {"/"}
                and proxy.scheme == "http"
                and proxy.hostname
                and proxy.path in ("", "/")
            ):
                self.problem(
                    ("serve", hostport),
                    f"serve {hostport}: only a '/' proxy to http://HOST:PORT is emulated, "
                    f"skipped: {handlers}",
                )
                continue
            self.solved(("serve", hostport))
            target = (proxy.hostname, proxy.port or 80)
            wanted[("serve", tailnet_v4, int(port), host, target)] = (
                f"serve https://{host}:{port} on {tailnet_v4}:{port} -> {target[0]}:{target[1]}",
                tailnet_v4,
                int(port),
                # the certificate is made before listening: a failure there means no listener
                lambda host=host, target=target: functools.partial(
                    self.relay_serve, self.tls_context(host), target
                ),
            )
        for port, tcp in serve.get("TCP", {}).items():
            if "TCPForward" in tcp:
                self.problem(
                    ("serve-tcp", port),
                    f"serve --tcp={port} is not emulated by the double, skipped",
                )
        return wanted

    def relay_serve(
        self, context: ssl.SSLContext, target: tuple[str, int], conn: socket.socket
    ) -> None:
        """One connection to a served port: TLS terminated here, the plaintext relayed to the
        target."""
        try:
            tls = tls_handshake(conn, context)
        except (OSError, ssl.SSLError, ConnectionError):
            close_quietly(conn)  # a client that gave up, or did not trust the certificate
            return
        try:
            upstream = connect(target)
        except OSError:  # like tailscale serve: 502 when the target does not answer
            tls_object, _, outgoing = tls
            tls_object.write(
                b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            with contextlib.suppress(ssl.SSLError):
                tls_object.unwrap()
            with contextlib.suppress(OSError):
                conn.sendall(outgoing.read())
            close_quietly(conn)
            return
        conn.settimeout(None)
        Relay(conn, upstream, tls).run()

    def tls_context(self, host: str) -> ssl.SSLContext:
        """A server SSLContext with the self-signed certificate of `host`, made once with
        openssl."""
        if host in self.contexts:
            return self.contexts[host]
        cert = os.path.join(STATE_DIR, f"serve-{host}.crt")
        key = os.path.join(STATE_DIR, f"serve-{host}.key")
        if not (os.path.exists(cert) and os.path.exists(key)):
            command = [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ]
            command += [
                "-nodes",
                "-days",
                "3650",
                "-subj",
                f"/CN={host}",
                "-addext",
                f"subjectAltName=DNS:{host}",
            ]
            command += ["-keyout", key + ".tmp", "-out", cert + ".tmp"]
            done = subprocess.run(command, capture_output=True, text=True, timeout=60)
            if done.returncode != 0:
                raise OSError(
                    f"openssl could not make the certificate of {host}: {done.stderr.strip()}"
                )
            os.chmod(key + ".tmp", 0o600)
            os.replace(key + ".tmp", key)
            os.replace(cert + ".tmp", cert)
            log(f"made a self-signed certificate for {host}: {cert}")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        context.set_alpn_protocols(["http/1.1"])
        self.contexts[host] = context
        return context


def cleanup() -> None:
    """ExecStopPost: like the real cleanup removing tailscale0, the Tailscale addresses leave lo."""
    plane = DataPlane()
    if plane.read_config() is not None:
        plane.set_lo_addresses([])


def main() -> int:
    args = sys.argv[1:]
    if "--cleanup" in args:
        cleanup()
        return 0
    sock_path = "/run/tailscale/tailscaled.sock"
    for i, arg in enumerate(args):
        if arg.startswith("--socket="):
            sock_path = arg.split("=", 1)[1]
        elif arg == "--socket" and i + 1 < len(args):
            sock_path = args[i + 1]
    os.makedirs(STATE_DIR, mode=0o700, exist_ok=True)
    with open(os.path.join(STATE_DIR, "daemon.jsonl"), "a") as f:
        f.write(
            json.dumps({"time": round(time.time(), 3), "argv": sys.argv, "pid": os.getpid()}) + "\n"
        )
    os.makedirs(os.path.dirname(sock_path), exist_ok=True)
    if os.path.exists(sock_path):
        os.unlink(sock_path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sock_path)
    server.listen(16)

    def stop(signum: int, frame: FrameType | None) -> None:
        server.close()
        if os.path.exists(sock_path):
            os.unlink(sock_path)
        sys.stdout.flush()
        os._exit(0)  # at once: the data plane's threads (if any) are not waited for

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"tailscaled-double: listening on {sock_path} (a test double, not Tailscale)", flush=True)
    # The data plane's first reconcile happens before READY=1: once `systemctl start` returned, a
    # logged-in node's addresses are on lo. Without the config file it does nothing.
    plane = DataPlane()
    plane.safe_tick()
    threading.Thread(target=plane.run_forever, name="dataplane", daemon=True).start()
    notify("READY=1\nSTATUS=tailscaled-double running")
    while True:
        try:
            conn, _ = server.accept()
        except OSError:
            continue
        conn.close()
