"""The camera model of the snapshot_stream and camera_outputs roles, written once.

From the inventory (a host's ``snapshot_stream_cameras``, its ``snapshot_stream_camera_defaults``
and ``snapshot_stream_expose``) these filters work out each camera as the Pi will run it: the
merged settings, the expose mode and what it binds, where the role probes ``/healthz``, the
``tailscale serve`` handler, the environment file, the URLs and the picture size after rotation.
They also return every problem found, each a one-line message naming the host and camera.

The settings' rules are the app's own: its options table (``app/snapshot_stream/options.py``,
standard library only) is loaded by path, so a value the app would refuse is refused here, before
anything changes on a Pi, with the app's message. Only what depends on the Pi itself (does this
video file exist?) is left to ``snapshot-stream check-env``, the env files' ``validate:``.

Filters:
  camera_model_host        the cameras of one host (snapshot_stream role)
  camera_model_serve_plan  what `tailscale serve` must add, withdraw, and what blocks it
  camera_model_fleet       every camera of the inventory with its URLs (camera_outputs role)
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # pragma: no cover - only when used outside Ansible

    class AnsibleFilterError(Exception):  # type: ignore[no-redef]
        """Stand-in when Ansible is not installed."""


EXPOSE_MODES = ("lan", "tailnet", "tailscale_serve")
DEFAULT_EXPOSE = "lan"
# Camera keys of the role besides the app's options (whose names are camera keys too).
ROLE_KEYS = ("extra_env", "expose", "serve_port")
# The camera name is also the systemd instance name (snapshot-stream@NAME) and a file name.
NAME_RULE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
ENV_NAME_RULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Values no one should see in a message.
SECRET_KEYS = frozenset({"auth_hash"})
# Bind addresses that mean "every address": the role probes /healthz on loopback then.
ANY_ADDRESS = frozenset({"0.0.0.0", "::", "[::]", "", "localhost"})
# Bind addresses the LAN cannot reach: the outputs use the Pi's LAN address instead.
NOT_FROM_LAN = frozenset({"0.0.0.0", "::", "[::]", "localhost", "::1"})
APP_SRC = Path(__file__).resolve().parents[3] / "app"

_tables: dict[tuple[str, int], ModuleType] = {}


def load_table(app_src: str | None = None) -> ModuleType:
    """The app's options module, loaded by path (once per file version) under a private name."""
    base = Path(app_src) if app_src else APP_SRC
    path = base / "snapshot_stream" / "options.py"
    try:
        version = path.stat().st_mtime_ns
    except OSError as exc:
        raise AnsibleFilterError(
            f"cannot read the app's options table {path} ({exc.strerror}): is "
            f"snapshot_stream_app_src ({base}) this repository's app/ directory?"
        ) from None
    key = (str(path), version)
    if key not in _tables:
        name = "_snapshot_stream_options_" + hashlib.sha1(str(key).encode()).hexdigest()[:12]
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:  # pragma: no cover - a .py path always loads
            raise AnsibleFilterError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        # dataclasses look the module up while the file runs
        sys.modules[name] = module
        spec.loader.exec_module(module)
        _tables[key] = module
    return _tables[key]


# -- small helpers ---------------------------------------------------------------------------


def shown(value: object, limit: int = 60) -> str:
    """A value for a one-line message (like the app's own: escaped and shortened)."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return text.encode("unicode_escape").decode("ascii")


def env_text(value: object) -> str:
    """A camera value as the app reads it from its environment."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(env_text(v) for v in value)
    if isinstance(value, Mapping):  # controls: {name: value} -> name=value,name=value
        return ",".join(f"{k}={env_text(v)}" for k, v in value.items())
    return str(value)


def is_set(value: object) -> bool:
    """Unset keys (None, empty text or list) leave the app's default."""
    return value is not None and value != "" and value != []


def merge(*layers: Mapping[str, Any] | None, keys: Iterable[str] | None = None) -> dict[str, Any]:
    """Later layers win; dicts (extra_env) merge key by key. With ``keys``, only those are read
    (so a vaulted auth_hash is never touched where it is not needed)."""
    merged: dict[str, Any] = {}
    wanted = None if keys is None else set(keys)
    for layer in layers:
        if not layer:
            continue
        for key in layer if wanted is None else [k for k in wanted if k in layer]:
            value = layer[key]
            if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
                value = merge(merged[key], value)
            elif isinstance(value, Mapping):
                value = dict(value)
            merged[key] = value
    return merged


def url_host(address: str) -> str:
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


def first_address(host_value: object) -> str:
    return env_text(host_value).split(",")[0].strip() if is_set(host_value) else ""


