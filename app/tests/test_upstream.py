from __future__ import annotations

import base64
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from snapshot_stream import jpeg
from snapshot_stream.errors import SourceError
from snapshot_stream.logtext import redact_url
from snapshot_stream.upstream import MAX_BAD_PARTS, MjpegReader

Script = Callable[[socket.socket, threading.Event], None]


def make_jpegs(count: int) -> list[bytes]:
    rng = np.random.default_rng(7)
    return [
        jpeg.encode(rng.integers(0, 256, (48 + 8 * i, 64, 3), dtype=np.uint8), 80)
        for i in range(count)
    ]


JPEGS = make_jpegs(4)


class RawServer:
    """One-connection HTTP server that writes exactly the bytes a test script sends."""

    def __init__(self, script: Script) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.request = b""
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(script,), daemon=True)
        self.thread.start()

    def url(self, path: str = "/stream") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _run(self, script: Script) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            while b"\r\n\r\n" not in self.request:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                self.request += chunk
            # OSError: the reader went away first.
            with contextlib.suppress(OSError):
                script(conn, self.stop)

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        self.thread.join(5)


@pytest.fixture
def serve() -> Iterator[Callable[[Script], RawServer]]:
    servers: list[RawServer] = []

    def start(script: Script) -> RawServer:
        server = RawServer(script)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def head(
    content_type: str = "multipart/x-mixed-replace; boundary=frame",
    status: str = "200 OK",
    extra: str = "",
) -> bytes:
    return (
        f"HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\n{extra}"
        "Cache-Control: no-cache\r\n\r\n"
    ).encode()


def part(data: bytes, boundary: bytes = b"--frame", length: bool = True, stamp: str = "") -> bytes:
    headers = b"Content-Type: image/jpeg\r\n"
    if length:
        headers += f"Content-Length: {len(data)}\r\n".encode()
    if stamp:
        headers += f"X-Timestamp: {stamp}\r\n".encode()
    return boundary + b"\r\n" + headers + b"\r\n" + data + b"\r\n"


def stream_script(payload: bytes, linger: bool = True) -> Script:
    def script(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(payload)
        if linger:
            stop.wait(5)

    return script


def read_all(url: str, count: int, timeout: float = 3.0) -> list[tuple[bytes, float]]:
    with MjpegReader(url, timeout=timeout) as reader:
        return [reader.read() for _ in range(count)]


FRAMINGS = {
    "content-length": head() + b"".join(part(j) for j in JPEGS),
    # Without Content-Length a part ends at the next boundary, hence the trailing one.
    "no-content-length": head() + b"".join(part(j, length=False) for j in JPEGS) + b"--frame\r\n",
    # What our own server does: the boundary follows each JPEG immediately.
    "boundary-after-jpeg": head()
    + b"--frame\r\n"
    + b"".join(
        b"Content-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n--frame\r\n" % (len(j), j)
        for j in JPEGS
    ),
    "boundary-after-jpeg-no-length": head()
    + b"--frame\r\n"
    + b"".join(b"Content-Type: image/jpeg\r\n\r\n%s\r\n--frame\r\n" % j for j in JPEGS),
    "quoted-boundary": head('multipart/x-mixed-replace;boundary="my:boundary"')
    + b"".join(part(j, b"--my:boundary", length=False) for j in JPEGS)
    + b"--my:boundary\r\n",
    # Declared with the dashes; the body uses the token as declared (some IP cameras).
    "declared-with-dashes": head("multipart/x-mixed-replace; boundary=--myboundary")
    + b"".join(part(j, b"--myboundary", length=False) for j in JPEGS)
    + b"--myboundary\r\n",
    "body-without-dashes": head("multipart/x-mixed-replace; boundary=myboundary")
    + b"".join(part(j, b"myboundary") for j in JPEGS),
    "extra-crlfs-and-preamble": head()
    + b"preamble text\r\n\r\n"
    + b"".join(b"\r\n\r\n" + part(j) + b"\r\n" for j in JPEGS),
    "no-crlf-before-boundary": head()
    + b"".join(b"--frame\r\nContent-Type: image/jpeg\r\n\r\n" + j for j in JPEGS)
    + b"--frame\r\n",
    "boundary-learned-from-stream": head("multipart/x-mixed-replace")
    + b"".join(part(j, b"--xyz", length=False) for j in JPEGS)
    + b"--xyz\r\n",
}


@pytest.mark.timeout(20)
@pytest.mark.parametrize("framing", sorted(FRAMINGS))
def test_returns_the_exact_jpeg_bytes(serve, framing: str) -> None:
    server = serve(stream_script(FRAMINGS[framing]))
    frames = read_all(server.url(), len(JPEGS))
    assert [data for data, _ in frames] == JPEGS


def chunked(payload: bytes, sizes: tuple[int, ...] = (1, 7, 300, 4096, 13)) -> bytes:
    """Chunked transfer encoding with awkward chunk sizes (splitting CRLFs and markers)."""
    out = bytearray()
    pos = 0
    i = 0
    while pos < len(payload):
        size = sizes[i % len(sizes)]
        out += b"%x\r\n" % len(payload[pos : pos + size]) + payload[pos : pos + size] + b"\r\n"
        pos += size
        i += 1
    return bytes(out)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("with_length", [True, False])
def test_chunked_transfer_encoding(serve, with_length: bool) -> None:
    body = b"".join(
        part(j, length=with_length, stamp=f"{1000 + i}.25") for i, j in enumerate(JPEGS)
    )
    response = (
        b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=frame\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunked(body + b"--frame\r\n")
    )
    server = serve(stream_script(response))
    frames = read_all(server.url(), len(JPEGS))
    assert frames == [(j, 1000 + i + 0.25) for i, j in enumerate(JPEGS)]


@pytest.mark.timeout(20)
def test_against_cheroot_wsgi_server() -> None:
    """The real thing: cheroot streams a WSGI generator chunked over HTTP/1.1."""
    from cheroot import wsgi

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "multipart/x-mixed-replace; boundary=frame")])
        yield b"--frame\r\n"
        for i, j in enumerate(JPEGS):
            yield (
                b"Content-Type: image/jpeg\r\nContent-Length: %d\r\nX-Timestamp: %d.5\r\n\r\n"
                % (len(j), 2000 + i)
            )
            yield j
            yield b"\r\n--frame\r\n"
        time.sleep(2)

    server = wsgi.Server(("127.0.0.1", 0), app, numthreads=2)
    server.prepare()
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        port = server.bind_addr[1]
        frames = read_all(f"http://127.0.0.1:{port}/stream", len(JPEGS))
    finally:
        server.stop()
        thread.join(5)
    assert frames == [(j, 2000 + i + 0.5) for i, j in enumerate(JPEGS)]


