#!/usr/bin/env python3
"""Check a generated camera wall (cameras.html) in headless Chromium, and optionally every stream
of the generated playlist (cameras.m3u) with ffmpeg.

Shared by tests/test_camera_wall_browser.py (loopback streamers) and the Molecule fleet scenario
(deployed containers), whose camera URLs carry host names that only this check can reach:
--resolve maps them to the address where the ports are published.

    python tests/camera_wall.py --outputs DIR [--resolve NAME=IP ...] [--basic-auth USER:PASSWORD]
        [--insecure] [--screenshot PATH] [--expect N] [--timeout SECONDS] [--ffmpeg]

Exit 0: every card is live; one JSON document on stdout. Exit 1: a one-line reason and the last
card states on stderr. Exit 2: a binary or selenium is missing (stderr says what to install).
The password may also come from the environment variable CAMERA_WALL_BASIC_AUTH (USER:PASSWORD),
which keeps it off command lines that Ansible or CI would log.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from snapshot_stream.jpeg import dimensions

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

log = logging.getLogger("camera_wall")

AUTH_ENV = "CAMERA_WALL_BASIC_AUTH"
CHROME_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1280,800",
]
# tool -> (Debian package, names the binary goes by)
BINARIES = {
    "chromium": ("chromium", ("chromium", "chromium-browser", "google-chrome")),
    "chromedriver": ("chromium-driver", ("chromedriver",)),
    "ffmpeg": ("ffmpeg", ("ffmpeg",)),
}
CARDS_JS = """
return Array.from(document.querySelectorAll('article.cam')).map(function (c) {
  var img = c.querySelector('img');
  return {id: c.id, src: img.currentSrc || img.src, naturalWidth: img.naturalWidth,
          state: c.getAttribute('data-state'), reachable: c.getAttribute('data-reachable'),
          text: c.querySelector('.state').textContent};
});
"""

Card = dict[str, Any]


class WallNotReady(Exception):
    """The wall's cards did not reach the wanted state in time; keeps the last states seen."""

    def __init__(self, timeout: float, cards: list[Card]) -> None:
        super().__init__(
            f"the camera wall did not get there in {timeout:g} s: {json.dumps(cards, indent=1)}"
        )
        self.timeout = timeout
        self.cards = cards


class FrameError(Exception):
    """ffmpeg did not give one whole JPEG frame."""


def find_tools(*names: str) -> tuple[dict[str, str], list[str]]:
    """Paths of the named tools (keys of BINARIES), and the Debian packages of missing ones."""
    found: dict[str, str] = {}
    missing: list[str] = []
    for name in names:
        package, candidates = BINARIES[name]
        path = next(filter(None, map(shutil.which, candidates)), None)
        if path:
            found[name] = path
        else:
            missing.append(package)
    return found, missing


def skip_missing(missing: list[str]) -> None:
    """In a test: skip when Debian packages of tools are missing, but fail under `make test`.

    `make test` installs every tool (scripts/ci-setup) and sets SNAPSHOT_STREAM_HOST_TOOLS=required,
    so that a tool missing there is a failure, not a skip that leaves CI green. Elsewhere (a
    developer's machine, the apt scenario's container without Chromium) the test is skipped.
    """
    import pytest

    if not missing:
        return
    message = f"missing binaries; install the Debian packages: {' '.join(missing)}"
    if os.environ.get("SNAPSHOT_STREAM_HOST_TOOLS") == "required":
        pytest.fail(f"{message} (scripts/ci-setup installs them: scripts/host-packages.txt)")
    pytest.skip(message)


@contextlib.contextmanager
def chromium(
    tools: Mapping[str, str], *flags: str, headers: Mapping[str, str] | None = None
) -> Iterator[WebDriver]:
    """Headless Chromium on a throw-away profile; `headers` go with every request it makes."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    previous = os.environ.get("SE_OFFLINE")
    # Only the Debian chromium/chromedriver: Selenium Manager must never download anything.
    os.environ["SE_OFFLINE"] = "true"
    profile = tempfile.mkdtemp(prefix="camera-wall-chromium-")
    try:
        options = webdriver.ChromeOptions()
        options.binary_location = tools["chromium"]
        # get() must not wait for the images: an unreachable camera would hold the load event.
        options.page_load_strategy = "eager"
        for flag in (*CHROME_FLAGS, f"--user-data-dir={profile}", *flags):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(tools["chromedriver"]), options=options)
        try:
            if headers:
                driver.execute_cdp_cmd("Network.enable", {})
                driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": dict(headers)})
            yield driver
        finally:
            driver.quit()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
        if previous is None:
            os.environ.pop("SE_OFFLINE", None)
        else:
            os.environ["SE_OFFLINE"] = previous


def wait_for(
    driver: WebDriver, check: Callable[[list[Card]], bool], timeout: float = 30
) -> list[Card]:
    """The wall's cards (CARDS_JS) once `check` accepts them; WallNotReady after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        cards = driver.execute_script(CARDS_JS)
        if check(cards):
            return cards
        if time.monotonic() >= deadline:
            raise WallNotReady(timeout, cards)
        time.sleep(0.25)