class Checker:
    """Collects the problems of one camera, each prefixed with the camera and its host."""

    def __init__(self, table: ModuleType, where: str) -> None:
        self.table = table
        self.where = where
        self.problems: list[str] = []

    def add(self, message: str) -> None:
        self.problems.append(f"{self.where}: {message}")

    def value(self, key: str, value: object, label: str | None = None) -> None:
        """Checks one value with the app's parser for option ``key`` (if it has one)."""
        opt = self.table.BY_NAME.get(key)
        if opt is None or opt.checked_on_target:
            return
        text = env_text(value)
        try:
            opt.parse(text)
        except self.table.Invalid as exc:
            got = "a hidden value" if key in SECRET_KEYS else shown(text)
            self.add(f"{label or key} {exc} (got {got})")

    def controls(self, controls: object) -> bool:
        """``controls:`` is a mapping of control name to one value (number, boolean or a menu
        entry's name). The env file joins it as name=value,... so no value may hold a comma;
        which names and values exist only the camera knows (the streamer checks them)."""
        example = "e.g. {focus_automatic_continuous: 0, power_line_frequency: 50 Hz}"
        if not isinstance(controls, Mapping):
            self.add(
                "controls must be a mapping of V4L2 control name to value, "
                f"{example} (got {shown(controls)})"
            )
            return False
        ok = True
        for name, value in controls.items():
            if isinstance(value, (Mapping, list, tuple)) or value is None or value == "":
                self.add(
                    f"controls: {shown(name)} must be one value: a number, true/false or a menu "
                    f"entry's name (got {shown(value)})"
                )
                ok = False
            elif isinstance(value, str) and ("," in value or "=" in value or "\n" in value):
                self.add(
                    f"controls: {shown(name)}'s value must not hold a comma, = or a line break "
                    f"(got {shown(value)}): the env file lists controls as name=value,..."
                )
                ok = False
        return ok

    def name(self, name: object) -> None:
        if not isinstance(name, str) or not NAME_RULE.match(name):
            self.add(
                "name must match ^[a-z0-9][a-z0-9_-]*$, it names the unit snapshot-stream@NAME "
                f"(got {shown(name)})"
            )
        else:
            self.value("name", name)

    def expose(self, expose: object, source: str) -> bool:
        if expose in EXPOSE_MODES:
            return True
        self.add(f"{source} must be one of {', '.join(EXPOSE_MODES)} (got {shown(expose)})")
        return False


def label_of(camera: Mapping[str, Any], index: int) -> str:
    name = camera.get("name")
    return name if isinstance(name, str) and name else f"#{index + 1} (no name)"


# -- one host: the snapshot_stream role ------------------------------------------------------


