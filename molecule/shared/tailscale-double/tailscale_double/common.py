"""What the `tailscale` and tailscaled doubles share: their files and the node's addresses."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from typing import Any

STATE_DIR = os.environ.get("TAILSCALE_DOUBLE_DIR", "/var/lib/tailscale-double")
# The data plane's switch (see daemon.py); absent: the doubles touch no network.
DATAPLANE_CONFIG = os.environ.get("TAILSCALE_DOUBLE_CONFIG", "/etc/tailscale-double.json")
STATE = os.path.join(STATE_DIR, "state.json")
SERVE = os.path.join(STATE_DIR, "serve.json")
TAILNET = "tail-double.ts.net"


def tailnet_ips() -> list[str]:
    """The node's Tailscale addresses [v4, v6].

    Derived from /var/lib/tailscale-double/ip-seed when it exists (tests write it to change the
    addresses), else from /etc/machine-id.
    """
    seed_file = os.path.join(STATE_DIR, "ip-seed")
    try:
        with open(seed_file if os.path.exists(seed_file) else "/etc/machine-id") as f:
            seed = f.read().strip()
    except OSError:
        seed = socket.gethostname()
    h = hashlib.sha256(seed.encode()).digest()
    return [
        f"100.{64 + h[0] % 64}.{h[1]}.{1 + h[2] % 254}",
        f"fd7a:115c:a1e0::{h[3]:x}{h[4]:02x}:{h[5]:x}{h[6]:02x}",
    ]


def read_json(path: str) -> Any:
    """The parsed file, or None when it does not exist."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def write_json(path: str, data: Any) -> None:
    """Replaces the file atomically."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def ipv6_on_lo() -> bool:
    """Whether IPv6 is enabled on lo (the node's IPv6 address can only go there then)."""
    try:
        with open("/proc/sys/net/ipv6/conf/lo/disable_ipv6") as f:
            return f.read().strip() == "0"
    except OSError:
        return False
