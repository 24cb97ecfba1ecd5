"""bench/bench.py's parsing and figures, and a 2-second run against the real server.

No speed thresholds here: the bench reports figures, tests only check they are computed.
"""

from __future__ import annotations

import importlib.util
import math
import random
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH_PATH = Path(__file__).resolve().parents[2] / "bench" / "bench.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("snapshot_stream_bench", BENCH_PATH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def mjpeg_response(frames: list[tuple[bytes, float]], chunked: bool) -> bytes:
    """A response shaped like the server's: preamble once, each part ends with the boundary."""
    parts = [b"--frame\r\n"]
    for jpeg, ts in frames:
        head = f"Content-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\nX-Timestamp: {ts:.6f}"
        parts.append(head.encode() + b"\r\n\r\n" + jpeg + b"\r\n--frame\r\n")
    if chunked:
        body = (
            b"".join(f"{len(p):x};ext=1\r\n".encode() + p + b"\r\n" for p in parts) + b"0\r\n\r\n"
        )
        te = b"Transfer-Encoding: chunked\r\n"
    else:
        body, te = b"".join(parts), b""
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=frame\r\n"
        + te
        + b"\r\n"
        + body
    )


# JPEG-ish payloads that contain the sequences a naive parser would trip over.
FRAMES = [
    (b"\xff\xd8" + b"\r\n\r\n--frame\r\nContent-Length: 3\r\n\r\n" * 3 + b"\xff\xd9", 1000.5),
    (b"", 1001.0),
    (bytes(range(256)) * 40, 1001.25),
    (b"\xff\xd8x\xff\xd9", 1002.0),
]


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("split", ["whole", "bytewise", "random"])
def test_parser_any_split(bench: ModuleType, chunked: bool, split: str) -> None:
    data = mjpeg_response(FRAMES, chunked)
    got: list[tuple[float, float, int]] = []
    parser = bench.StreamParser(lambda now, ts, size: got.append((now, ts, size)))
    if split == "whole":
        pieces = [data]
    elif split == "bytewise":
        pieces = [data[i : i + 1] for i in range(len(data))]
    else:
        rng = random.Random(7)
        pieces, i = [], 0
        while i < len(data):
            step = rng.randint(1, 9000)
            pieces.append(data[i : i + step])
            i += step
    for i, piece in enumerate(pieces):
        parser.feed(piece, float(i))
    assert [(ts, size) for _, ts, size in got] == [(ts, len(j)) for j, ts in FRAMES]
    assert parser.status == 200
    assert parser.chunked is chunked
    assert parser.finished is chunked


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 401 UNAUTHORIZED\r\nContent-Type: text/plain\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\n\r\n",
        b"garbage\r\n\r\n",
    ],
)
def test_parser_rejects_non_streams(bench: ModuleType, head: bytes) -> None:
    parser = bench.StreamParser(lambda *_: None)
    with pytest.raises(bench.ProtocolError):
        parser.feed(head, 0.0)


def test_figures(bench: ModuleType) -> None:
    assert bench.percentile([], 50) != bench.percentile([], 50)  # nan
    assert bench.percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert bench.percentile([0.0, 10.0], 95) == pytest.approx(9.5)

    def result(frames: list[int]) -> dict:
        fast = [
            {"frames": f, "ages": [0.01, 0.02], "connect_s": 0.001, "error": ""} for f in frames
        ]
        return {"window": 10.0, "client_cpu_pct": 3.0, "fast": fast}

    # 10 s windows; server CPU grows by 0.05 CPU-s/s for 75 more client-frames/s -> ~667 µs.
    rows = [
        bench.summarize(1, result([250]), cpu_s=0.5, wall=10.0, rss_mb=50.0),
        bench.summarize(4, result([250, 250, 250, 240]), cpu_s=1.0, wall=10.0, rss_mb=51.0),
    ]
    bench.add_marginals(rows)
    assert rows[0].fps_mean == 25.0 and rows[0].server_cpu_pct == pytest.approx(5.0)
    assert rows[1].fps_worst == 24.0
    assert rows[1].us_per_frame == pytest.approx(1e6 * 1.0 / 990)
    assert math.isnan(rows[0].marginal_us)
    assert rows[1].marginal_us == pytest.approx(1e6 * 0.05 / (99.0 - 25.0))
    assert bench.fitted_marginal_us(rows) == pytest.approx(rows[1].marginal_us)
    assert rows[1].p50_ms == pytest.approx(15.0)  # ages pooled over all clients
    assert rows[1].p95_ms == pytest.approx(20.0)
    assert bench.verdict("fps@16", 24.0) == "PASS"
    assert bench.verdict("fps@16", 23.9) == "MISS"
    assert bench.verdict("latency_p95_ms", 51.0) == "MISS"
    assert bench.verdict("rss_mb", math.nan) == "n/a"