@pytest.mark.timeout(20)
def test_timestamp_defaults_to_now(serve) -> None:
    server = serve(stream_script(head() + part(JPEGS[0], stamp="garbage") + part(JPEGS[1])))
    before = time.time()
    frames = read_all(server.url(), 2)
    after = time.time()
    assert all(before <= stamp <= after for _, stamp in frames)


@pytest.mark.timeout(20)
def test_bad_parts_are_skipped(serve) -> None:
    tiny = JPEGS[0][:200] + jpeg.EOI
    truncated = JPEGS[1][: len(JPEGS[1]) // 2]
    payload = (
        head()
        + part(b"not a jpeg at all, just text" * 40)
        + part(tiny)
        + part(truncated, length=False)
        + b"--frame\r\nContent-Length: banana\r\n\r\n"
        + JPEGS[0]
        + b"\r\n"
        + part(JPEGS[2])
    )
    server = serve(stream_script(payload))
    assert read_all(server.url(), 1)[0][0] == JPEGS[2]


@pytest.mark.timeout(20)
def test_too_many_bad_parts_raise(serve) -> None:
    payload = head() + part(b"x" * 1000) * (MAX_BAD_PARTS + 5) + part(JPEGS[0])
    server = serve(stream_script(payload))
    with (
        MjpegReader(server.url(), timeout=3) as reader,
        pytest.raises(SourceError, match="garbage"),
    ):
        reader.read()


@pytest.mark.timeout(20)
def test_wrong_content_length_resynchronises(serve) -> None:
    # Content-Length says less than was sent: the tail is skipped up to the next boundary.
    short = b"--frame\r\nContent-Length: 600\r\n\r\n" + JPEGS[0] + b"\r\n"
    server = serve(stream_script(head() + short + part(JPEGS[1])))
    assert read_all(server.url(), 1)[0][0] == JPEGS[1]


@pytest.mark.timeout(20)
@pytest.mark.parametrize("transfer", ["plain", "chunked"])
def test_server_closing_mid_stream(serve, transfer: str) -> None:
    body = part(JPEGS[0]) + part(JPEGS[1])[:1500]
    if transfer == "chunked":
        payload = (
            b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=frame\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + chunked(body)
        )
    else:
        payload = head() + body
    server = serve(stream_script(payload, linger=False))
    with MjpegReader(server.url(), timeout=3) as reader:
        assert reader.read()[0] == JPEGS[0]
        with pytest.raises(SourceError, match=r"^upstream closed the stream$"):
            reader.read()


@pytest.mark.timeout(20)
def test_closing_delimiter_ends_the_stream(serve) -> None:
    payload = head() + part(JPEGS[0], length=False) + b"--frame--\r\n"
    server = serve(stream_script(payload))
    with MjpegReader(server.url(), timeout=3) as reader:
        assert reader.read()[0] == JPEGS[0]
        with pytest.raises(SourceError, match="upstream closed the stream"):
            reader.read()


@pytest.mark.timeout(20)
def test_silent_server_times_out_on_open(serve) -> None:
    server = serve(lambda conn, stop: stop.wait(10))
    reader = MjpegReader(server.url(), timeout=0.5)
    start = time.monotonic()
    with pytest.raises(SourceError, match=r"no response from .* within 0\.5 s"):
        reader.open()
    assert time.monotonic() - start < 2.5


@pytest.mark.timeout(20)
def test_stalled_stream_times_out_on_read(serve) -> None:
    server = serve(stream_script(head() + part(JPEGS[0])))
    with MjpegReader(server.url(), timeout=0.5) as reader:
        reader.read()
        start = time.monotonic()
        with pytest.raises(SourceError, match=r"^no data for 0\.5 s$"):
            reader.read()
        assert time.monotonic() - start < 2.5


@pytest.mark.timeout(20)
def test_http_error_status(serve) -> None:
    server = serve(stream_script(head("text/html", status="404 Not Found") + b"nope"))
    with pytest.raises(SourceError) as excinfo:
        MjpegReader(server.url("/x")).open()
    assert str(excinfo.value) == f"HTTP 404 from {server.url('/x')}"


@pytest.mark.timeout(20)
def test_wrong_content_type(serve) -> None:
    server = serve(stream_script(head("image/png") + b"\x89PNG"))
    with pytest.raises(SourceError, match=r"^not an MJPEG stream: image/png$"):
        MjpegReader(server.url()).open()


@pytest.mark.timeout(20)
def test_connection_refused() -> None:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
    with pytest.raises(SourceError, match="connection refused"):
        MjpegReader(f"http://127.0.0.1:{port}/").open()


def test_unsupported_url() -> None:
    with pytest.raises(SourceError, match="unsupported URL"):
        MjpegReader("rtsp://camera/stream").open()


@pytest.mark.timeout(20)
def test_credentials_are_sent_and_redacted(serve) -> None:
    server = serve(stream_script(head("text/plain", status="401 Unauthorized")))
    url = f"http://user:s%40cret@127.0.0.1:{server.port}/stream"
    with pytest.raises(SourceError) as excinfo:
        MjpegReader(url).open()
    assert "s%40cret" not in str(excinfo.value) and "user" not in str(excinfo.value)
    assert str(excinfo.value) == f"HTTP 401 from {server.url()}"
    server.thread.join(5)
    expected = base64.b64encode(b"user:s@cret").decode()
    assert f"Authorization: Basic {expected}".encode() in server.request


@pytest.mark.timeout(20)
def test_close_from_another_thread_unblocks_read(serve) -> None:
    server = serve(stream_script(head()))
    reader = MjpegReader(server.url(), timeout=10)
    reader.open()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            reader.read()
        except BaseException as exc:  # the test inspects it
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    time.sleep(0.3)
    start = time.monotonic()
    reader.close()
    thread.join(5)
    assert not thread.is_alive()
    assert time.monotonic() - start < 2
    assert len(errors) == 1 and isinstance(errors[0], SourceError)
    assert str(errors[0]) == "reader closed"
    reader.close()  # idempotent
    with pytest.raises(SourceError, match="reader closed"):
        reader.read()


def test_read_before_open() -> None:
    with pytest.raises(SourceError, match="not open"):
        MjpegReader("http://127.0.0.1:9/").read()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://cam:pw@10.0.0.5:8080/stream?x=1", "http://10.0.0.5:8080/stream?x=1"),
        ("https://user@[fe80::1]/s", "https://[fe80::1]/s"),
        ("http://10.0.0.5/stream", "http://10.0.0.5/stream"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected
