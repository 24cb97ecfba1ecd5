"""The camera panel of the page `/` in headless Chromium, against a streamer on the emulated
C920 (tests/fakecam): the widgets change the camera (read back with v4l2-ctl in the same
emulation directory) and the "copy for the inventory" snippet follows.

Drives Chromium through tests/camera_wall.py's helper. Needs the Debian packages chromium and
chromium-driver (skipped, with the reason, when a binary is missing) and the pinned selenium of
requirements-dev.txt. Saves a screenshot of the panel to artifacts/camera-controls.png.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from conftest import APP_DIR, local_non_loopback_ipv4, wait_for
from emulated import cameras, get_controls, streamer

sys.path.insert(0, str(APP_DIR.parent / "tests"))
import camera_wall as wall  # the repository's Chromium helper

pytestmark = pytest.mark.timeout(180)

ARTIFACTS = APP_DIR.parent / "artifacts"


@pytest.fixture(scope="module")
def tools() -> dict[str, str]:
    found, missing = wall.find_tools("chromium", "chromedriver")
    wall.skip_missing(missing)
    return found


def until(check: Callable[[], Any], what: str, timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.1)


def test_the_focus_slider_sets_the_camera_and_the_snippet_follows(tmp_path, spawn, tools) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    cams = cameras(tmp_path, "c920")
    outside = local_non_loopback_ipv4()
    hosts = f"127.0.0.1,{outside}" if outside else "127.0.0.1"
    proc = streamer(spawn, cams, "--device", "/dev/video0", "--fps", "10", "--host", hosts)
    url = proc.url
    assert wait_for(lambda: requests.get(url + "/controls", timeout=5).ok, 10), proc.log()

    def camera(*names: str) -> dict[str, int]:
        return get_controls(cams, names)

    with wall.chromium(tools) as driver:
        driver.get(url + "/")
        focus = until(
            lambda: driver.find_elements(By.ID, "ctl-focus_absolute"), "the panel is built"
        )[0]
        autofocus = driver.find_element(By.ID, "ctl-focus_automatic_continuous")
        snippet = driver.find_element(By.ID, "controls-snippet")
        # Autofocus is on: focus_absolute is inactive, shown disabled and why.
        assert autofocus.is_selected() and not focus.is_enabled()
        assert "inactive" in driver.find_element(By.ID, "ctl-focus_absolute-why").text
        assert snippet.get_attribute("value") == "controls: {}\n"

        # Autofocus off, through the page: the slider becomes usable (flags re-read).
        autofocus.click()
        until(focus.is_enabled, "focus_absolute enabled after autofocus went off")
        assert camera("focus_automatic_continuous") == {"focus_automatic_continuous": 0}

        # Move the focus slider (the keyboard moves it a step, 5, per key).
        focus.send_keys(*[Keys.ARROW_RIGHT] * 8)
        until(
            lambda: camera("focus_absolute") == {"focus_absolute": 40},
            "focus_absolute=40 on the camera",
        )
        until(
            lambda: "focus_absolute: 40" in snippet.get_attribute("value"),
            "the snippet shows focus_absolute",
        )
        assert snippet.get_attribute("value") == (
            "controls:\n  focus_automatic_continuous: 0\n  focus_absolute: 40\n"
        )
        assert driver.find_element(By.CSS_SELECTOR, "output[for=ctl-focus_absolute]").text == "40"

        # A menu by its entry's name; the snippet names the entry too.
        Select(driver.find_element(By.ID, "ctl-power_line_frequency")).select_by_visible_text(
            "50 Hz"
        )
        until(
            lambda: "power_line_frequency: 1  # 50 Hz" in snippet.get_attribute("value"),
            "the snippet shows power_line_frequency",
        )
        assert camera("power_line_frequency") == {"power_line_frequency": 1}
        assert "Set power_line_frequency = 1." in driver.find_element(By.ID, "controls-status").text
        ARTIFACTS.mkdir(exist_ok=True)
        panel = driver.find_element(By.ID, "controls")
        driver.execute_script("arguments[0].scrollIntoView()", panel)
        assert panel.screenshot(str(ARTIFACTS / "camera-controls.png"))

        # From an address that may not write, the page says so and every widget is disabled.
        if outside is None:
            pytest.skip("this machine has no non-loopback IPv4 address for the read-only page")
        driver.get(url.replace("127.0.0.1", outside) + "/")
        until(
            lambda: (
                driver.find_elements(By.ID, "ctl-brightness")
                and driver.find_element(By.ID, "controls-snippet").get_attribute("value")
            ),
            "the read-only panel is built",
        )
        widgets = driver.find_elements(By.CSS_SELECTOR, "#controls-list :is(input, select)")
        assert len(widgets) == 17 and not any(w.is_enabled() for w in widgets)
        text = driver.find_element(By.ID, "controls").text
        assert f"your address {outside} is not one of them" in text
    assert "Traceback" not in proc.log()
    assert (ARTIFACTS / "camera-controls.png").exists()
