"""Camera controls (focus, exposure, white balance, flicker...) set on every open of the camera.

``--controls 'focus_automatic_continuous=0,focus_absolute=40'`` names controls as v4l2-ctl
does; menu controls take an entry's name or its number. The device decides which names exist,
so the values are checked against what it reports (VIDIOC_QUERY_EXT_CTRL / QUERYMENU) each
time it is opened: a bad entry gives one clear log line naming the control and what it
accepts, and streaming goes on. Automatic modes are set before the manual values they govern
(a C920 ignores focus_absolute while focus_automatic_continuous is on), and what the camera
kept is read back and logged.

A camera forgets its controls when it loses power (a replug, a USB reset): that is why they
are applied on every open, not once at start. ``POST /controls`` changes them at run time
(:meth:`Applier.change`); those changes are applied on every later open too, until the
process ends: a restart goes back to ``--controls``, the inventory's values.
"""

from __future__ import annotations

import errno
import json
import logging
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

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
    """What one application of controls did."""

    applied: dict[str, int] = field(default_factory=dict)  # name -> value read back
    errors: dict[str, str] = field(default_factory=dict)  # name -> one line on what is wrong

    @property
    def problems(self) -> list[str]:
        return list(self.errors.values())


class Unavailable(Exception):
    """The camera cannot be reached now (not opened yet, unplugged): try again later."""


_GONE = {errno.ENODEV, errno.ENOENT, errno.ENXIO}