def all_live(cards: Sequence[Card], expected: int) -> bool:
    return len(cards) == expected and all(
        c["naturalWidth"] > 0 and c["state"] == "live" and c["reachable"] == "true" for c in cards
    )


def grab_frame(
    ffmpeg: str, url: str, headers: Mapping[str, str] | None = None, timeout: float = 60
) -> bytes:
    """One frame of an MJPEG URL as the camera sent it; FrameError unless it is a whole JPEG."""
    cmd = [ffmpeg, "-nostdin", "-loglevel", "error", "-rw_timeout", str(int(timeout * 1e6))]
    if headers:
        cmd += ["-headers", "".join(f"{k}: {v}\r\n" for k, v in headers.items())]
    # -c:v copy: the camera's own JPEG bytes, not a re-encoding that would hide a truncated frame.
    cmd += ["-i", url, "-frames:v", "1", "-c:v", "copy", "-f", "image2pipe", "pipe:1"]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise FrameError(f"ffmpeg read no frame from {url} in {timeout:g} s") from None
    if proc.returncode != 0:
        lines = proc.stderr.decode(errors="replace").strip().splitlines() or ["no message"]
        raise FrameError(f"ffmpeg could not read {url} (exit {proc.returncode}): {lines[-1]}")
    data = proc.stdout
    if data[:2] != b"\xff\xd8" or data.rstrip(b"\x00")[-2:] != b"\xff\xd9":
        raise FrameError(f"ffmpeg got no whole JPEG (FFD8..FFD9) from {url}: {len(data)} bytes")
    return data


def playlist_urls(path: Path) -> list[str]:
    return [
        line.strip()
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]


def _bracketed(address: str) -> str:
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


def substitute_host(url: str, resolve: Mapping[str, str]) -> tuple[str, str | None]:
    """(URL to read, Host header to send) with a --resolve name swapped for its address.

    ffmpeg cannot remap names, so it connects to the address; the Host header keeps the request
    what it would be with the name, for anything in front of the streamer that routes on it.
    """
    parts = urlsplit(url)
    address = resolve.get((parts.hostname or "").lower())
    if address is None:
        return url, None
    host = _bracketed(address) + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=host)), parts.netloc.rpartition("@")[2]


def _resolve_rule(value: str) -> tuple[str, str]:
    name, sep, address = value.partition("=")
    if not sep or not name.strip() or not address.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=IP, got {value!r}")
    return name.strip().lower(), address.strip()


def _credentials(value: str) -> tuple[str, str]:
    user, sep, password = value.partition(":")
    if not sep or not user:
        # argparse echoes the value after a ValueError, not after an ArgumentTypeError: this keeps
        # the password out of the usage error.
        raise argparse.ArgumentTypeError("expected USER:PASSWORD")
    return user, password


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Check that every camera of a generated camera wall shows a live image.",
        epilog=f"USER:PASSWORD may also come from the environment variable {AUTH_ENV}.",
    )
    parser.add_argument(
        "--outputs",
        type=Path,
        required=True,
        metavar="DIR",
        help="folder with cameras.html and cameras.m3u",
    )
    parser.add_argument(
        "--resolve",
        type=_resolve_rule,
        action="append",
        default=[],
        metavar="NAME=IP",
        help="reach NAME at IP (Chromium host resolver rule; ffmpeg reads from IP); repeatable",
    )
    parser.add_argument(
        "--basic-auth",
        type=_credentials,
        metavar="USER:PASSWORD",
        help="HTTP Basic credentials sent with every request",
    )
    parser.add_argument(
        "--insecure", action="store_true", help="accept self-signed certificates (Chromium)"
    )
    parser.add_argument(
        "--screenshot", type=Path, metavar="PATH", help="PNG of the wall, saved pass or fail"
    )
    parser.add_argument(
        "--expect",
        type=int,
        metavar="N",
        help="number of cameras (default: the URLs in cameras.m3u)",
    )
    parser.add_argument(
        "--timeout", type=float, default=90, metavar="SECONDS", help="per wait (default 90)"
    )
    parser.add_argument(
        "--ffmpeg", action="store_true", help="also read one frame of every playlist URL"
    )
    args = parser.parse_args(argv)
    if args.basic_auth is None and os.environ.get(AUTH_ENV):
        try:
            args.basic_auth = _credentials(os.environ[AUTH_ENV])
        except argparse.ArgumentTypeError as err:
            parser.error(f"{AUTH_ENV}: {err}")
    return args


