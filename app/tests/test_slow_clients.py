"""A client on a slow link gets fewer but recent frames and never delays the others."""

from __future__ import annotations

import statistics
import threading
import time

from conftest import MjpegClient, Part, base_url, cfg, running, wait_for

RATE = 64 * 1024  # bytes/s


def test_slow_client_gets_recent_frames_fast_client_full_rate() -> None:
    fps = 20.0
    with running(cfg(width=640, height=480, fps=fps, quality=60)) as s:
        url = base_url(s) + "/stream"
        slow_parts: list[Part] = []
        fast_parts: list[Part] = []
        errors: list[Exception] = []

        def slow() -> None:
            try:
                c = MjpegClient(url, rate=RATE, rcvbuf=4096)
                try:
                    slow_parts.extend(c.parts_for(6.0))
                finally:
                    c.close()
            except Exception as exc:
                errors.append(exc)

        def fast() -> None:
            try:
                time.sleep(1.0)
                c = MjpegClient(url)
                try:
                    c.read_part()
                    fast_parts.extend(c.parts_for(4.0))
                finally:
                    c.close()
            except Exception as exc:
                errors.append(exc)

        threads = [threading.Thread(target=slow), threading.Thread(target=fast)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors, errors
        size = statistics.mean(len(p.jpeg) for p in slow_parts)
        # Skip the first seconds while the link "fills up"; then look at the age of each frame.
        ages = [p.received - p.timestamp for p in slow_parts[3:]]
        p50 = statistics.median(ages)
        print(f"slow: {len(slow_parts)} parts of ~{size:.0f} B, age p50 {p50:.2f} s")
        assert len(slow_parts) < len(fast_parts)
        assert p50 <= 1.0, f"slow client's frames are {p50:.2f} s old (p50)"
        stamps = [p.timestamp for p in fast_parts]
        measured = (len(stamps) - 1) / (stamps[-1] - stamps[0])
        assert measured >= 0.85 * fps, f"fast client got {measured:.1f} fps"


def test_client_that_stops_reading_is_dropped(monkeypatch) -> None:
    import snapshot_stream.httpd as httpd

    monkeypatch.setattr(httpd, "SOCKET_TIMEOUT", 1.5)  # 10 s in production
    with running(cfg(width=320, height=240, fps=25, quality=80, max_clients=2)) as s:
        stuck = MjpegClient(base_url(s) + "/stream", rcvbuf=4096)
        try:
            stuck.read_part()
            # Never read again: the server's write blocks, times out, and frees the slot.
            assert wait_for(lambda: s.hub.clients == 0, 15), s.hub.clients
        finally:
            stuck.close()
        other = MjpegClient(base_url(s) + "/stream")
        try:
            assert len(other.parts_for(1.0)) >= 15
        finally:
            other.close()