class Applier:
    """The controls of the process's camera, and every use of them.

    What the camera should be set to starts as ``--controls`` (the inventory's values) and
    changes through :meth:`change` (``POST /controls``); it lives as long as the process, so
    a restart goes back to the inventory. :meth:`apply` sets it on every open. One lock
    serialises the controls ioctls of the capture thread (apply on open) and the web threads
    (read, change); V4L2 lets a second descriptor of the same process set controls while
    OpenCV streams on the first.

    It remembers which problems and read-backs were already logged, so a camera that is
    reopened every few seconds (replug, backoff, --idle-release) does not repeat them.
    """

    def __init__(self, spec: Spec) -> None:
        self.spec = apply_order(spec)
        self._wanted: dict[str, str] = dict(self.spec)
        self._runtime: set[str] = set()  # names changed through change()
        self._lock = threading.Lock()
        self.path: str | None = None  # the camera's node, as last opened
        self._first_open = True
        self._logged: set[str] = set()
        self._last_readback: dict[str, int] | None = None

    def apply(self, path: str) -> Result:
        """Set the wanted controls on ``path`` (just opened elsewhere for streaming).

        The first time in the process, the controls nobody asked for go back to their
        defaults first: a camera that kept its power across a restart must look as it does
        after a replug (its defaults plus the inventory's values), whatever was changed on
        it before.
        """
        with self._lock:
            self.path = path
            spec = apply_order(tuple(self._wanted.items()))
            try:
                with videodev.Device(path) as dev:
                    if self._first_open:
                        self._reset_others(dev)
                        self._first_open = False
                    result = self._set(dev, spec, quiet=True) if spec else Result()
            except OSError as exc:
                # The camera went away between opening and now: the stream reports that.
                self._once(logging.WARNING, f"{path}: cannot set controls: {exc.strerror or exc}")
                return Result()
        for problem in result.problems:
            self._once(logging.WARNING, f"{path}: controls: {problem}")
        if result.applied and result.applied != self._last_readback:
            shown = ", ".join(f"{name}={value}" for name, value in result.applied.items())
            level = logging.INFO if self._last_readback is None else logging.DEBUG
            log.log(level, "%s: controls set: %s", path, shown)
            self._last_readback = dict(result.applied)
        return result

    def _reset_others(self, dev: videodev.Device) -> None:
        infos = dev.controls()
        values = read_values(dev, infos)
        reset: list[str] = []
        for info in changed_controls(infos, values):
            if info.name in self._wanted:
                continue
            # An automatic mode set back just before may have taken this one over.
            current = dev.query(info)
            if current.inactive:
                continue
            try:
                dev.set_control(current, info.default)
            except OSError as exc:
                if exc.errno in _GONE:
                    raise
                log.debug("%s: %s not set back to %d: %s", dev.path, info.name, info.default, exc)
                continue
            reset.append(f"{info.name}={info.default} (was {values[info.id]})")
        if reset:
            log.info(
                "%s: controls not in --controls set back to their defaults: %s",
                dev.path,
                ", ".join(reset),
            )

    def _set(self, dev: videodev.Device, spec: Spec, *, quiet: bool = False) -> Result:
        """Set ``spec`` (in its order) on ``dev``; with ``quiet``, a control left inactive by
        an automatic mode that was switched on at run time is skipped without a problem."""
        result = Result()
        by_name = {info.name: info for info in dev.controls()}
        done: list[ControlInfo] = []
        for name, raw in spec:
            info = by_name.get(name)
            if info is None:
                offered = ", ".join(sorted(by_name))
                result.errors[name] = f"unknown control {name!r}; this camera offers: {offered}"
                continue
            if info.read_only:
                result.errors[name] = f"{name} is read-only"
                continue
            try:
                value = resolve(info, raw)
            except ValueError as exc:
                result.errors[name] = str(exc)
                continue
            # An automatic mode set just before may have changed the flags.
            current = dev.query(info)
            if current.inactive:
                if quiet and self._governed_at_runtime(name):
                    log.debug("%s: %s left alone: an automatic mode governs it", dev.path, name)
                    continue
                reason = _inactive_reason(name, by_name)
                result.errors[name] = f"{name}={raw} not set: {reason}"
                continue
            try:
                dev.set_control(current, value)
            except OSError as exc:
                if exc.errno in _GONE:
                    raise
                result.errors[name] = f"{name}={raw} refused by the camera: {exc.strerror}"
                continue
            done.append(current)
        if done:
            values = dev.get_controls(done)
            result.applied = {info.name: values[info.id] for info in done}
        return result

    def _governed_at_runtime(self, name: str) -> bool:
        return any(auto in self._runtime for auto, _ in AUTO_MODES.get(name, ()))

    # -- the web layer: GET and POST /controls ------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """Every control of the camera with its current value (GET /controls)."""
        with self._lock:
            path = self._reachable_path()
            try:
                with videodev.Device(path) as dev:
                    return self._describe(dev)
            except OSError as exc:
                raise Unavailable(f"{path}: {_os_reason(exc)}") from None

    def change(self, values: Mapping[str, object]) -> tuple[Result, dict[str, Any]]:
        """Set ``values`` (name -> JSON value) now and keep them for every later open.

        Returns what was applied and the errors (both by name, in the order given), and the
        camera's controls afterwards (as :meth:`describe`). Unavailable when the camera
        cannot be reached: nothing is kept then, as nothing could be checked.
        """
        errors: dict[str, str] = {}
        entries: list[tuple[str, str]] = []
        for name, value in values.items():
            try:
                entries.append((name, json_value(value)))
            except ValueError as exc:
                errors[name] = f"{_shown_name(name)}: {exc}"
        with self._lock:
            path = self._reachable_path()
            try:
                with videodev.Device(path) as dev:
                    result = self._set(dev, apply_order(tuple(entries)))
                    for name, value in result.applied.items():
                        self._wanted[name] = str(value)
                        self._runtime.add(name)
                    self._pin_partners(dev, result.applied)
                    state = self._describe(dev)
            except OSError as exc:
                raise Unavailable(f"{path}: {_os_reason(exc)}") from None
        errors.update(result.errors)
        result.errors = {name: errors[name] for name in values if name in errors}
        result.applied = {name: result.applied[name] for name in values if name in result.applied}
        return result, state

    def _pin_partners(self, dev: videodev.Device, applied: Mapping[str, int]) -> None:
        """An automatic mode switched off hands the controls it governed to the user at what
        the camera shows now: a replug must bring back that picture, not the defaults."""
        by_name: dict[str, ControlInfo] | None = None
        for manual, modes in AUTO_MODES.items():
            if manual in applied or not any(auto in applied for auto, _ in modes):
                continue
            by_name = by_name or {info.name: info for info in dev.controls()}
            info = by_name.get(manual)
            if info is None or info.read_only or dev.query(info).inactive:
                continue
            self._wanted[manual] = str(dev.get_control(info))
            self._runtime.add(manual)

    def _reachable_path(self) -> str:
        if self.path is None:
            raise Unavailable("the camera has not been opened yet")
        return self.path

    def _describe(self, dev: videodev.Device) -> dict[str, Any]:
        cap = dev.querycap()
        infos = dev.controls()
        values = read_values(dev, infos)
        return {
            "device": dev.path,
            "card": cap.card.decode("utf-8", "replace"),
            "controls": [control_json(info, values.get(info.id)) for info in infos],
            "runtime": {name: int(self._wanted[name]) for name in sorted(self._runtime)},
            "inventory": inventory_snippet(infos, values),
        }

    def _once(self, level: int, message: str) -> None:
        if message in self._logged:
            log.debug("%s", message)
            return
        self._logged.add(message)
        log.log(level, "%s", message)


