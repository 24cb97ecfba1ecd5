#!/usr/bin/env python3
"""Benchmark of snapshot-stream: many MJPEG clients on loopback, server CPU, latency, memory.

    python bench/bench.py [--duration 10] [--clients 1,4,16,64,128,256] [--out FILE.md]
                          [--app-dir DIR]

It starts the server under test as a subprocess (the same Python that runs this script, so run
it with the project's venv) and, for each source kind and each client count N, drives N
loopback clients from a separate process for a fixed window while sampling the server's CPU
time and RSS from /proc. It prints a Markdown report with the targets next to the figures.
A MISS is a finding, not an error: the exit status is non-zero only when something broke.
Linux only (/proc).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import itertools
import json
import math
import os
import platform
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT, FPS, QUALITY = 640, 480, 25, 30
# --max-clients of the server under test (the most --clients may ask for is one less).
MAX_CLIENTS = 300
# The marginal cost is fitted over these client counts (issue 12: N=16 to N=128).
MARGINAL_RANGE = (16, 128)
# After all clients have connected, time for their streams to settle before the window opens.
WARMUP = 1.0
RECV_SIZE = 256 * 1024
SLOW_RATE = 64 * 1024  # bytes/s
SLOW_RCVBUF = 16 * 1024
SLOW_FAST_CLIENTS = 4
HEALTH_TIMEOUT = 30.0

# name -> (threshold, "min" if higher is better else "max"); see docs/benchmarks.md.
TARGETS: dict[str, tuple[float, str]] = {
    "fps@16": (24.0, "min"),
    "fps@64": (22.0, "min"),
    "fps@256": (24.0, "min"),
    "marginal_us": (15.0, "max"),
    "passthrough_cpu_ratio": (1 / 3, "max"),
    "latency_p95_ms": (50.0, "max"),
    "slow_age_p50_s": (1.0, "max"),
    "fast_fps_with_slow": (24.0, "min"),
    "rss_mb": (120.0, "max"),
}


class BenchError(Exception):
    """Something broke (as opposed to a target being missed)."""


# The MJPEG parser is the app's strict stdlib one, shared with the tests and Molecule.
sys.path.insert(0, str(REPO / "app"))
from snapshot_stream.mjpegclient import (  # noqa: E402
    Part,
    ProtocolError,
)
from snapshot_stream.mjpegclient import StreamParser as _SharedParser  # noqa: E402


class StreamParser(_SharedParser):
    """The shared parser reporting (receive time, X-Timestamp or nan, JPEG size) per frame.

    JPEG bytes are counted, never kept or copied.
    """

    def __init__(self, on_frame: Callable[[float, float, int], None]) -> None:
        def on_part(part: Part) -> None:
            on_frame(part.received, part.timestamp, part.size)

        super().__init__(on_part, keep_data=False)


# --- the client side: driving N connections -----------------------------------------------------


@dataclass
class ClientStats:
    """What one client saw inside the measurement window."""

    frames: int = 0
    bytes: int = 0
    ages: list[float] = field(default_factory=list)  # receive time - X-Timestamp, seconds
    connect_s: float = 0.0  # connect() until the request was sent
    error: str = ""


@dataclass
class Window:
    """The measurement window (epoch seconds); frames outside it are parsed but not counted."""

    start: float = math.inf
    end: float = math.inf


@dataclass
class Conn:
    sock: socket.socket
    parser: StreamParser
    stats: ClientStats


def _request(host: str, port: int, path: str, authorization: str | None) -> bytes:
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "User-Agent: snapshot-stream-bench",
        "Accept: */*",
    ]
    if authorization:
        lines.append(f"Authorization: {authorization}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _open(
    host: str,
    port: int,
    window: Window,
    path: str = "/stream",
    authorization: str | None = None,
    rcvbuf: int | None = None,
) -> Conn:
    stats = ClientStats()

    def on_frame(now: float, ts: float, size: int) -> None:
        if window.start <= now <= window.end:
            stats.frames += 1
            stats.bytes += size
            if not math.isnan(ts):
                stats.ages.append(now - ts)

    began = time.monotonic()
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        # Before connect(), so the advertised window is small from the first segment.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10.0)
    sock.connect((host, port))
    sock.sendall(_request(host, port, path, authorization))
    stats.connect_s = time.monotonic() - began
    return Conn(sock, StreamParser(on_frame), stats)


def _throttled_reader(conn: Conn, rate: int, window: Window) -> None:
    """Read at most ``rate`` bytes/s: the kernel's small receive buffer fills, the server's
    writes to this client block, and it should then skip frames rather than queue them."""
    conn.sock.settimeout(0.5)
    start = time.time()
    got = 0
    step = max(512, rate // 20)
    while (now := time.time()) < window.end:
        due = start + got / rate
        if due > now:
            time.sleep(min(due, window.end) - now)
            continue
        try:
            data = conn.sock.recv(step)
        except TimeoutError:
            continue
        except OSError as exc:
            conn.stats.error = f"{type(exc).__name__}: {exc}"
            return
        if not data:
            conn.stats.error = "closed by server"
            return
        got += len(data)
        try:
            conn.parser.feed(data, time.time())
        except (BenchError, ProtocolError, ValueError) as exc:
            conn.stats.error = str(exc)
            return


class ClientGroup:
    """``n`` fast clients (one selector loop) and ``slow`` throttled ones (a thread each).

    Connecting is separate from measuring: a server whose accept queue overflows makes
    connect() wait for SYN retransmits (1 s, 3 s...), which must not eat into the window.
    """

    def __init__(
        self,
        host: str,
        port: int,
        n: int,
        slow: int = 0,
        path: str = "/stream",
        authorization: str | None = None,
        slow_rate: int = SLOW_RATE,
        slow_rcvbuf: int = SLOW_RCVBUF,
    ) -> None:
        self.window = Window()
        self.slow_rate = slow_rate
        self.conns: list[Conn] = []
        self.slow_conns: list[Conn] = []
        try:
            for _ in range(n):
                self.conns.append(_open(host, port, self.window, path, authorization))
            for _ in range(slow):
                conn = _open(host, port, self.window, path, authorization, slow_rcvbuf)
                self.slow_conns.append(conn)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for c in self.conns + self.slow_conns:
            c.sock.close()

    def run(self, t_start: float, t_end: float) -> dict[str, Any]:
        """Read until ``t_end``; count frames received within [t_start, t_end]."""
        self.window.start, self.window.end = t_start, t_end
        threads = [
            threading.Thread(target=_throttled_reader, args=(c, self.slow_rate, self.window))
            for c in self.slow_conns
        ]
        for t in threads:
            t.start()
        sel = selectors.DefaultSelector()
        for c in self.conns:
            c.sock.setblocking(False)
            sel.register(c.sock, selectors.EVENT_READ, c)
        cpu_at_start: float | None = None
        try:
            while True:
                now = time.time()
                if cpu_at_start is None and now >= t_start:
                    cpu_at_start = _own_cpu()
                if now >= t_end:
                    break
                if not sel.get_map():
                    time.sleep(min(0.2, t_end - now))
                    continue
                for key, _ in sel.select(min(0.2, t_end - now)):
                    c: Conn = key.data
                    try:
                        data = c.sock.recv(RECV_SIZE)
                        if not data:
                            raise BenchError("closed by server")
                        c.parser.feed(data, time.time())
                    except (OSError, BenchError, ProtocolError, ValueError) as exc:
                        c.stats.error = str(exc) or type(exc).__name__
                        sel.unregister(c.sock)
            cpu_total = _own_cpu() - (cpu_at_start if cpu_at_start is not None else _own_cpu())
        finally:
            for t in threads:
                t.join(timeout=2.0)
            sel.close()
            self.close()
        window = t_end - t_start
        return {
            "window": window,
            "client_cpu_pct": 100.0 * cpu_total / window if window > 0 else 0.0,
            "fast": [dataclasses.asdict(c.stats) for c in self.conns],
            "slow": [dataclasses.asdict(c.stats) for c in self.slow_conns],
        }


def run_clients(
    host: str, port: int, n: int, duration: float, warmup: float = WARMUP, **kwargs: Any
) -> dict[str, Any]:
    """Connect, warm up, measure for ``duration`` seconds (in this process)."""
    group = ClientGroup(host, port, n, **kwargs)
    t_start = time.time() + warmup
    return group.run(t_start, t_start + duration)


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def _worker_main(spec: str) -> int:
    """Client process: connect, say so, read the window from stdin, report JSON on stdout."""
    group = ClientGroup(**json.loads(spec))
    print("connected", flush=True)
    times = json.loads(sys.stdin.readline())
    json.dump(group.run(times["t_start"], times["t_end"]), sys.stdout)
    return 0


# --- figures -------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100); nan for no values."""
    if not values:
        return math.nan
    s = sorted(values)
    k = (len(s) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


@dataclass
class Row:
    """One (source kind, N) measurement."""

    n: int
    fps_mean: float
    fps_worst: float
    server_cpu_pct: float
    client_cpu_pct: float
    us_per_frame: float
    rss_mb: float
    p50_ms: float
    p95_ms: float
    frames: int
    connect_max_ms: float
    errors: list[str]
    marginal_us: float = math.nan


def summarize(n: int, result: dict[str, Any], cpu_s: float, wall: float, rss_mb: float) -> Row:
    """Turn a worker result plus the server's CPU seconds over the window into a Row."""
    fast = result["fast"]
    window = result["window"]
    fps = [c["frames"] / window for c in fast] or [0.0]
    ages = [a for c in fast for a in c["ages"]]
    frames = sum(c["frames"] for c in fast)
    return Row(
        n=n,
        fps_mean=sum(fps) / len(fps),
        fps_worst=min(fps),
        server_cpu_pct=100.0 * cpu_s / wall,
        client_cpu_pct=result["client_cpu_pct"],
        us_per_frame=1e6 * cpu_s / frames if frames else math.nan,
        rss_mb=rss_mb,
        p50_ms=1e3 * percentile(ages, 50),
        p95_ms=1e3 * percentile(ages, 95),
        frames=frames,
        connect_max_ms=1e3 * max((c["connect_s"] for c in fast), default=math.nan),
        errors=sorted({c["error"] for c in fast if c["error"]}),
    )


def add_marginals(rows: list[Row]) -> None:
    """Marginal server CPU per extra delivered client-frame, between consecutive N."""
    for prev, row in itertools.pairwise(rows):
        d_cpu = (row.server_cpu_pct - prev.server_cpu_pct) / 100.0  # CPU-seconds per second
        d_fps = row.fps_mean * row.n - prev.fps_mean * prev.n  # client-frames per second
        row.marginal_us = 1e6 * d_cpu / d_fps if d_fps > 0 else math.nan


def fitted_marginal_us(rows: Sequence[Row]) -> float:
    """Least-squares slope of server CPU vs delivered client-frames/s over all N, in µs.

    Less noisy than any single consecutive difference, so the target is judged on it."""
    pts = [(r.fps_mean * r.n, r.server_cpu_pct / 100.0) for r in rows]
    if len(pts) < 2:
        return math.nan
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    if sxx == 0:
        return math.nan
    return 1e6 * sum((x - mx) * (y - my) for x, y in pts) / sxx


def verdict(name: str, value: float) -> str:
    limit, kind = TARGETS[name]
    if math.isnan(value):
        return "n/a"
    ok = value >= limit if kind == "min" else value <= limit
    return "PASS" if ok else "MISS"


# --- the server side -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get_json(url: str, timeout: float = 2.0) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with contextlib.suppress(ValueError):
            return exc.code, json.loads(exc.read())
        return exc.code, {}


@dataclass(frozen=True)
class CpuSample:
    ticks_s: float  # utime + stime, in clock ticks (10 ms) turned into seconds
    threads: dict[str, float]  # thread id -> run time in seconds (ns resolution)


def cpu_delta(a: CpuSample, b: CpuSample) -> float:
    """Server CPU seconds between two samples.

    utime/stime come in 10 ms ticks, i.e. +-0.1 % of a core over 10 s, which is too coarse to
    compare a 1.6 % with a 4.6 % process. The per-thread schedstat run times are exact, but a
    thread that exits between the samples takes its time with it, so they are used only when
    the same threads exist at both ends (cheroot's pool and the capture thread are long-lived).
    """
    if a.threads and a.threads.keys() == b.threads.keys():
        return sum(b.threads.values()) - sum(a.threads.values())
    return b.ticks_s - a.ticks_s


class Server:
    """One snapshot-stream process, with its log in a temporary file."""

    def __init__(
        self, python: str, args: Sequence[str], label: str, app_dir: str | None = None
    ) -> None:
        self.port = free_port()
        self.label = label
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in stop()
            prefix=f"bench-{label}-", suffix=".log", delete=False
        )
        cmd = [
            python,
            "-m",
            "snapshot_stream",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        self.cmd = [*cmd, *args]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # Settings from the environment would silently change what is measured.
        for key in list(env):
            if key.startswith("SNAPSHOT_STREAM_"):
                del env[key]
        if app_dir:
            # Another checkout's app (e.g. the "before" of a comparison) ahead of the installed one.
            env["PYTHONPATH"] = str(Path(app_dir).resolve())
        self.proc = subprocess.Popen(
            self.cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=REPO
        )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = HEALTH_TIMEOUT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(
                    f"{self.label} server exited ({self.proc.returncode}):\n{self.tail()}"
                )
            with contextlib.suppress(OSError, ValueError):
                status, body = _get_json(self.base + "/healthz")
                if status == 200 and body.get("state") == "streaming":
                    return body
            time.sleep(0.2)
        raise BenchError(f"{self.label} server not healthy after {timeout:.0f} s:\n{self.tail()}")

    def wait_clients_gone(self, timeout: float = 5.0) -> None:
        """Let the server notice closed connections before the next measurement."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                if _get_json(self.base + "/healthz")[1].get("clients") == 0:
                    return
            time.sleep(0.1)

    def cpu_seconds(self) -> float:
        """utime + stime of the whole process (all threads), from /proc/PID/stat."""
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        # Fields after the parenthesised command name (which may contain spaces).
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def cpu_sample(self) -> CpuSample:
        """CPU time now, precise where the kernel allows (see :func:`cpu_delta`)."""
        threads: dict[str, float] = {}
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{self.proc.pid}/task"):
                with contextlib.suppress(OSError, ValueError, IndexError):
                    text = Path(f"/proc/{self.proc.pid}/task/{tid}/schedstat").read_text()
                    threads[tid] = int(text.split()[0]) / 1e9
        return CpuSample(self.cpu_seconds(), threads)

    def status_kb(self, key: str) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1])
        return math.nan

    def tail(self, lines: int = 20) -> str:
        self.log.flush()
        text = Path(self.log.name).read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


def supports(python: str, flag: str, app_dir: str | None = None) -> bool:
    """Whether the snapshot-stream under test knows ``flag`` (older versions lack some)."""
    env = {**os.environ}
    if app_dir:
        env["PYTHONPATH"] = str(Path(app_dir).resolve())
    out = subprocess.run(
        [python, "-m", "snapshot_stream", "--help"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=False,
    ).stdout
    return flag in out


@contextlib.contextmanager
def server(
    python: str, args: Sequence[str], label: str, app_dir: str | None = None
) -> Iterator[Server]:
    srv = Server(python, args, label, app_dir)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def measure(srv: Server, n: int, duration: float, slow: int = 0) -> tuple[Row, dict[str, Any]]:
    """Run one window: clients in a subprocess, server CPU and RSS sampled here."""
    spec = {"host": "127.0.0.1", "port": srv.port, "n": n, "slow": slow}
    worker = subprocess.Popen(
        [sys.executable, __file__, "--worker", json.dumps(spec)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert worker.stdin is not None and worker.stdout is not None
    try:
        if worker.stdout.readline().strip() != "connected":
            worker.wait(timeout=5)
            raise BenchError(f"client process failed to connect (N={n}):\n{worker.stderr.read()}")
        t_start = time.time() + WARMUP
        t_end = t_start + duration
        worker.stdin.write(json.dumps({"t_start": t_start, "t_end": t_end}) + "\n")
        worker.stdin.flush()
        time.sleep(max(0.0, t_start - time.time()))
        cpu0, wall0 = srv.cpu_sample(), time.monotonic()
        time.sleep(max(0.0, t_end - time.time()))
        cpu1, wall1 = srv.cpu_sample(), time.monotonic()
        rss_mb = srv.status_kb("VmRSS") / 1024
        out, err = worker.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        raise BenchError(f"client process hung (N={n})") from None
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    if worker.returncode != 0:
        raise BenchError(f"client process failed (N={n}):\n{err.strip()[-2000:]}")
    result = json.loads(out)
    srv.wait_clients_gone()
    return summarize(n, result, cpu_delta(cpu0, cpu1), wall1 - wall0, rss_mb), result


# --- the report ----------------------------------------------------------------------------------


def _f(value: float, digits: int = 1) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def machine_info(python: str) -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                cpu = value.strip()
                if key.strip() == "model name":
                    break
    probe = subprocess.run(
        [
            python,
            "-c",
            "import cv2, platform; print(platform.python_version(), cv2.__version__)",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    py_ver, _, cv_ver = probe.stdout.strip().partition(" ")
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": cpu,
        "kernel": platform.release(),
        "machine": platform.machine(),
        "python": py_ver or "?",
        "opencv": cv_ver or "?",
        # Other work on the machine skews every figure; the report shows how busy it was.
        "load": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }


def kind_table(title: str, rows: Sequence[Row]) -> list[str]:
    out = [
        f"### {title}",
        "",
        (
            "| N | fps mean | fps worst | server CPU % | client CPU % | µs/client-frame "
            "| marginal µs | RSS MB | latency p50 ms | latency p95 ms | connect max ms |"
        ),
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r.n} | {_f(r.fps_mean)} | {_f(r.fps_worst)} | {_f(r.server_cpu_pct)} "
            f"| {_f(r.client_cpu_pct)} | {_f(r.us_per_frame, 0)} | {_f(r.marginal_us, 0)} "
            f"| {_f(r.rss_mb)} | {_f(r.p50_ms)} | {_f(r.p95_ms)} | {_f(r.connect_max_ms, 0)} |"
        )
    errors = sorted({e for r in rows for e in r.errors})
    if errors:
        out += ["", "Client errors: " + "; ".join(errors)]
    return [*out, ""]


def run(args: argparse.Namespace) -> str:
    python = args.python
    counts = args.clients
    common = ["--width", str(WIDTH), "--height", str(HEIGHT), "--fps", str(FPS)]
    common += ["--max-clients", str(MAX_CLIENTS)]
    if supports(python, "--max-per-address", args.app_dir):
        # All bench clients come from 127.0.0.1.
        common += ["--max-per-address", str(MAX_CLIENTS + 8)]
        common += ["--max-connections", str(2 * MAX_CLIENTS)]
    info = machine_info(python)
    app_dir = args.app_dir
    results: dict[str, list[Row]] = {}
    slow_res: dict[str, float] = {}
    rss_after = math.nan
    rss_peak = math.nan

    def log(msg: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    def series(srv: Server, label: str) -> list[Row]:
        rows = []
        for n in counts:
            log(f"{label}: {n} client(s) for {args.duration:g} s")
            row, _ = measure(srv, n, args.duration)
            rows.append(row)
        add_marginals(rows)
        return rows

    synthetic_args = [*common, "--source", "synthetic", "--quality", str(QUALITY)]
    with server(python, synthetic_args, "re-encode", app_dir) as srv:
        results["re-encode"] = series(srv, "re-encode")
        if 64 not in counts:
            log("64 clients come and go (for the RSS figure)")
            measure(srv, 64, 2.0)
        time.sleep(1.0)
        rss_after = srv.status_kb("VmRSS") / 1024
        log(f"slow client at {SLOW_RATE // 1024} KiB/s with {SLOW_FAST_CLIENTS} fast clients")
        row, raw = measure(srv, SLOW_FAST_CLIENTS, args.duration, slow=1)
        slow = raw["slow"][0]
        slow_res = {
            "fps": slow["frames"] / raw["window"],
            "p50": percentile(slow["ages"], 50),
            "p95": percentile(slow["ages"], 95),
            "fast_fps_mean": row.fps_mean,
            "fast_fps_worst": row.fps_worst,
            "kib_s": slow["bytes"] / raw["window"] / 1024,
        }
        slow_error = slow["error"]
        rss_peak = srv.status_kb("VmHWM") / 1024

    upstream_args = [*common, "--source", "synthetic", "--quality", str(QUALITY)]
    with server(python, upstream_args, "upstream", app_dir) as up:
        # No --quality: the server under test forwards the upstream's JPEGs untouched.
        pass_args = [*common, "--source", f"{up.base}/stream"]
        with server(python, pass_args, "passthrough", app_dir) as srv:
            health = _get_json(srv.base + "/healthz")[1]
            if health.get("passthrough") is False:
                log("warning: /healthz says passthrough is off; figures are for re-encoding")
            results["passthrough"] = series(srv, "passthrough")
            rss_peak = max(rss_peak, srv.status_kb("VmHWM") / 1024)

    # --- assemble the report
    enc, pas = results["re-encode"], results["passthrough"]

    def at(rows: list[Row], n: int) -> Row | None:
        return next((r for r in rows if r.n == n), None)

    def fps_at(n: int) -> float:
        found = [r.fps_mean for rows in results.values() if (r := at(rows, n))]
        return min(found) if found else math.nan

    n_min = min(counts)
    enc_min, pas_min = at(enc, n_min), at(pas, n_min)
    ratio = math.nan
    if enc_min and pas_min and enc_min.server_cpu_pct > 0:
        ratio = pas_min.server_cpu_pct / enc_min.server_cpu_pct
    lo, hi = MARGINAL_RANGE

    def in_range(rows: list[Row]) -> list[Row]:
        chosen = [r for r in rows if lo <= r.n <= hi]
        return chosen if len(chosen) >= 2 else rows

    marginal = max(fitted_marginal_us(in_range(enc)), fitted_marginal_us(in_range(pas)))
    p95 = max(r.p95_ms for rows in results.values() for r in rows)
    rss = max([r.rss_mb for rows in results.values() for r in rows] + [rss_after, rss_peak])
    measured = {
        "fps@16": fps_at(16),
        "fps@64": fps_at(64),
        "fps@256": fps_at(256),
        "marginal_us": marginal,
        "passthrough_cpu_ratio": ratio,
        "latency_p95_ms": p95,
        "slow_age_p50_s": slow_res["p50"],
        "fast_fps_with_slow": slow_res["fast_fps_mean"],
        "rss_mb": rss,
    }
    described = {
        "fps@16": ("per-client fps at N=16 (mean, worse source kind)", ">= 24", 1),
        "fps@64": ("per-client fps at N=64 (mean, worse source kind)", ">= 22", 1),
        "fps@256": ("per-client fps at N=256 (mean, worse source kind)", ">= 24", 1),
        "marginal_us": (
            f"marginal server µs per extra client-frame (fit over N={lo}..{hi}, worse kind)",
            "<= 15",
            0,
        ),
        "passthrough_cpu_ratio": (
            f"passthrough / re-encode server CPU at N={n_min}",
            "<= 0.33",
            2,
        ),
        "latency_p95_ms": ("latency p95 ms (worst run)", "<= 50", 1),
        "slow_age_p50_s": ("slow client frame age p50 s", "<= 1", 2),
        "fast_fps_with_slow": (
            "fast clients' fps next to the slow one (mean)",
            ">= 24",
            1,
        ),
        "rss_mb": (
            "server RSS MB (max of all samples, peak, after 64 left)",
            "<= 120",
            1,
        ),
    }
    lines = [
        "# snapshot-stream benchmark",
        "",
        f"- date: {info['date']}",
        (
            f"- machine: {info['nproc']} CPU(s), {info['cpu']} ({info['machine']}), "
            f"Linux {info['kernel']}"
        ),
        f"- python {info['python']}, OpenCV {info['opencv']}; load average before the run: "
        f"{info['load']}",
        (
            f"- stream: {WIDTH}x{HEIGHT} @ {FPS} fps, quality {QUALITY} (synthetic source); "
            f"window {args.duration:g} s per N after {WARMUP:g} s warm-up; clients on loopback "
            "in one separate process"
        ),
        (
            "- server CPU is % of one core (all threads of the server process, from /proc); "
            "the passthrough figures exclude the upstream streamer that plays the camera"
        ),
        "",
    ]
    lines += kind_table("Re-encoding (--source synthetic --quality 30)", enc)
    lines += kind_table("Passthrough (--source http://upstream/stream, no --quality)", pas)
    lines += [
        (
            f"### Slow client ({SLOW_RATE // 1024} KiB/s reads, "
            f"SO_RCVBUF {SLOW_RCVBUF // 1024} KiB) next to {SLOW_FAST_CLIENTS} fast clients"
            " (re-encoding)"
        ),
        "",
        f"- slow client: {_f(slow_res['fps'], 2)} fps, {_f(slow_res['kib_s'])} KiB/s, frame age "
        f"p50 {_f(slow_res['p50'], 2)} s, p95 {_f(slow_res['p95'], 2)} s"
        + (f" (error: {slow_error})" if slow_error else ""),
        (
            f"- fast clients: {_f(slow_res['fast_fps_mean'])} fps mean, "
            f"{_f(slow_res['fast_fps_worst'])} worst"
        ),
        (
            f"- server RSS after 64 clients came and went: {_f(rss_after)} MB "
            f"(peak VmHWM {_f(rss_peak)} MB)"
        ),
        "",
        "### Targets",
        "",
        "| figure | target | measured | |",
        "|---|---:|---:|---|",
    ]
    for key, (text, target, digits) in described.items():
        lines.append(
            f"| {text} | {target} | {_f(measured[key], digits)} | {verdict(key, measured[key])} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument(
        "--clients",
        type=lambda s: sorted({int(x) for x in s.split(",") if x.strip()}),
        default=[1, 4, 16, 64],
        help="comma-separated client counts (default 1,4,16,64)",
    )
    parser.add_argument("--out", type=Path, help="also write the Markdown report here")
    parser.add_argument(
        "--app-dir",
        help="measure the snapshot_stream package in this directory (e.g. another checkout's "
        "app/) instead of the installed one",
    )
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="Python that runs the server (default: this one)",
    )
    args = parser.parse_args(argv)
    if not args.clients or min(args.clients) < 1 or max(args.clients) > MAX_CLIENTS - 1:
        parser.error(f"--clients must be between 1 and {MAX_CLIENTS - 1}")
    if args.duration <= 0:
        parser.error("--duration must be > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        return _worker_main(argv[1])
    args = parse_args(argv)
    try:
        report = run(args)
    except (BenchError, OSError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    print(report, end="")
    if args.out:
        args.out.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
