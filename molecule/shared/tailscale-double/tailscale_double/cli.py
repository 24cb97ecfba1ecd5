"""The `tailscale` CLI double (/usr/bin/tailscale) for the Molecule scenarios. It is NOT Tailscale.

It never talks to a network. It keeps a small state machine that behaves like a real node's
`tailscale status --json` (NeedsLogin -> Running after `up` with an auth key, Stopped after
`down`, NeedsLogin after `logout`) and records every call in
/var/lib/tailscale-double/calls.jsonl:
  - argv VERBATIM (so an auth key passed on the command line is visible there and the tests
    catch it);
  - for an auth key given as `--auth-key=file:PATH` (e.g. file:/dev/stdin) only whether a key
    was received and the first 12 hex digits of its sha256, never the key itself.
Supported: version, status [--json], ip [-4|-6|-1], up, login, set, down, logout,
serve [--bg] [--https=N|--http=N|--tcp=N] [--set-path=P] TARGET|off, serve status [--json],
serve reset.
The node's addresses come from common.tailnet_ips(). The tailscaled double's opt-in data plane
(/etc/tailscale-double.json) makes them, and what `serve` configures, reachable; with it on,
`up`, `login` and `logout` return once the daemon put the addresses on lo (or took them away),
at most 3 s, like the real `up` returns once the node runs with its addresses configured.
Like the real CLI it fails when tailscaled is not running, when `up` needs a login but has no
key, and when `up` would silently revert a non-default setting (without --reset).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from .common import (
    DATAPLANE_CONFIG,
    SERVE,
    STATE,
    STATE_DIR,
    TAILNET,
    ipv6_on_lo,
    read_json,
    tailnet_ips,
    write_json,
)

VERSION = "1.78.1"
CALLS = os.path.join(STATE_DIR, "calls.jsonl")
DEFAULT_SOCKET = "/run/tailscale/tailscaled.sock"

# Preferences `up`/`set` know, with their defaults (a pref differing from its default is
# "non-default").
PREFS = {
    "hostname": "",
    "advertise-tags": "",
    "advertise-routes": "",
    "advertise-exit-node": False,
    "accept-dns": True,
    "accept-routes": False,
    "exit-node": "",
    "exit-node-allow-lan-access": False,
    "shields-up": False,
    "ssh": False,
    "operator": "",
    "login-server": "https://controlplane.tailscale.com",
    "netfilter-mode": "on",
    "snat-subnet-routes": True,
    "stateful-filtering": False,
    "webclient": False,
    "advertise-connector": False,
    "auto-update": False,
    "nickname": "",
}
# Flags of `up` that are actions, not preferences.
UP_ACTION_FLAGS = {
    "auth-key": "",
    "authkey": "",
    "force-reauth": False,
    "reset": False,
    "timeout": "",
    "json": False,
    "qr": False,
    "accept-risk": "",
    "unattended": False,
}
SERVE_FLAGS = {
    "bg": False,
    "https": "",
    "http": "",
    "tcp": "",
    "tls-terminated-tcp": "",
    "set-path": "",
    "yes": False,
    "json": False,
}


def wait_for_dataplane(logged_in: bool, timeout: float = 3.0) -> float | str | None:
    """With the daemon's data plane on: waits until the node's addresses are usable on this machine
    (logged in) or gone (logged out). Returns the seconds waited, "timeout", or None (data plane
    off)."""
    try:
        if read_json(DATAPLANE_CONFIG).get("dataplane") is not True:
            return None
    except (OSError, ValueError, AttributeError):
        return None
    ipv6 = ipv6_on_lo()
    addresses = [a for a in tailnet_ips() if ipv6 or ":" not in a]

    def usable(address: str) -> bool:
        with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as s:
            try:
                s.bind((address, 0))
            except OSError:
                return False
            return True

    start = time.monotonic()
    while any(usable(a) != logged_in for a in addresses):
        if time.monotonic() - start > timeout:
            return "timeout"
        time.sleep(0.05)
    return round(time.monotonic() - start, 3)


class Fail(Exception):
    """A failed command: its message goes to stderr, its code is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def parse_flags(args: list[str], known: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Go `flag` style: -f / --f, --f=v, --f v (non-bool), --f=false (bool).

    Stops at the first positional argument."""
    flags: dict[str, Any] = {}
    rest = list(args)
    while rest and rest[0].startswith("-") and rest[0] not in ("-", "--"):
        arg = rest.pop(0)
        name, eq, value = arg.lstrip("-").partition("=")
        if name not in known:
            raise Fail(f"flag provided but not defined: -{name}", 2)
        if isinstance(known[name], bool):
            flags[name] = value.lower() not in ("false", "0", "f") if eq else True
        elif eq:
            flags[name] = value
        elif rest:
            flags[name] = rest.pop(0)
        else:
            raise Fail(f"flag needs an argument: -{name}", 2)
    if rest and rest[0] == "--":
        rest.pop(0)
    return flags, rest


class Double:
    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.record: dict[str, Any] = {
            "time": round(time.time(), 3),
            "argv": argv,
            "stdin_read": False,
            "key_received": False,
        }
        self.socket = DEFAULT_SOCKET
        self.state: dict[str, Any] = {}
        self.moves_addresses = False  # up/login/logout: wait for the data plane (if on) afterwards

    # -- persistence ------------------------------------------------------------------------
    def load(self) -> None:
        self.state = read_json(STATE) or {}
        self.state.setdefault("logged_in", False)
        self.state.setdefault("want_running", False)
        self.state.setdefault("prefs", {})
        self.state.setdefault("logins", 0)

    def save(self) -> None:
        write_json(STATE, self.state)

    def serve_config(self) -> dict[str, Any]:
        return read_json(SERVE) or {}

    def save_serve(self, cfg: dict[str, Any]) -> None:
        write_json(SERVE, cfg)

    # -- helpers ----------------------------------------------------------------------------
    def need_daemon(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(self.socket)
        except OSError:
            raise Fail(
                "failed to connect to local tailscaled; it doesn't appear to be running "
                "(sudo systemctl start tailscaled ?)"
            ) from None
        finally:
            s.close()

    def backend_state(self) -> str:
        if not self.state["logged_in"]:
            return "NeedsLogin"
        return "Running" if self.state["want_running"] else "Stopped"

    def hostname(self) -> str:
        return self.state["prefs"].get("hostname") or socket.gethostname()

    def tags(self) -> list[str]:
        tags = self.state["prefs"].get("advertise-tags") or ""
        return [t for t in tags.split(",") if t] if self.state["logged_in"] else []

    def ips(self) -> list[str]:
        return tailnet_ips() if self.state["logged_in"] else []

    def dns_name(self) -> str:
        return f"{self.hostname().lower()}.{TAILNET}" if self.state["logged_in"] else ""

    def read_key(self, value: str) -> str:
        """The auth key of --auth-key VALUE; a `file:` value is read from that file
        (file:/dev/stdin)."""
        if value.startswith("file:"):
            path = value[len("file:") :]
            if path in ("/dev/stdin", "-"):
                self.record["stdin_read"] = True
                key = sys.stdin.read()
            else:
                try:
                    with open(path) as f:
                        key = f.read()
                except OSError as e:
                    raise Fail(f"reading auth key from {path}: {e.strerror}") from None
        else:
            key = value
        key = key.strip()
        if not key:
            raise Fail("auth key is empty")
        self.record["key_received"] = True
        self.record["key_sha256"] = hashlib.sha256(key.encode()).hexdigest()[:12]
        if not key.startswith("tskey-"):
            raise Fail("invalid auth key: it must start with tskey-")
        return key

    # -- commands ---------------------------------------------------------------------------
    def cmd_version(self, args: list[str]) -> None:
        flags, _ = parse_flags(args, {"json": False, "daemon": False, "upstream": False})
        if flags.get("json"):
            print(
                json.dumps(
                    {
                        "majorMinorPatch": VERSION,
                        "short": VERSION,
                        "long": VERSION + "-tailscale-double",
                    }
                )
            )
        else:
            print(
                f"{VERSION}\n  tailscale commit: tailscale-double (a test double, not Tailscale)"
                "\n  go version: none"
            )

    def status_json(self) -> dict[str, Any]:
        ips = self.ips() or None
        self_node = {
            "ID": "nDOUBLE",
            "PublicKey": "nodekey:" + "0" * 64,
            "HostName": self.hostname(),
            "DNSName": self.dns_name() + "." if self.state["logged_in"] else "",
            "OS": "linux",
            "UserID": 1 if self.state["logged_in"] else 0,
            "TailscaleIPs": ips,
            "Online": self.backend_state() == "Running",
            "Active": False,
        }
        if self.tags():
            self_node["Tags"] = self.tags()
        return {
            "Version": VERSION + "-tailscale-double",
            "TUN": True,
            "BackendState": self.backend_state(),
            "HaveNodeKey": self.state["logged_in"],
            "AuthURL": "",
            "TailscaleIPs": ips,
            "Self": self_node,
            "Health": [],
            "MagicDNSSuffix": TAILNET,
            "CurrentTailnet": {
                "Name": "molecule@example.com",
                "MagicDNSSuffix": TAILNET,
                "MagicDNSEnabled": True,
            }
            if self.state["logged_in"]
            else None,
            "CertDomains": [self.dns_name()] if self.state["logged_in"] else None,
            "Peer": None,
            "User": None,
            "ClientVersion": None,
        }

    def cmd_status(self, args: list[str]) -> None:
        flags, _ = parse_flags(
            args,
            {
                "json": False,
                "peers": True,
                "self": True,
                "active": False,
                "web": False,
                "browser": False,
            },
        )
        self.need_daemon()
        if flags.get("json"):
            print(json.dumps(self.status_json(), indent=2))
            return
        state = self.backend_state()
        if state == "NeedsLogin":
            raise Fail("Logged out.")
        if state == "Stopped":
            raise Fail("Tailscale is stopped.")
        print(f"{self.ips()[0]:<15} {self.hostname():<20} tagged-devices linux   -")

    def cmd_ip(self, args: list[str]) -> None:
        flags, rest = parse_flags(args, {"4": False, "6": False, "1": False})
        self.need_daemon()
        if rest:
            raise Fail("the double knows no peers")
        ips = self.ips()
        if not ips:
            raise Fail(f"no current Tailscale IPs; state: {self.backend_state()}")
        if flags.get("4"):
            ips = ips[:1]
        elif flags.get("6"):
            ips = ips[1:]
        elif flags.get("1"):
            ips = ips[:1]
        print("\n".join(ips))

    def apply_prefs(self, flags: dict[str, Any]) -> None:
        for name in PREFS:
            if name in flags:
                self.state["prefs"][name] = flags[name]

    def cmd_up(self, args: list[str], login: bool = False) -> None:
        flags, rest = parse_flags(args, {**PREFS, **UP_ACTION_FLAGS})
        if rest:
            raise Fail(f"too many non-flag arguments: {rest}", 2)
        self.need_daemon()
        key_value = flags.get("auth-key") or flags.get("authkey")
        key = self.read_key(key_value) if key_value else None
        if not flags.get("reset") and not login:
            # Like the real CLI: every non-default setting has to be mentioned again (or --reset
            # given).
            missing = [
                n
                for n, v in self.state["prefs"].items()
                if n in PREFS
                and v != PREFS[n]
                and n not in flags
                and not (n == "hostname" and v == socket.gethostname())
            ]
            if missing:
                mention = " ".join(f"--{n}={self.state['prefs'][n]}" for n in sorted(missing))
                raise Fail(
                    "Error: changing settings via 'tailscale up' requires mentioning all\n"
                    "non-default flags. To proceed, either re-run your command with --reset or\n"
                    "use the command below to explicitly mention the current value of\n"
                    "all non-default settings:\n\n"
                    f"\ttailscale up {mention} ..."
                )
        if flags.get("reset"):
            self.state["prefs"] = {}
        self.apply_prefs(flags)
        needs_auth = not self.state["logged_in"] or flags.get("force-reauth")
        if needs_auth:
            if not key:
                raise Fail(
                    "\nTo authenticate, visit:\n\n\thttps://login.tailscale.com/a/tailscale-double\n"
                )
            self.state["logged_in"] = True
            self.state["logins"] += 1
            self.state["key_sha256"] = self.record["key_sha256"]
        self.state["want_running"] = True
        self.record["result_state"] = "Running"
        self.moves_addresses = True

    def cmd_set(self, args: list[str]) -> None:
        flags, rest = parse_flags(args, dict(PREFS))
        if rest:
            raise Fail(f"too many non-flag arguments: {rest}", 2)
        self.need_daemon()
        self.apply_prefs(flags)

    def cmd_down(self, args: list[str]) -> None:
        parse_flags(args, {"accept-risk": ""})
        self.need_daemon()
        self.state["want_running"] = False

    def cmd_logout(self, args: list[str]) -> None:
        parse_flags(args, {"reason": ""})
        self.need_daemon()
        self.state["logged_in"] = False
        self.state["want_running"] = False
        self.state.pop("key_sha256", None)
        self.save_serve({})
        self.moves_addresses = True

    def cmd_serve(self, args: list[str]) -> None:
        if args and args[0] in ("status", "reset"):
            sub, args = args[0], args[1:]
            flags, _ = parse_flags(args, {"json": False})
            self.need_daemon()
            cfg = self.serve_config()
            if sub == "reset":
                self.save_serve({})
            elif flags.get("json"):
                print(json.dumps(cfg, indent=2))
            elif not cfg:
                print("No serve config")
            else:
                for hostport, web in sorted(cfg.get("Web", {}).items()):
                    print(f"https://{hostport} (tailnet only)")
                    for path, handler in sorted(web.get("Handlers", {}).items()):
                        print(f"|-- {path} proxy {handler.get('Proxy')}")
                for port, tcp in sorted(cfg.get("TCP", {}).items()):
                    if "TCPForward" in tcp:
                        print(
                            f"|-- tcp://{self.dns_name()}:{port} (TCP over TLS) -> "
                            f"{tcp['TCPForward']}"
                        )
            return
        flags, rest = parse_flags(args, dict(SERVE_FLAGS))
        self.need_daemon()
        if len(rest) != 1:
            raise Fail(
                "usage: tailscale serve [--bg] [--https=PORT|--http=PORT|--tcp=PORT] "
                "[--set-path=PATH] TARGET|off",
                2,
            )
        target = rest[0]
        if self.backend_state() != "Running":
            raise Fail(f"serve needs a running, logged-in node (state {self.backend_state()})")
        if target != "off" and not flags.get("bg"):
            raise Fail(
                "tailscale-double: `serve` without --bg runs in the foreground until interrupted "
                "(a provisioning run would hang); use --bg"
            )
        cfg = self.serve_config()
        kind = next(
            (k for k in ("https", "http", "tcp", "tls-terminated-tcp") if flags.get(k)), "https"
        )
        port = str(flags.get(kind) or (443 if kind == "https" else 80))
        path = flags.get("set-path") or "/"
        hostport = f"{self.dns_name()}:{port}"
        if target == "off":
            web = cfg.get("Web", {}).get(hostport, {})
            web.get("Handlers", {}).pop(path, None)
            if not web.get("Handlers"):
                cfg.get("Web", {}).pop(hostport, None)
                cfg.get("TCP", {}).pop(port, None)
        else:
            if target.isdigit():
                target = f"http://127.0.0.1:{target}"
            elif target.startswith(("localhost:", "127.0.0.1:")):
                target = "http://" + target
            if kind in ("tcp", "tls-terminated-tcp"):
                cfg.setdefault("TCP", {})[port] = {"TCPForward": target.split("://")[-1]}
            else:
                cfg.setdefault("TCP", {})[port] = (
                    {"HTTPS": True} if kind == "https" else {"HTTP": True}
                )
                cfg.setdefault("Web", {}).setdefault(hostport, {}).setdefault("Handlers", {})[
                    path
                ] = {"Proxy": target}
        for k in ("TCP", "Web"):
            if k in cfg and not cfg[k]:
                del cfg[k]
        self.save_serve(cfg)
        if target != "off":
            print(
                "Available within your tailnet:\n\n"
                f"https://{self.dns_name()}{'' if port == '443' else ':' + port}{path}\n"
            )
            print(f"|-- proxy {target}\n\nServe started and running in the background.")

    def run(self) -> None:
        args = list(self.argv[1:])
        while args and args[0].startswith("--socket"):
            arg = args.pop(0)
            self.socket = arg.split("=", 1)[1] if "=" in arg else args.pop(0)
        if not args:
            raise Fail(
                "usage: tailscale <version|status|ip|up|login|set|down|logout|serve> [flags]", 2
            )
        command, args = args[0], args[1:]
        handlers: dict[str, Callable[[list[str]], None]] = {
            "version": self.cmd_version,
            "status": self.cmd_status,
            "ip": self.cmd_ip,
            "up": self.cmd_up,
            "login": lambda a: self.cmd_up(a, login=True),
            "set": self.cmd_set,
            "down": self.cmd_down,
            "logout": self.cmd_logout,
            "serve": self.cmd_serve,
        }
        handler = handlers.get(command)
        if handler is None:
            raise Fail(f"tailscale-double: unknown or unsupported subcommand {command!r}", 2)
        handler(args)


# Commands the real CLI answers without writing anything.
READ_ONLY_COMMANDS = ("version", "ip", "status")


def run_unrecorded(double: Double) -> int:
    """A caller that cannot write the state directory (a sandboxed service, ProtectSystem=strict,
    such as snapshot-stream-tailnet-watch.service) still gets answers to read-only commands, like
    from the real CLI; such calls are not in calls.jsonl."""
    double.load()
    try:
        double.run()
    except Fail as e:
        print(e, file=sys.stderr)
        return e.code
    return 0


def main() -> int:
    double = Double(sys.argv)
    code = 0
    try:
        os.makedirs(STATE_DIR, mode=0o700, exist_ok=True)
        lock_file = open(os.path.join(STATE_DIR, ".lock"), "w")  # noqa: SIM115 (closed by the with below)
    except OSError as e:
        if sys.argv[1:2] and sys.argv[1] in READ_ONLY_COMMANDS:
            return run_unrecorded(double)
        print(f"tailscale-double: cannot write {STATE_DIR} ({e.strerror})", file=sys.stderr)
        return 1
    with lock_file as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        double.load()
        try:
            double.run()
            double.save()
            waited = (
                wait_for_dataplane(double.state["logged_in"]) if double.moves_addresses else None
            )
            if waited is not None:
                double.record["dataplane_wait"] = waited
        except Fail as e:
            print(e, file=sys.stderr)
            code = e.code
        double.record["exit"] = code
        double.record["backend_state"] = double.backend_state()
        with open(CALLS, "a") as f:
            f.write(json.dumps(double.record) + "\n")
    return code