def json_value(value: object) -> str:
    """A control value from JSON as --controls would give it (resolve() checks it)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str) and 0 < len(value) <= 64 and value.isprintable():
        return value
    raise ValueError(
        "must be a number, true/false or a menu entry's name "
        f"(got {json.dumps(value)[:40] if _jsonable(value) else type(value).__name__})"
    )


def _jsonable(value: object) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _shown_name(name: str) -> str:
    return name if len(name) <= 64 else name[:61] + "..."


def _os_reason(exc: OSError) -> str:
    if exc.errno in _GONE:
        return "no such device (unplugged?)"
    return exc.strerror or str(exc)


# -- what the camera offers, for GET /controls and the inventory ------------------------------
_FLAG_NAMES = (
    (videodev.CTRL_FLAG_DISABLED, "disabled"),
    (videodev.CTRL_FLAG_GRABBED, "grabbed"),
    (videodev.CTRL_FLAG_READ_ONLY, "read-only"),
    (videodev.CTRL_FLAG_UPDATE, "update"),
    (videodev.CTRL_FLAG_INACTIVE, "inactive"),
    (videodev.CTRL_FLAG_SLIDER, "slider"),
    (videodev.CTRL_FLAG_WRITE_ONLY, "write-only"),
    (videodev.CTRL_FLAG_VOLATILE, "volatile"),
    (videodev.CTRL_FLAG_HAS_PAYLOAD, "has-payload"),
    (videodev.CTRL_FLAG_EXECUTE_ON_WRITE, "execute-on-write"),
    (videodev.CTRL_FLAG_MODIFY_LAYOUT, "modify-layout"),
)


def flag_names(flags: int) -> list[str]:
    """The flags as v4l2-ctl names them ('inactive', 'read-only', 'slider', ...)."""
    return [name for bit, name in _FLAG_NAMES if flags & bit]


def read_values(dev: videodev.Device, infos: Sequence[ControlInfo]) -> dict[int, int]:
    """Current values of the controls that have one, by id; a control the camera fails to
    report (some UVC cameras answer a few with EIO) is left out rather than failing all."""
    readable = [
        i for i in infos if i.type in _VALUE_TYPES and not i.flags & videodev.CTRL_FLAG_WRITE_ONLY
    ]
    try:
        return dev.get_controls(readable)
    except OSError as exc:
        if exc.errno in _GONE:
            raise
    values: dict[int, int] = {}
    for info in readable:
        try:
            values[info.id] = dev.get_control(info)
        except OSError as exc:
            if exc.errno in _GONE:
                raise
    return values


def control_json(info: ControlInfo, value: int | None) -> dict[str, Any]:
    return {
        "name": info.name,
        "label": info.label,
        "type": info.type_name,
        "min": info.minimum,
        "max": info.maximum,
        "step": info.step,
        "default": info.default,
        "value": value,
        "flags": flag_names(info.flags),
        "menu": [{"value": index, "name": entry} for index, entry in info.menu] or None,
    }


def changed_controls(infos: Sequence[ControlInfo], values: Mapping[int, int]) -> list[ControlInfo]:
    """The settable controls whose value differs from the default, automatic modes first.

    Inactive and volatile ones are left out: an automatic mode governs them (the inventory
    could not set them), or the camera changes them itself.
    """
    return apply_order_infos(
        [
            info
            for info in infos
            if info.type in _VALUE_TYPES
            and not info.read_only
            and not info.inactive
            and not info.flags & videodev.CTRL_FLAG_VOLATILE
            and info.id in values
            and values[info.id] != info.default
        ]
    )


def inventory_snippet(infos: Sequence[ControlInfo], values: Mapping[int, int]) -> str:
    """The ``controls:`` mapping that sets the camera as it is now, for the inventory."""
    changed = changed_controls(infos, values)
    if not changed:
        return "controls: {}\n"
    lines = ["controls:"]
    for info in changed:
        value = values[info.id]
        entry = f"  {info.name}: {value}"
        name = dict(info.menu).get(value) if info.type == videodev.CTRL_TYPE_MENU else None
        lines.append(f"{entry}  # {name}" if name else entry)
    return "\n".join(lines) + "\n"


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
    changed = changed_controls(infos, values)
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