def camera_model_host(
    cameras: Iterable[Mapping[str, Any]] | None,
    defaults: Mapping[str, Any] | None = None,
    expose: str = DEFAULT_EXPOSE,
    host: str = "",
    app_src: str | None = None,
    tailnet_addresses: Iterable[str] | None = None,
) -> dict[str, Any]:
    """The host's cameras as the role deploys them, with the problems found.

    Returns ``{"cameras": [...], "serve": [...], "problems": [...]}``. Each camera holds its
    merged settings (the camera over ``defaults`` over the app's port and the host's ``expose``)
    plus ``bind`` (what it listens on; "" for tailnet: read at each start), ``healthz_url``
    (the role's probe, on the Pi), ``env`` (NAME.env's variables, in order, as text) and
    ``notes`` (what NAME.env leaves out, and why). ``serve`` lists the ``tailscale serve``
    handlers the tailscale_serve cameras need: ``{https, target, camera}``.
    """
    table = load_table(app_src)
    problems: list[str] = []
    if expose not in EXPOSE_MODES:
        problems.append(
            f"snapshot_stream_expose of {host} must be one of {', '.join(EXPOSE_MODES)} "
            f"(got {shown(expose)})"
        )
    if defaults is not None and not isinstance(defaults, Mapping):
        problems.append(f"snapshot_stream_camera_defaults of {host} must be a dict")
        defaults = None
    addresses = [a for a in (tailnet_addresses or []) if a]
    builtin = {"port": table.default("port"), "expose": expose}
    known = {opt.name for opt in table.OPTIONS} | set(ROLE_KEYS)
    resolved: list[dict[str, Any]] = []
    serve: list[dict[str, Any]] = []
    for index, camera in enumerate(cameras or []):
        if not isinstance(camera, Mapping):
            problems.append(f"camera #{index + 1} of {host} must be a dict (got {shown(camera)})")
            continue
        cam = merge(builtin, defaults, camera)
        check = Checker(table, f"camera {label_of(cam, index)} of {host}")
        unknown = sorted(set(cam) - known)
        if unknown:
            check.add(f"unknown key(s) {', '.join(unknown)}")
        check.name(cam.get("name"))
        given = {k: v for k, v in cam.items() if k in table.BY_NAME and is_set(v)}
        for key, value in given.items():
            if key == "controls" and not check.controls(value):
                continue  # the shape is wrong: the app's parser would only confuse matters
            if key != "name":
                check.value(key, value)
        for problem in table.pair_problems(given, str):
            check.add(problem)
        mode = cam.get("expose")
        if check.expose(mode, "expose") and mode != "lan" and is_set(cam.get("host")):
            check.add(
                f"host must not be set with expose {mode}: {mode} cameras bind "
                + ("the Pi's Tailscale addresses" if mode == "tailnet" else "127.0.0.1")
            )
        if is_set(cam.get("serve_port")):
            check.value("port", cam["serve_port"], "serve_port")
        env, notes = camera_env(table, cam, given, check)
        problems += check.problems
        if check.problems:
            continue
        bind = {"tailnet": "", "tailscale_serve": "127.0.0.1"}.get(
            mode, first_address(cam.get("host"))
        )
        if mode == "tailnet":
            probe = addresses[0] if addresses else ""
        else:
            probe = "127.0.0.1" if bind in ANY_ADDRESS else bind
        cam.update(
            bind=bind,
            healthz_url=f"http://{url_host(probe)}:{int(cam['port'])}/healthz",
            env=env,
            notes=notes,
        )
        if mode == "tailscale_serve":
            cam["serve_port"] = int(cam.get("serve_port") or cam["port"])
            serve.append(
                {
                    "https": cam["serve_port"],
                    "target": f"http://127.0.0.1:{int(cam['port'])}",
                    "camera": cam["name"],
                }
            )
        resolved.append(cam)
    problems += duplicates(resolved, host)
    return {"cameras": resolved, "serve": serve, "problems": problems}


def camera_env(
    table: ModuleType, cam: Mapping[str, Any], given: Mapping[str, Any], check: Checker
) -> tuple[dict[str, str], list[str]]:
    """NAME.env's variables in the table's order, then extra_env; and notes on what is left out."""
    env: dict[str, str] = {}
    notes: list[str] = []
    skipped = table.unused(given)
    mode = cam.get("expose")
    # The name first: it says which camera the file is for.
    for opt in sorted(table.OPTIONS, key=lambda o: o.name != "name"):
        if opt.name not in given:
            continue
        if opt.name in skipped:
            notes.append(
                f"{opt.name} ({shown(given[opt.name])}) is not written: "
                f"{opt.ignored_with} is set and takes precedence"
            )
            continue
        if opt.name == "host" and mode != "lan":
            continue
        env[opt.env] = env_text(given[opt.name])
    if mode == "tailscale_serve":
        env[table.BY_NAME["host"].env] = "127.0.0.1"
    elif mode == "tailnet":
        notes.append("the bind address comes from the Tailscale addresses, read at each start")
    extra = cam.get("extra_env", {})
    if not isinstance(extra, Mapping):
        check.add(f"extra_env must be a dict of environment variables (got {shown(extra)})")
        extra = {}
    for key in sorted(extra):
        value = extra[key]
        if not isinstance(key, str) or not ENV_NAME_RULE.match(key):
            check.add(f"extra_env: {shown(key)} is not an environment variable name")
            continue
        opt = table.BY_ENV.get(key)
        if opt is not None and key in env:
            check.add(f"extra_env sets {key}, which the camera key {opt.name} sets: use {opt.name}")
            continue
        if opt is not None:
            check.value(opt.name, value, f"extra_env {key}")
        env[key] = env_text(value)
    for key, value in env.items():
        if "'" in value or "\n" in value or "\r" in value:
            what = "a hidden value" if key.endswith("AUTH_HASH") else key
            check.add(f"{what} must not hold a single quote or a line break (NAME.env quotes it)")
    return env, notes


