"""--controls: parsing, ordering and checking values against what a device reports.

Setting them on a camera (and again after a replug) runs against the emulated C920 in
test_camera_emulated.py.
"""

from __future__ import annotations

import pytest

from snapshot_stream import controls, videodev
from snapshot_stream.cli import parse_config
from snapshot_stream.videodev import ControlInfo

FOCUS = ControlInfo(
    0x009A090A, "focus_absolute", "Focus (absolute)", videodev.CTRL_TYPE_INTEGER, 0, 250, 5, 0, 0
)
AUTOFOCUS = ControlInfo(
    0x009A090C,
    "focus_automatic_continuous",
    "Focus, Automatic Continuous",
    videodev.CTRL_TYPE_BOOLEAN,
    0,
    1,
    1,
    1,
    0,
)
FLICKER = ControlInfo(
    0x00980918,
    "power_line_frequency",
    "Power Line Frequency",
    videodev.CTRL_TYPE_MENU,
    0,
    2,
    1,
    2,
    0,
    ((0, "Disabled"), (1, "50 Hz"), (2, "60 Hz")),
)
EXPOSURE_MODE = ControlInfo(
    0x009A0901,
    "auto_exposure",
    "Auto Exposure",
    videodev.CTRL_TYPE_MENU,
    0,
    3,
    1,
    3,
    0,
    ((1, "Manual Mode"), (3, "Aperture Priority Mode")),
)


def test_parse_spec() -> None:
    assert controls.parse_spec("focus_automatic_continuous=0, focus_absolute=40") == (
        ("focus_automatic_continuous", "0"),
        ("focus_absolute", "40"),
    )
    assert controls.parse_spec("power_line_frequency=50 Hz,") == (
        ("power_line_frequency", "50 Hz"),
    )
    assert controls.parse_spec("") == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("focus_absolute", "NAME=VALUE"),
        ("focus_absolute=", "NAME=VALUE"),
        ("Focus=1", "in lower case"),
        ("focus absolute=1", "as v4l2-ctl prints them"),
        ("gain=1,gain=2", "names gain twice"),
    ],
)
def test_parse_spec_rejects_bad_shapes(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        controls.parse_spec(text)


def test_cli_and_environment(capsys) -> None:
    config = parse_config(["--controls", "focus_automatic_continuous=0,focus_absolute=40"], {})
    assert config.controls == (("focus_automatic_continuous", "0"), ("focus_absolute", "40"))
    env = {"SNAPSHOT_STREAM_CONTROLS": "power_line_frequency=1"}
    assert parse_config([], env).controls == (("power_line_frequency", "1"),)
    assert parse_config([], {}).controls == ()
    with pytest.raises(SystemExit) as excinfo:
        parse_config([], {"SNAPSHOT_STREAM_CONTROLS": "focus"})
    assert excinfo.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("snapshot-stream: error: SNAPSHOT_STREAM_CONTROLS must be NAME=VALUE")
    assert len(err.splitlines()) == 1


def test_automatic_modes_are_applied_first() -> None:
    spec = (
        ("focus_absolute", "40"),
        ("exposure_time_absolute", "250"),
        ("brightness", "100"),
        ("auto_exposure", "1"),
        ("focus_automatic_continuous", "0"),
        ("white_balance_automatic", "0"),
    )
    assert [name for name, _ in controls.apply_order(spec)] == [
        "auto_exposure",
        "focus_automatic_continuous",
        "white_balance_automatic",
        "focus_absolute",
        "exposure_time_absolute",
        "brightness",
    ]


def test_resolve_integers_with_range_and_step() -> None:
    assert controls.resolve(FOCUS, "40") == 40
    with pytest.raises(ValueError) as excinfo:
        controls.resolve(FOCUS, "300")
    assert str(excinfo.value) == "focus_absolute=300 is out of range 0..250 step 5 (default 0)"
    with pytest.raises(
        ValueError, match=r"^focus_absolute=42 is not a valid step: 0\.\.250 step 5"
    ):
        controls.resolve(FOCUS, "42")
    with pytest.raises(
        ValueError, match=r"^focus_absolute=near: not an integer \(0\.\.250 step 5\)"
    ):
        controls.resolve(FOCUS, "near")


def test_resolve_booleans() -> None:
    assert controls.resolve(AUTOFOCUS, "0") == 0
    assert controls.resolve(AUTOFOCUS, "off") == 0
    assert controls.resolve(AUTOFOCUS, "True") == 1
    with pytest.raises(ValueError, match=r"not a boolean, use 0 or 1"):
        controls.resolve(AUTOFOCUS, "2")


def test_resolve_menu_entries_by_name_or_number() -> None:
    assert controls.resolve(FLICKER, "50 Hz") == 1
    assert controls.resolve(FLICKER, "50 hz") == 1
    assert controls.resolve(FLICKER, "2") == 2
    with pytest.raises(ValueError) as excinfo:
        controls.resolve(FLICKER, "50Hz")
    assert str(excinfo.value) == (
        "power_line_frequency=50Hz: not an entry of its menu 0 = Disabled, 1 = 50 Hz, 2 = 60 Hz"
    )
    # A hole in the menu (the C920 offers 1 and 3 only) is not an entry.
    assert controls.resolve(EXPOSURE_MODE, "Manual Mode") == 1
    with pytest.raises(ValueError, match="not an entry"):
        controls.resolve(EXPOSURE_MODE, "2")