def test_cpu_delta(bench: ModuleType) -> None:
    a = bench.CpuSample(1.00, {"1": 0.5, "2": 0.25})
    b = bench.CpuSample(1.10, {"1": 0.5625, "2": 0.3125})
    assert bench.cpu_delta(a, b) == pytest.approx(0.125)  # exact per-thread run times
    gone = bench.CpuSample(1.10, {"1": 0.5625})  # a thread exited: fall back to the ticks
    assert bench.cpu_delta(a, gone) == pytest.approx(0.10)
    assert bench.cpu_delta(bench.CpuSample(1.0, {}), bench.CpuSample(1.5, {})) == 0.5


def test_clients_against_the_real_server(bench: ModuleType, spawn) -> None:
    proc = spawn("--source", "synthetic", "--fps", "25", "--quality", "30", "--max-clients", "8")
    srv_stat = Path(f"/proc/{proc.proc.pid}/stat")
    cpu_before = srv_stat.read_text()
    result = bench.run_clients("127.0.0.1", proc.port, 2, duration=2.0, warmup=0.5)
    row = bench.summarize(2, result, cpu_s=0.01, wall=2.0, rss_mb=1.0)
    assert cpu_before and srv_stat.exists()
    assert len(result["fast"]) == 2
    for client in result["fast"]:
        assert client["error"] == ""
        assert client["frames"] > 0
        assert client["bytes"] > 0
        assert client["ages"] and all(math.isfinite(a) for a in client["ages"])
    assert row.frames > 0
    assert math.isfinite(row.p50_ms) and math.isfinite(row.p95_ms)
    assert row.p50_ms <= row.p95_ms
    assert row.fps_mean > 0


def test_server_sampling_and_slow_client(bench: ModuleType) -> None:
    """bench's own Server wrapper (what `python bench/bench.py` uses), briefly."""
    with bench.server(sys.executable, ["--source", "synthetic", "--fps", "10"], "smoke") as srv:
        cpu0 = srv.cpu_sample()
        result = bench.run_clients("127.0.0.1", srv.port, 1, duration=1.5, warmup=0.3, slow=1)
        assert bench.cpu_delta(cpu0, srv.cpu_sample()) > 0
        assert srv.status_kb("VmRSS") > 0
    assert result["fast"][0]["frames"] > 0
    slow = result["slow"][0]
    assert slow["error"] == ""
    assert slow["bytes"] > 0 or slow["frames"] == 0


def test_attacks_report_runs(capsys) -> None:
    """bench/attacks.py end to end, on its cheapest scenario."""
    spec = importlib.util.spec_from_file_location(
        "snapshot_stream_attacks", BENCH_PATH.parent / "attacks.py"
    )
    assert spec and spec.loader
    attacks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(attacks)
    assert attacks.main(["--only", "idle", "--idle-seconds", "1"]) == 0
    report = capsys.readouterr().out
    assert "### Idle" in report
    assert "% of one core" in report
    with pytest.raises(SystemExit):
        attacks.main(["--only", "nonsense"])