def duplicates(cameras: list[dict[str, Any]], host: str) -> list[str]:
    """Two cameras of a host with the same name, port, or tailscale serve port."""
    problems: list[str] = []
    names: dict[str, dict[str, Any]] = {}
    ports: dict[int, dict[str, Any]] = {}
    serve_ports: dict[int, dict[str, Any]] = {}
    for cam in cameras:
        port = int(cam["port"])
        if cam["name"] in names:
            problems.append(
                f"two cameras of {host} are named {cam['name']} (ports "
                f"{names[cam['name']]['port']} and {port}): "
                "every camera needs its own name and port"
            )
        elif port in ports:
            problems.append(
                f"cameras {ports[port]['name']} and {cam['name']} of {host} both use port {port}: "
                "every camera needs its own name and port"
            )
        names.setdefault(cam["name"], cam)
        ports.setdefault(port, cam)
        if cam["expose"] == "tailscale_serve":
            if cam["serve_port"] in serve_ports:
                problems.append(
                    f"cameras {serve_ports[cam['serve_port']]['name']} and {cam['name']} of {host} "
                    f"both publish `tailscale serve` HTTPS port {cam['serve_port']} (serve_port, "
                    "default: the camera's port): "
                    "give each tailscale_serve camera its own serve_port"
                )
            serve_ports.setdefault(cam["serve_port"], cam)
    return problems


# -- tailscale serve ---------------------------------------------------------------------------


def camera_model_serve_plan(
    wanted: list[Mapping[str, Any]],
    recorded: list[Mapping[str, Any]] | None,
    status: str | Mapping[str, Any] | None,
    host: str = "",
) -> dict[str, Any]:
    """What to do about `tailscale serve`, from the wanted handlers, the role's record of what it
    added, and the node's ``tailscale serve status --json``.

    Returns ``current`` (serve port -> proxy target of its "/" handler, "" when it serves
    something else), ``blocked`` (messages: a wanted port taken by serve config the role did
    not make), ``withdraw`` (recorded handlers still in place as the role left them and no longer
    wanted: never a handler someone changed since), ``add`` (wanted handlers not in place) and
    ``record`` (the record to write before changing anything: wanted, then the recorded ones
    still to withdraw, so that a run failing half-way still knows what it added).
    """
    state = json.loads(status or "{}") if isinstance(status, str) else dict(status or {})
    recorded = [dict(r) for r in recorded or []]
    current: dict[str, str] = {str(port): "" for port in state.get("TCP") or {}}
    for hostport, web in (state.get("Web") or {}).items():
        proxy = ((web or {}).get("Handlers") or {}).get("/", {}).get("Proxy", "")
        current[str(hostport).rpartition(":")[2]] = proxy or ""
    recorded_ports = {int(r["https"]) for r in recorded}
    wanted_keys = {(int(w["https"]), w["target"]) for w in wanted}
    blocked = []
    for w in wanted:
        port = str(w["https"])
        if port in current and current[port] != w["target"] and int(port) not in recorded_ports:
            blocked.append(
                f"camera {w['camera']} of {host} wants `tailscale serve` HTTPS port {port}, "
                f"but that port already serves {current[port] or 'something else'}, which this "
                "role did not set up (`tailscale serve status`). Choose another serve_port, or "
                f"remove that serve config (`tailscale serve --https={port} off`) if it is no "
                "longer needed."
            )
    withdraw = [
        r
        for r in recorded
        if current.get(str(r["https"]), "") == r["target"]
        and (int(r["https"]), r["target"]) not in wanted_keys
    ]
    wanted_ports = {int(w["https"]) for w in wanted}
    return {
        "current": current,
        "blocked": blocked,
        "withdraw": withdraw,
        "add": [dict(w) for w in wanted if current.get(str(w["https"]), "") != w["target"]],
        "record": [dict(w) for w in wanted]
        + [r for r in recorded if int(r["https"]) not in wanted_ports],
    }


# -- the fleet: the camera_outputs role -------------------------------------------------------

# The keys the outputs read; any other (auth_hash first, often vaulted) is never touched.
FLEET_KEYS = (
    "name",
    "port",
    "host",
    "fps",
    "width",
    "height",
    "rotate",
    "expose",
    "serve_port",
    "auth_user",
)


def _first_var(hv: Mapping[str, Any], names: Iterable[str]) -> str:
    for name in names:
        value = hv.get(name)
        if value:
            return str(value)
    return ""


