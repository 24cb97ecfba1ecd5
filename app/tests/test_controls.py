"""--controls: parsing, ordering and checking values against what a device reports.

Setting them on a camera (and again after a replug) runs against the emulated C920 in
test_camera_emulated.py.
"""

from __future__ import annotations

from dataclasses import replace

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


# -- GET /controls and the inventory snippet (the routes run against the emulated camera in
# -- test_controls_web.py) ---------------------------------------------------------------------
def test_the_snippet_holds_what_differs_from_the_defaults_automatic_modes_first() -> None:
    infos = [FOCUS, FLICKER, AUTOFOCUS, EXPOSURE_MODE]
    values = {FOCUS.id: 40, FLICKER.id: 1, AUTOFOCUS.id: 0, EXPOSURE_MODE.id: 3}
    assert controls.inventory_snippet(infos, values) == (
        "controls:\n  focus_automatic_continuous: 0\n  focus_absolute: 40\n"
        "  power_line_frequency: 1  # 50 Hz\n"
    )
    at_defaults = {FOCUS.id: 0, FLICKER.id: 2, AUTOFOCUS.id: 1, EXPOSURE_MODE.id: 3}
    assert controls.inventory_snippet(infos, at_defaults) == "controls: {}\n"


def test_the_snippet_leaves_out_what_the_inventory_could_not_set() -> None:
    inactive = replace(FOCUS, flags=videodev.CTRL_FLAG_INACTIVE)
    read_only = replace(FLICKER, flags=videodev.CTRL_FLAG_READ_ONLY)
    volatile = replace(AUTOFOCUS, flags=videodev.CTRL_FLAG_VOLATILE)
    values = {FOCUS.id: 40, FLICKER.id: 1, AUTOFOCUS.id: 0}
    assert controls.inventory_snippet([inactive, read_only, volatile], values) == "controls: {}\n"
    assert controls.inventory_snippet([FOCUS], {}) == "controls: {}\n"  # value unknown


def test_control_json_names_flags_as_v4l2_ctl_does() -> None:
    flags = videodev.CTRL_FLAG_INACTIVE | videodev.CTRL_FLAG_SLIDER | videodev.CTRL_FLAG_GRABBED
    assert controls.flag_names(flags) == ["grabbed", "inactive", "slider"]
    assert controls.control_json(FLICKER, 1) == {
        "name": "power_line_frequency",
        "label": "Power Line Frequency",
        "type": "menu",
        "min": 0,
        "max": 2,
        "step": 1,
        "default": 2,
        "value": 1,
        "flags": [],
        "menu": [
            {"value": 0, "name": "Disabled"},
            {"value": 1, "name": "50 Hz"},
            {"value": 2, "name": "60 Hz"},
        ],
    }


@pytest.mark.parametrize(
    ("value", "raw"),
    [(True, "1"), (False, "0"), (40, "40"), (-3, "-3"), (40.0, "40"), ("50 Hz", "50 Hz")],
)
def test_json_values_become_what_controls_takes(value: object, raw: str) -> None:
    assert controls.json_value(value) == raw


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "null"),
        (40.5, "40.5"),
        ([1], "[1]"),
        ({"a": 1}, '{"a": 1}'),
        ("", '""'),
        ("x" * 65, '"' + "x" * 39),
        ("a\nb", '"a\\nb"'),
    ],
)
def test_other_json_values_are_refused(value: object, shown: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        controls.json_value(value)
    assert str(excinfo.value) == (
        f"must be a number, true/false or a menu entry's name (got {shown})"
    )


def test_byte_rate_follows_the_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    from snapshot_stream import camera

    now = [100.0]
    monkeypatch.setattr(camera.time, "monotonic", lambda: now[0])
    rate = camera.ByteRate(window=3.0)
    assert rate.per_second() == 0.0
    for _ in range(31):  # 10 frames of 1000 bytes a second for 3 s
        rate.add(1000)
        now[0] += 0.1
    now[0] -= 0.1
    assert rate.per_second() == 10000.0 and rate.total == 31000
    now[0] += 1.5  # nothing arrives: the rate falls, the total stays
    assert 0 < rate.per_second() < 10000.0
    now[0] += 3.0
    assert rate.per_second() == 0.0 and rate.total == 31000