def _fail(reason: str, cards: Sequence[Card]) -> int:
    log.error("FAILED: %s", reason)
    for card in cards:
        log.error(
            "  %s: state=%s reachable=%s naturalWidth=%s text=%r src=%s",
            card.get("id"),
            card.get("state"),
            card.get("reachable"),
            card.get("naturalWidth"),
            card.get("text"),
            card.get("src"),
        )
    return 1


def _not_ready(err: WallNotReady, expected: int) -> str:
    live = sum(1 for c in err.cards if c["state"] == "live" and c["naturalWidth"] > 0)
    return f"after {err.timeout:g} s: {live} of {len(err.cards)} cards live ({expected} expected)"


def _screenshot(driver: WebDriver, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if driver.save_screenshot(str(path)):
        log.info("screenshot: %s", path)
    else:
        log.warning("could not save the screenshot %s", path)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="camera_wall: %(message)s", stream=sys.stderr)
    tools, missing = find_tools("chromium", "chromedriver", *(["ffmpeg"] if args.ffmpeg else []))
    if missing:
        log.error("missing binaries; install the Debian packages: %s", " ".join(missing))
        return 2
    try:
        from selenium.common.exceptions import WebDriverException
    except ImportError:
        log.error("selenium is missing: pip install -r requirements-dev.txt (in %s)", sys.prefix)
        return 2

    page, playlist = args.outputs / "cameras.html", args.outputs / "cameras.m3u"
    for path in (page, playlist):
        if not path.is_file():
            return _fail(f"{path} does not exist (were the fleet outputs generated?)", [])
    urls = playlist_urls(playlist)
    expected = len(urls) if args.expect is None else args.expect
    resolve = dict(args.resolve)
    flags = []
    if resolve:
        rules = ", ".join(f"MAP {name} {_bracketed(ip)}" for name, ip in resolve.items())
        flags.append(f"--host-resolver-rules={rules}")
    if args.insecure:
        flags.append("--ignore-certificate-errors")
    headers = {}
    if args.basic_auth:
        token = base64.b64encode(":".join(args.basic_auth).encode()).decode()
        headers["Authorization"] = f"Basic {token}"
        log.info("sending HTTP Basic credentials of user %s", args.basic_auth[0])

    cards: list[Card] = []
    try:
        with chromium(tools, *flags, headers=headers) as driver:
            try:
                driver.get(page.resolve().as_uri())
                cards = wait_for(driver, lambda cs: all_live(cs, expected), args.timeout)
            finally:
                if args.screenshot:
                    _screenshot(driver, args.screenshot)
    except WallNotReady as err:
        return _fail(_not_ready(err, expected), err.cards)
    except WebDriverException as err:
        lines = (err.msg or "").strip().splitlines() or [type(err).__name__]
        return _fail(f"Chromium/chromedriver: {lines[0]}", cards)

    frames = []
    if args.ffmpeg:
        for url in urls:
            source, host = substitute_host(url, resolve)
            if host:
                log.info("ffmpeg cannot remap host names: reading %s from %s", url, source)
            try:
                data = grab_frame(
                    tools["ffmpeg"],
                    source,
                    {**({"Host": host} if host else {}), **headers},
                    timeout=args.timeout,
                )
            except FrameError as err:
                return _fail(str(err), cards)
            size = dimensions(data)
            if size is None:
                return _fail(f"{url}: no frame size in the JPEG ffmpeg read", cards)
            width, height = size
            frames.append(
                {"url": url, "read_from": source, "size": [width, height], "bytes": len(data)}
            )

    keys = ("id", "src", "naturalWidth", "state", "reachable")
    report = {
        "page": page.resolve().as_uri(),
        "expected": expected,
        "cards": [{k: c[k] for k in keys} for c in cards],
        "ffmpeg": frames,
        "screenshot": str(args.screenshot) if args.screenshot else None,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
