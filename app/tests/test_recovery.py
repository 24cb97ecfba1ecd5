"""Reopening a lost source: fast while clients watch, backing off while nobody does."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import requests
from conftest import MjpegClient, base_url, cfg, running, wait_for

import snapshot_stream.capture.loop as loop_mod
from snapshot_stream.capture.loop import Backoff
from snapshot_stream.errors import SourceError


class _Unpluggable:
    """A camera that is there while ``present`` is set: open() and read() fail otherwise."""

    def __init__(self, present: threading.Event, opens: list[float]) -> None:
        self.present = present
        self.opens = opens

    def open(self) -> None:
        self.opens.append(time.monotonic())
        if not self.present.is_set():
            raise SourceError("/dev/video0: no such device")

    def read(self) -> np.ndarray:
        if not self.present.is_set():
            raise SourceError("/dev/video0: device disappeared")
        return np.full((120, 160, 3), 99, np.uint8)

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return "/dev/video0"


def test_backoff_schedule() -> None:
    b = Backoff()
    watched = [b.next(watched=True) for _ in range(6)]
    assert watched == [0.25, 0.5, 1.0, 1.0, 1.0, 1.0]
    b.reset()
    unwatched = [b.next(watched=False) for _ in range(10)]
    assert unwatched[:3] == [0.25, 0.5, 1.0]
    assert max(unwatched) == Backoff.UNWATCHED_MAX > Backoff.WATCHED_MAX
    assert unwatched == sorted(unwatched)


def test_real_frames_resume_within_2s_while_a_client_watches() -> None:
    present = threading.Event()
    present.set()
    opens: list[float] = []
    conf = cfg(width=160, height=120, fps=10, source=None)
    with running(conf, factory=lambda: _Unpluggable(present, opens)) as s:
        c = MjpegClient(base_url(s) + "/stream")
        try:
            c.read_part()
            present.clear()  # unplugged
            assert wait_for(lambda: s.capture.state == "no_signal", 5)
            time.sleep(4.0)  # long enough for the backoff to reach its cap
            back = time.monotonic()
            present.set()  # plugged in again
            while True:
                part = c.read_part()
                if not part.placeholder:
                    break
                assert time.monotonic() - back < 5, "no real frame 5 s after the replug"
            took = time.monotonic() - back
        finally:
            c.close()
    print(f"real frames {took:.2f} s after the replug")
    assert took < 2.0, f"real frames resumed {took:.2f} s after the source was back"


def test_unwatched_backoff_grows_and_a_snapshot_probes_at_once(monkeypatch) -> None:
    monkeypatch.setattr(loop_mod, "WATCH_GRACE", 0.5)
    present = threading.Event()
    opens: list[float] = []
    conf = cfg(width=160, height=120, fps=10, source=None)
    with running(conf, factory=lambda: _Unpluggable(present, opens)) as s:
        time.sleep(7.0)
        # Watched cadence would be >= 6 attempts in the last 6 s; unwatched it backs off.
        recent = [t for t in opens if t > time.monotonic() - 3.0]
        assert len(recent) <= 2, f"{len(recent)} probes in 3 s while nobody watched"
        gaps = np.diff(opens)
        assert gaps.max() > Backoff.WATCHED_MAX * 1.5, gaps
        present.set()
        asked = time.monotonic()
        r = requests.get(base_url(s) + "/snapshot.jpg", timeout=5)
        assert r.status_code == 200
        assert wait_for(lambda: s.capture.state == "streaming", 3)
        assert opens[-1] - asked < 1.0, "the request did not cut the backoff short"


@pytest.mark.parametrize("watched", [True, False])
def test_stop_is_prompt_during_backoff(watched: bool, monkeypatch) -> None:
    monkeypatch.setattr(loop_mod, "WATCH_GRACE", 100.0 if watched else 0.0)
    present = threading.Event()
    with running(cfg(width=160, height=120, source=None), lambda: _Unpluggable(present, [])) as s:
        assert wait_for(lambda: s.capture.state == "no_signal", 5)
        time.sleep(1.0)
        began = time.monotonic()
    assert time.monotonic() - began < 1.5
    assert not s.capture.alive
