"""Camera controls (focus, exposure, white balance, flicker...) set on every open of the camera.

``--controls 'focus_automatic_continuous=0,focus_absolute=40'`` names controls as v4l2-ctl
does; menu controls take an entry's name or its number. The device decides which names exist,
so the values are checked against what it reports (VIDIOC_QUERY_EXT_CTRL / QUERYMENU) each
time it is opened: a bad entry gives one clear log line naming the control and what it
accepts, and streaming goes on. Automatic modes are set before the manual values they govern
(a C920 ignores focus_absolute while focus_automatic_continuous is on), and what the camera
kept is read back and logged.

A camera forgets its controls when it loses power (a replug, a USB reset): that is why they
are applied on every open, not once at start.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from . import videodev
from .options import Controls
from .videodev import ControlInfo

log = logging.getLogger(__name__)

Spec = tuple[tuple[str, str], ...]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}

# Manual control -> the automatic modes that make it inactive, with the value that turns the
# mode off. Names of current kernels first, then those of kernels before 5.x.
AUTO_MODES: dict[str, tuple[tuple[str, str], ...]] = {
    "exposure_time_absolute": (("auto_exposure", "1 (Manual Mode)"),),
    "exposure_absolute": (("exposure_auto", "1 (Manual Mode)"),),
    "white_balance_temperature": (
        ("white_balance_automatic", "0"),
        ("white_balance_temperature_auto", "0"),
    ),
    "focus_absolute": (("focus_automatic_continuous", "0"), ("focus_auto", "0")),
    "gain": (("gain_automatic", "0"), ("gain_auto", "0")),
    "hue": (("hue_automatic", "0"), ("hue_auto", "0")),
}
# Controls with one integer value (not buttons, strings or compound controls).
_VALUE_TYPES = {
    videodev.CTRL_TYPE_INTEGER,
    videodev.CTRL_TYPE_BOOLEAN,
    videodev.CTRL_TYPE_MENU,
    videodev.CTRL_TYPE_INTEGER_MENU,
    videodev.CTRL_TYPE_INTEGER64,
    videodev.CTRL_TYPE_BITMASK,
}
_AUTO_NAMES = {auto for modes in AUTO_MODES.values() for auto, _ in modes}


def parse_spec(text: str) -> Spec:
    """'a=1,b=50 Hz' -> (('a', '1'), ('b', '50 Hz')); ValueError with a one-line reason.

    Only the shape is checked (options.Controls): which names and values are valid depends on
    the device.
    """
    return Controls()(text)


def format_spec(spec: Spec) -> str:
    return ",".join(f"{name}={value}" for name, value in spec)


def apply_order(spec: Spec) -> Spec:
    """Automatic modes first, then the rest in the order given."""
    return tuple(sorted(spec, key=lambda pair: 0 if _is_auto(pair[0]) else 1))


def _is_auto(name: str) -> bool:
    return name in _AUTO_NAMES or "auto" in name.split("_")


def describe_range(info: ControlInfo) -> str:
    """What a control accepts, for log lines: '0..250 step 5', the menu entries, or 0/1."""
    if info.menu:
        return "menu " + ", ".join(f"{index} = {entry}" for index, entry in info.menu)
    if info.type == videodev.CTRL_TYPE_BOOLEAN:
        return "0 or 1"
    step = f" step {info.step}" if info.step > 1 else ""
    return f"{info.minimum}..{info.maximum}{step}"


def resolve(info: ControlInfo, raw: str) -> int:
    """The number to write for ``raw``; ValueError naming what the control accepts."""
    text = raw.strip()
    if info.type == videodev.CTRL_TYPE_BOOLEAN:
        low = text.lower()
        if low in _TRUE:
            return 1
        if low in _FALSE:
            return 0
        raise ValueError(f"{info.name}={raw}: not a boolean, use 0 or 1")
    if info.menu:
        for index, entry in info.menu:
            if entry.lower() == text.lower():
                return index
        try:
            number = int(text)
        except ValueError:
            number = None
        if number is not None and any(index == number for index, _ in info.menu):
            return number
        raise ValueError(f"{info.name}={raw}: not an entry of its {describe_range(info)}")
    if info.type not in (videodev.CTRL_TYPE_INTEGER, videodev.CTRL_TYPE_INTEGER64):
        raise ValueError(f"{info.name}: a {info.type_name} control cannot be set from --controls")
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{info.name}={raw}: not an integer ({describe_range(info)})") from None
    if not info.minimum <= value <= info.maximum:
        raise ValueError(
            f"{info.name}={value} is out of range {describe_range(info)} (default {info.default})"
        )
    if info.step > 1 and (value - info.minimum) % info.step:
        raise ValueError(
            f"{info.name}={value} is not a valid step: {describe_range(info)} "
            f"(default {info.default})"
        )
    return value


def _inactive_reason(name: str, by_name: dict[str, ControlInfo]) -> str:
    for auto, off in AUTO_MODES.get(name, ()):
        if auto in by_name:
            return f"it is inactive while {auto} is on: add {auto}={off.split()[0]} before it"
    return "it is inactive (an automatic mode of the camera governs it)"


@dataclass
class Result:
    """What one application of the controls did."""

    applied: dict[str, int]  # name -> value read back after setting
    problems: list[str]  # one line per bad entry


class Applier:
    """Applies one ``--controls`` spec to a device; lives as long as the process.

    It remembers which problems and read-backs were already logged, so a camera that is
    reopened every few seconds (replug, backoff, --idle-release) does not repeat them.
    """

    def __init__(self, spec: Spec) -> None:
        self.spec = apply_order(spec)
        self._logged: set[str] = set()
        self._last_readback: dict[str, int] | None = None

    def __bool__(self) -> bool:
        return bool(self.spec)

    def apply(self, path: str) -> Result:
        """Set the controls on ``path`` (already open elsewhere for streaming)."""
        result = Result({}, [])
        if not self.spec:
            return result
        try:
            with videodev.Device(path) as dev:
                self._apply(dev, path, result)
        except OSError as exc:
            # The camera went away between opening and now: the stream reports that.
            self._once(logging.WARNING, f"{path}: cannot set controls: {exc.strerror or exc}")
            return result
        if result.applied and result.applied != self._last_readback:
            shown = ", ".join(f"{name}={value}" for name, value in result.applied.items())
            level = logging.INFO if self._last_readback is None else logging.DEBUG
            log.log(level, "%s: controls set: %s", path, shown)
            self._last_readback = dict(result.applied)
        return result

    def _apply(self, dev: videodev.Device, path: str, result: Result) -> None:
        infos = dev.controls()
        by_name = {info.name: info for info in infos}
        done: list[ControlInfo] = []
        for name, raw in self.spec:
            info = by_name.get(name)
            problem: str | None = None
            if info is None:
                offered = ", ".join(sorted(by_name))
                problem = f"unknown control {name!r}; this camera offers: {offered}"
            elif info.read_only:
                problem = f"{name} is read-only"
            else:
                try:
                    value = resolve(info, raw)
                except ValueError as exc:
                    problem = str(exc)
                else:
                    # An automatic mode set just before may have changed the flags.
                    current = dev.query(info)
                    if current.inactive:
                        problem = f"{name}={raw} not set: {_inactive_reason(name, by_name)}"
                    else:
                        try:
                            dev.set_control(current, value)
                        except OSError as exc:
                            problem = f"{name}={raw} refused by the camera: {exc.strerror}"
                        else:
                            done.append(current)
            if problem is not None:
                result.problems.append(problem)
                self._once(logging.WARNING, f"{path}: controls: {problem}")
        if done:
            values = dev.get_controls(done)
            result.applied = {info.name: values[info.id] for info in done}

    def _once(self, level: int, message: str) -> None:
        if message in self._logged:
            log.debug("%s", message)
            return
        self._logged.add(message)
        log.log(level, "%s", message)


# -- `snapshot-stream controls DEVICE` --------------------------------------------------------
def yaml_block(path: str, dev: videodev.Device) -> str:
    """The device's controls as a commented YAML ``controls:`` block for the inventory.

    Controls whose current value differs from the default are active lines, so the block
    reproduces what the camera does now; every other control is a commented line showing its
    current value, range and default, ready to be uncommented.
    """
    cap = dev.querycap()
    infos = [i for i in dev.controls() if i.type in _VALUE_TYPES]
    values = dev.get_controls([i for i in infos if not i.flags & videodev.CTRL_FLAG_WRITE_ONLY])
    card = cap.card.decode("utf-8", "replace")
    bus = cap.bus_info.decode("utf-8", "replace")
    lines = [
        f"# Controls of {path} ({card}, {bus}), read by `snapshot-stream controls`.",
        "# Paste into the camera's entry in the inventory; active lines differ from the",
        "# camera's defaults. Menu controls also take the entry's name, e.g. "
        "power_line_frequency: 50 Hz.",
    ]
    changed = [i for i in infos if not i.read_only and values.get(i.id, i.default) != i.default]
    lines.append("controls:" if changed else "controls: {}")
    width = max((len(i.name) for i in infos), default=0) + 2
    for info in apply_order_infos(infos):
        value = values.get(info.id, info.default)
        kind = describe_range(info) if info.menu else f"{info.type_name} {describe_range(info)}"
        if info.type == videodev.CTRL_TYPE_BOOLEAN:
            kind = "bool"
        notes = [kind, f"default {info.default}"]
        if info.read_only:
            notes.append("read-only")
        if info.inactive:
            notes.append("inactive now")
        entry = f"{info.name}: {value}".ljust(width + 8)
        prefix = "  " if info in changed else "  # "
        lines.append(f"{prefix}{entry} # {'; '.join(notes)}")
    return "\n".join(lines) + "\n"


def apply_order_infos(infos: Sequence[ControlInfo]) -> list[ControlInfo]:
    """The device's order, except automatic modes before the controls they govern."""
    return sorted(infos, key=lambda info: 0 if _is_auto(info.name) else 1)


def controls_main(argv: Sequence[str], prog: str) -> int:
    """`snapshot-stream controls DEVICE`: print the device's controls as inventory YAML."""
    import argparse

    parser = argparse.ArgumentParser(
        prog=f"{prog} controls",
        description="Print a V4L2 device's controls as a commented YAML `controls:` block "
        "for the inventory (current values; lines that differ from the defaults are active).",
    )
    parser.add_argument("device", help="the camera, e.g. /dev/video0 or /dev/v4l/by-id/...")
    args = parser.parse_args(list(argv))
    try:
        with videodev.Device(args.device) as dev:
            if not dev.is_video_capture():
                print(f"{prog}: error: {args.device} is not a video capture node", file=sys.stderr)
                return 1
            sys.stdout.write(yaml_block(args.device, dev))
    except OSError as exc:
        print(f"{prog}: error: {args.device}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0