def camera_model_fleet(
    hosts: Iterable[str],
    hostvars: Mapping[str, Any],
    cameras_var: str = "snapshot_stream_cameras",
    defaults_var: str = "snapshot_stream_camera_defaults",
    expose_var: str = "snapshot_stream_expose",
    tailscale_hostname_vars: Iterable[str] = ("tailscale_hostname",),
    address_vars: Iterable[str] = ("ansible_host",),
    tailnet_domain: str = "",
    overrides: Mapping[str, Any] | None = None,
    app_src: str | None = None,
) -> dict[str, Any]:
    """Every camera of ``hosts`` with its URLs, read from the inventory alone.

    Returns ``{"cameras": [...], "problems": [...]}``; each camera: host, host_short, name, id,
    title, expose, base_url, page_url, stream_url, snapshot_url, healthz_url, width and height
    (after rotation), fps and auth_user. ``overrides`` replace the app's defaults (the outputs'
    own ``camera_outputs_camera_defaults``).
    """
    table = load_table(app_src)
    builtin = {k: table.default(k) for k in FLEET_KEYS if k in table.BY_NAME}
    builtin = {k: v for k, v in builtin.items() if v is not None and not callable(v)}
    builtin["expose"] = DEFAULT_EXPOSE
    tailnet_domain = str(tailnet_domain or "")
    cameras: list[dict[str, Any]] = []
    problems: list[str] = []
    for host in hosts:
        hv = hostvars[host]
        short = str(hv.get("inventory_hostname_short") or host.split(".")[0])
        host_defaults = merge(hv.get(defaults_var) or {}, keys=FLEET_KEYS)
        host_expose = hv.get(expose_var)
        base = merge(builtin, overrides, keys=FLEET_KEYS)
        if host_expose is not None:
            base["expose"] = host_expose
        facts = hv.get("ansible_facts") or {}
        ts_host = (
            _first_var(hv, tailscale_hostname_vars) or str(facts.get("hostname") or "") or short
        ).lower()
        ts_fqdn = ts_host + (f".{tailnet_domain}" if tailnet_domain else "")
        lan_address = url_host(_first_var(hv, address_vars) or host)
        for index, camera in enumerate(hv.get(cameras_var) or []):
            if not isinstance(camera, Mapping):
                problems.append(f"camera #{index + 1} of {host} must be a dict")
                continue
            cam = merge(base, host_defaults, camera, keys=FLEET_KEYS)
            check = Checker(table, f"camera {label_of(cam, index)} of {host}")
            check.name(cam.get("name"))
            for key in ("port", "fps", "width", "height", "rotate", "host", "auth_user"):
                if is_set(cam.get(key)):
                    check.value(key, cam[key])
            mode = cam.get("expose")
            check.expose(mode, "expose")
            if mode == "tailscale_serve" and is_set(cam.get("serve_port")):
                check.value("port", cam["serve_port"], "serve_port")
            problems += check.problems
            if check.problems:
                continue
            port = int(cam["port"])
            if mode == "tailscale_serve":
                serve_port = int(cam.get("serve_port") or port)
                base_url = f"https://{ts_fqdn}" + ("" if serve_port == 443 else f":{serve_port}")
            elif mode == "tailnet":
                base_url = f"http://{ts_fqdn}:{port}"
            else:
                # A camera bound to one specific address (its `host` key) is reached there.
                bind = [h.strip() for h in env_text(cam.get("host") or "").split(",") if h.strip()]
                specific = (
                    len(bind) == 1
                    and bind[0] not in NOT_FROM_LAN
                    and not bind[0].startswith("127.")
                )
                base_url = f"http://{url_host(bind[0]) if specific else lan_address}:{port}"
            turned = int(table.BY_NAME["rotate"].parse(env_text(cam["rotate"]))) in (90, 270)
            width, height = int(cam["width"]), int(cam["height"])
            name = cam["name"]
            cameras.append(
                {
                    "host": host,
                    "host_short": short,
                    "name": name,
                    "id": re.sub(r"[^a-z0-9_]+", "_", f"{short}_{name}".lower()),
                    "title": f"{short} {name}",
                    "expose": mode,
                    "base_url": base_url,
                    "page_url": base_url + "/",
                    "stream_url": base_url + "/stream",
                    "snapshot_url": base_url + "/snapshot.jpg",
                    "healthz_url": base_url + "/healthz",
                    "width": height if turned else width,
                    "height": width if turned else height,
                    "fps": float(cam["fps"]),
                    "auth_user": str(cam.get("auth_user") or ""),
                }
            )
    seen: dict[str, dict[str, Any]] = {}
    for cam in cameras:
        if cam["id"] in seen:
            problems.append(
                f"cameras {seen[cam['id']]['title']} ({seen[cam['id']]['host']}) and "
                f"{cam['title']} ({cam['host']}) have the same id {cam['id']}: each host/camera "
                "name pair must be unique"
            )
        seen.setdefault(cam["id"], cam)
    return {"cameras": cameras, "problems": problems}


class FilterModule:
    """The camera model filters (see the module's docstring)."""

    def filters(self) -> dict[str, Any]:
        return {
            "camera_model_host": camera_model_host,
            "camera_model_serve_plan": camera_model_serve_plan,
            "camera_model_fleet": camera_model_fleet,
        }
