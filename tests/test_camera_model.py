"""The camera model filters (roles/snapshot_stream_common/filter_plugins/camera_model.py), the
snapshot_stream role's argument specs, and that the role and the app agree on what is valid."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from tools import ansible_playbook

REPO = Path(__file__).resolve().parent.parent
PLUGIN = REPO / "roles" / "snapshot_stream_common" / "filter_plugins" / "camera_model.py"
APP = REPO / "app"


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


model = _load(PLUGIN, "camera_model_under_test")
table = model.load_table(str(APP))


def host(cameras, defaults=None, expose="lan", addresses=None):
    return model.camera_model_host(cameras, defaults, expose, "pi", str(APP), addresses)


def one(camera, **kw):
    result = host([camera], **kw)
    assert result["problems"] == []
    (cam,) = result["cameras"]
    return cam


# -- merge, env file, expose ----------------------------------------------------------------


def test_merge_over_the_host_defaults_and_the_apps_port():
    cam = one(
        {"name": "front", "fps": 7.5, "hflip": True, "allow": ["10.0.0.0/8", "192.168.1.0/24"]},
        defaults={"quality": 40, "fps": 10, "extra_env": {"A": "1"}},
    )
    assert cam["port"] == table.default("port")
    assert cam["env"] == {
        "SNAPSHOT_STREAM_NAME": "front",
        "SNAPSHOT_STREAM_PORT": str(table.default("port")),
        "SNAPSHOT_STREAM_FPS": "7.5",
        "SNAPSHOT_STREAM_QUALITY": "40",
        "SNAPSHOT_STREAM_HFLIP": "true",
        "SNAPSHOT_STREAM_ALLOW": "10.0.0.0/8,192.168.1.0/24",
        "A": "1",
    }
    assert next(iter(cam["env"])) == "SNAPSHOT_STREAM_NAME"


def test_extra_env_merges_key_by_key():
    cam = one(
        {"name": "a", "extra_env": {"B": False, "C": 3}},
        defaults={"extra_env": {"A": "x", "B": True}},
    )
    assert {k: v for k, v in cam["env"].items() if len(k) == 1} == {
        "A": "x",
        "B": "false",
        "C": "3",
    }


def test_controls_merge_key_by_key_into_one_variable():
    cam = one(
        {"name": "a", "controls": {"focus_absolute": 40, "power_line_frequency": "50 Hz"}},
        defaults={"controls": {"focus_automatic_continuous": False, "focus_absolute": 0}},
    )
    assert cam["env"]["SNAPSHOT_STREAM_CONTROLS"] == (
        "focus_automatic_continuous=false,focus_absolute=40,power_line_frequency=50 Hz"
    )


def test_unset_values_are_not_written():
    cam = one({"name": "a", "fps": None, "host": "", "allow": []})
    assert set(cam["env"]) == {"SNAPSHOT_STREAM_NAME", "SNAPSHOT_STREAM_PORT"}


def test_source_wins_over_an_inherited_device():
    cam = one({"name": "a", "source": "synthetic"}, defaults={"device": "auto"})
    assert "SNAPSHOT_STREAM_DEVICE" not in cam["env"]
    assert cam["env"]["SNAPSHOT_STREAM_SOURCE"] == "synthetic"
    assert any(n.startswith("device (auto) is not written: source") for n in cam["notes"])
    assert one({"name": "b", "device": "/dev/video2"})["env"]["SNAPSHOT_STREAM_DEVICE"] == (
        "/dev/video2"
    )


@pytest.mark.parametrize(
    ("camera", "bind", "healthz"),
    [
        ({"port": 8080}, "", "http://127.0.0.1:8080/healthz"),
        ({"port": 8081, "host": "0.0.0.0,::"}, "0.0.0.0", "http://127.0.0.1:8081/healthz"),
        ({"port": 8082, "host": "192.0.2.7"}, "192.0.2.7", "http://192.0.2.7:8082/healthz"),
        ({"port": 8083, "host": "fd00::7"}, "fd00::7", "http://[fd00::7]:8083/healthz"),
    ],
)
def test_lan_binds_and_probes(camera, bind, healthz):
    cam = one({"name": "a", **camera})
    assert (cam["expose"], cam["bind"], cam["healthz_url"]) == ("lan", bind, healthz)


def test_tailnet_binds_the_tailscale_addresses_read_at_start():
    result = host(
        [{"name": "a", "port": 9000}], expose="tailnet", addresses=["100.64.1.2", "fd7a::1"]
    )
    (cam,) = result["cameras"]
    assert cam["expose"] == "tailnet"
    assert cam["bind"] == ""
    assert "SNAPSHOT_STREAM_HOST" not in cam["env"]
    assert cam["healthz_url"] == "http://100.64.1.2:9000/healthz"
    assert result["serve"] == []


def test_tailscale_serve_binds_loopback_and_wants_a_handler():
    result = host(
        [
            {"name": "a", "port": 9000, "expose": "tailscale_serve"},
            {"name": "b", "port": 9001, "expose": "tailscale_serve", "serve_port": 443},
            {"name": "c", "port": 9002, "expose": "lan"},
        ],
        expose="tailnet",
    )
    assert result["problems"] == []
    a, _, c = result["cameras"]
    assert a["env"]["SNAPSHOT_STREAM_HOST"] == "127.0.0.1"
    assert a["healthz_url"] == "http://127.0.0.1:9000/healthz"
    assert result["serve"] == [
        {"https": 9000, "target": "http://127.0.0.1:9000", "camera": "a"},
        {"https": 443, "target": "http://127.0.0.1:9001", "camera": "b"},
    ]
    assert c["expose"] == "lan"


def test_the_camera_defaults_expose_wins_over_the_hosts():
    cam = one({"name": "a"}, defaults={"expose": "lan"}, expose="tailnet")
    assert cam["expose"] == "lan"


# -- problems -------------------------------------------------------------------------------


def problems(cameras, **kw):
    return host(cameras, **kw)["problems"]


@pytest.mark.parametrize(
    ("camera", "expected"),
    [
        ({"name": "Front"}, "camera Front of pi: name must match ^[a-z0-9][a-z0-9_-]*$"),
        ({"port": 1}, "camera #1 (no name) of pi: name must match"),
        ({"name": "a" * 70}, "name must be 1-64 printable characters"),
        ({"name": "a", "fps": 0}, "camera a of pi: fps must be above 0 and at most 30 (got 0)"),
        ({"name": "a", "quality": True}, "quality must be an integer between 1 and 100 (got true)"),
        ({"name": "a", "rotate": 45}, "rotate must be one of 0, 90, 180, 270 (got 45)"),
        ({"name": "a", "auth_user": "bob"}, "auth_user requires auth_hash"),
        ({"name": "a", "auth_hash": "x"}, "auth_hash requires auth_user"),
        (
            {"name": "a", "expose": "internet"},
            "expose must be one of lan, tailnet, tailscale_serve",
        ),
        ({"name": "a", "expose": "tailnet", "host": "1.2.3.4"}, "host must not be set with"),
        ({"name": "a", "serve_port": 0}, "serve_port must be between 1 and 65535 (got 0)"),
        ({"name": "a", "fsp": 10}, "unknown key(s) fsp"),
        ({"name": "a", "extra_env": ["x"]}, "extra_env must be a dict"),
        ({"name": "a", "extra_env": {"1X": "y"}}, "extra_env: 1X is not an environment variable"),
        ({"name": "a", "extra_env": {"SNAPSHOT_STREAM_FPS": 99}}, "extra_env SNAPSHOT_STREAM_FPS"),
        ({"name": "a", "fps": 5, "extra_env": {"SNAPSHOT_STREAM_FPS": 9}}, "use fps"),
        ({"name": "a", "device": "it's"}, "SNAPSHOT_STREAM_DEVICE must not hold a single quote"),
        ({"name": "a", "extra_env": {"X": "a\nb"}}, "X must not hold a single quote or a line"),
        ({"name": "a", "controls": {"Focus": 1}}, "controls must name controls in lower case"),
        ({"name": "a", "controls": {"gain": "1,2"}}, "controls: gain's value must not hold a"),
        ({"name": "a", "controls": ["focus_absolute=40"]}, "controls must be a mapping of V4L2"),
        ({"name": "a", "controls": {"focus": {"absolute": 40}}}, "controls: focus must be one val"),
        ({"name": "a", "controls": {"gain": None}}, "controls: gain must be one value"),
    ],
)
def test_each_problem_is_one_clear_line(camera, expected):
    found = problems([camera])
    assert len(found) >= 1
    assert any(expected in p for p in found), found
    assert all("\n" not in p for p in found)


def test_a_secret_is_never_shown():
    found = problems([{"name": "a", "auth_user": "bob", "auth_hash": "it's-secret"}])
    assert found and all("secret" not in p for p in found), found


def test_a_file_source_is_left_to_the_pi():
    # Whether the video exists can only be told on the Pi (check-env, the env files' validate:).
    assert problems([{"name": "a", "source": "/srv/video/clip.mp4"}]) == []


def test_host_level_problems():
    assert problems([], expose="wan") == [
        "snapshot_stream_expose of pi must be one of lan, tailnet, tailscale_serve (got wan)"
    ]
    assert problems(
        [{"name": "a", "port": 8080}, {"name": "a", "port": 8081}, {"name": "b", "port": 8080}]
    ) == [
        "two cameras of pi are named a (ports 8080 and 8081): every camera needs its own name "
        "and port",
        "cameras a and b of pi both use port 8080: every camera needs its own name and port",
    ]
    found = problems(
        [
            {"name": "a", "port": 8080, "expose": "tailscale_serve", "serve_port": 443},
            {"name": "b", "port": 443, "expose": "tailscale_serve"},
        ]
    )
    assert found == [
        "cameras a and b of pi both publish `tailscale serve` HTTPS port 443 (serve_port, "
        "default: the camera's port): give each tailscale_serve camera its own serve_port"
    ]


# -- the role and the app agree ---------------------------------------------------------------

# Bad inventory values: camera key, value. Each must fail in the role (before anything changes)
# and in the app, with the app's message.
BAD = [
    ("fps", 0),
    ("fps", 31),
    ("port", 0),
    ("port", 65536),
    ("quality", 101),
    ("width", 8),
    ("height", 5000),
    ("rotate", 45),
    ("buffersize", 11),
    ("max_clients", 0),
    ("idle_release", -1),
    ("log_level", "loud"),
    ("device", "video0"),
    ("host", "a/b"),
    ("name", "x" * 65),
]


def _app_error(tmp_path: Path, key: str, value: object) -> str:
    """What the app says about SNAPSHOT_STREAM_<KEY>=value: its `check-env` message."""
    env_file = tmp_path / f"{key}.env"
    env_file.write_text(f"SNAPSHOT_STREAM_{key.upper()}='{model.env_text(value)}'\n")
    r = subprocess.run(
        [sys.executable, "-m", "snapshot_stream", "check-env", str(env_file)],
        cwd=APP,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 2, (key, value, r.stdout, r.stderr)
    match = re.fullmatch(rf"snapshot-stream: error: SNAPSHOT_STREAM_{key.upper()} (.*)\n", r.stderr)
    assert match, r.stderr
    return match.group(1)  # "must be ... (got ...)"


# Malformed `controls:` (only the camera knows which names and values exist; the role checks
# the shape the env file needs): value, the role's message.
BAD_CONTROLS = [
    (
        ["focus_automatic_continuous=0", "focus_absolute=40"],
        "controls must be a mapping of V4L2 control name to value, e.g. "
        "{focus_automatic_continuous: 0, power_line_frequency: 50 Hz} "
        '(got [\\"focus_automatic_continuous=0\\", \\"focus_absolute=40\\"])',
    ),
    (
        {"power_line_frequency": "50 Hz, 60 Hz"},
        "controls: power_line_frequency's value must not hold a comma, = or a line break "
        "(got 50 Hz, 60 Hz): the env file lists controls as name=value,...",
    ),
    (
        {"focus": {"absolute": 40}},
        "controls: focus must be one value: a number, true/false or a menu entry's name "
        '(got {\\"absolute\\": 40})',
    ),
    ({"Focus_Absolute": 40}, "controls must name controls in lower case, as v4l2-ctl does"),
]


@pytest.mark.timeout(300)
def test_the_role_and_the_app_refuse_the_same_values_with_the_apps_message(tmp_path):
    # One host per bad value (plus a good one), all on this machine: the role's check comes
    # first and stops each bad host before any change; the good host stops after the check.
    hosts = {
        "pi-good": {
            "snapshot_stream_cameras": [
                {"name": "front", "port": 8080, "controls": {"power_line_frequency": "50 Hz"}}
            ]
        }
    }
    for i, (key, value) in enumerate(BAD):
        camera = {"name": "front", "port": 8080, key: value}
        hosts[f"pi-bad-{i}"] = {"snapshot_stream_cameras": [camera]}
    for i, (value, _message) in enumerate(BAD_CONTROLS):
        camera = {"name": "front", "port": 8080, "controls": value}
        hosts[f"pi-controls-{i}"] = {"snapshot_stream_cameras": [camera]}
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "vars": {
                        "ansible_connection": "local",
                        "ansible_python_interpreter": sys.executable,
                    },
                    "hosts": hosts,
                }
            }
        )
    )
    playbook = tmp_path / "check.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Only the snapshot_stream role's checks",
                    "hosts": "all",
                    "gather_facts": False,
                    "tasks": [
                        {
                            "name": "Check the cameras",
                            "ansible.builtin.include_role": {
                                "name": "snapshot_stream",
                                "tasks_from": "validate.yml",
                            },
                        }
                    ],
                }
            ]
        )
    )
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_ROLES_PATH=str(REPO / "roles"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default",
        ANSIBLE_CALLBACK_RESULT_FORMAT="json",
    )
    r = subprocess.run(
        [ansible_playbook(), "-i", str(inventory), str(playbook)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    recap = dict(
        re.findall(
            r"^(pi-\S+)\s*:\s*ok=\d+\s+changed=\d+\s+unreachable=\d+\s+failed=(\d+)", r.stdout, re.M
        )
    )
    assert recap.get("pi-good") == "0", r.stdout + r.stderr
    for i, (key, value) in enumerate(BAD):
        name = f"pi-bad-{i}"
        assert recap.get(name) == "1", (key, value, r.stdout)
        app_says = _app_error(tmp_path, key, value)
        role_says = f"camera {'front' if key != 'name' else 'x' * 65} of {name}: {key} {app_says}"
        failed = [line for line in r.stdout.splitlines() if line.startswith(f"fatal: [{name}]")]
        assert failed and role_says in failed[0].replace("\\n", "\n"), (role_says, failed)
    for i, (_value, message) in enumerate(BAD_CONTROLS):
        name = f"pi-controls-{i}"
        assert recap.get(name) == "1", (name, r.stdout)
        failed = [line for line in r.stdout.splitlines() if line.startswith(f"fatal: [{name}]")]
        assert failed and f"camera front of {name}: {message}" in failed[0], (message, failed)


# -- tailscale serve --------------------------------------------------------------------------

WANTED = [
    {"https": 443, "target": "http://127.0.0.1:9001", "camera": "a"},
    {"https": 8443, "target": "http://127.0.0.1:9002", "camera": "b"},
]


def status(web=None, tcp=None):
    return {
        "TCP": {str(p): {"HTTPS": True} for p in tcp or []},
        "Web": {
            f"pi.ts.net:{p}": {"Handlers": {"/": {"Proxy": t}}} for p, t in (web or {}).items()
        },
    }


def test_serve_plan_adds_what_is_missing():
    plan = model.camera_model_serve_plan(WANTED, [], "", "pi")
    assert plan["add"] == WANTED
    assert (plan["withdraw"], plan["blocked"], plan["record"]) == ([], [], WANTED)


def test_serve_plan_leaves_what_is_in_place():
    st = status({443: "http://127.0.0.1:9001", 8443: "http://127.0.0.1:9002"}, [443, 8443])
    plan = model.camera_model_serve_plan(WANTED, WANTED, st, "pi")
    assert (plan["add"], plan["withdraw"], plan["blocked"]) == ([], [], [])


def test_serve_plan_withdraws_only_what_the_role_added_and_still_finds():
    recorded = [
        *WANTED,
        {"https": 9443, "target": "http://127.0.0.1:9003", "camera": "gone"},
        {"https": 10443, "target": "http://127.0.0.1:9004", "camera": "changed-by-hand"},
    ]
    st = status(
        {
            443: "http://127.0.0.1:9001",
            9443: "http://127.0.0.1:9003",
            10443: "http://127.0.0.1:7777",
            12443: "http://127.0.0.1:5555",
        }
    )
    plan = model.camera_model_serve_plan(WANTED[:1], recorded, st, "pi")
    assert plan["withdraw"] == [recorded[2]]
    assert plan["add"] == []
    # recorded before the change: what is wanted, and what is still to withdraw
    assert plan["record"] == [WANTED[0], *recorded[1:]]
    assert plan["current"]["12443"] == "http://127.0.0.1:5555"


def test_serve_plan_refuses_a_port_someone_else_serves():
    st = status({8443: "http://127.0.0.1:5555"}, [443])
    plan = model.camera_model_serve_plan(WANTED, [], st, "pi")
    assert plan["blocked"] == [
        "camera a of pi wants `tailscale serve` HTTPS port 443, but that port already serves "
        "something else, which this role did not set up (`tailscale serve status`). Choose "
        "another serve_port, or remove that serve config (`tailscale serve --https=443 off`) if "
        "it is no longer needed.",
        "camera b of pi wants `tailscale serve` HTTPS port 8443, but that port already serves "
        "http://127.0.0.1:5555, which this role did not set up (`tailscale serve status`). "
        "Choose another serve_port, or remove that serve config (`tailscale serve --https=8443 "
        "off`) if it is no longer needed.",
    ]
    # a port the role recorded is the role's, whatever it serves now
    assert model.camera_model_serve_plan(WANTED, WANTED, st, "pi")["blocked"] == []


# -- the fleet (camera_outputs) ---------------------------------------------------------------


class HostVars(dict):
    """hostvars as the filter sees it: host -> that host's variables."""


def fleet(hosts: dict, **kw):
    hv = HostVars({h: {"inventory_hostname_short": h.split(".")[0], **v} for h, v in hosts.items()})
    return model.camera_model_fleet(list(hosts), hv, app_src=str(APP), **kw)


def test_fleet_uses_the_apps_defaults_and_turns_the_size():
    result = fleet(
        {
            "pi-a.lan": {"ansible_host": "192.0.2.1", "snapshot_stream_cameras": [{"name": "x"}]},
            "pi-b": {
                "snapshot_stream_expose": "tailnet",
                "snapshot_stream_cameras": [{"name": "y", "port": 9000, "rotate": 270}],
            },
        },
        tailscale_hostname_vars=["tailscale_hostname"],
        address_vars=["ansible_host"],
        tailnet_domain="example.ts.net",
    )
    assert result["problems"] == []
    x, y = result["cameras"]
    assert x["stream_url"] == f"http://192.0.2.1:{table.default('port')}/stream"
    assert (x["width"], x["height"], x["fps"]) == (
        table.default("width"),
        table.default("height"),
        table.default("fps"),
    )
    assert x["id"] == "pi_a_x"
    assert y["base_url"] == "http://pi-b.example.ts.net:9000"
    assert (y["width"], y["height"]) == (table.default("height"), table.default("width"))


def test_fleet_never_reads_other_keys():
    class Sealed(dict):
        def __getitem__(self, key):
            if key == "auth_hash":
                raise AssertionError("auth_hash was read")
            return super().__getitem__(key)

    camera = Sealed(name="x", auth_user="bob", auth_hash="vaulted")
    result = fleet({"pi": {"snapshot_stream_cameras": [camera]}})
    assert result["problems"] == []
    assert result["cameras"][0]["auth_user"] == "bob"


def test_fleet_problems():
    result = fleet(
        {
            "pi": {
                "snapshot_stream_cameras": [{"name": "a", "fps": 0}, {"name": "b", "expose": "x"}]
            },
            "pi-x": {"snapshot_stream_cameras": [{"name": "c"}]},
            "pi_x": {"snapshot_stream_cameras": [{"name": "c"}]},
        }
    )
    assert result["problems"][:2] == [
        "camera a of pi: fps must be above 0 and at most 30 (got 0)",
        "camera b of pi: expose must be one of lan, tailnet, tailscale_serve (got x)",
    ]
    assert result["problems"][2:] == [
        "cameras pi-x c (pi-x) and pi_x c (pi_x) have the same id pi_x_c: each host/camera name "
        "pair must be unique"
    ]


# -- argument specs ---------------------------------------------------------------------------

ANSIBLE_TYPES = {
    "Integer": "int",
    "Rate": "float",
    "Seconds": "float",
    "Boolean": "bool",
    "Text": "str",
    "Controls": "dict",  # {name: value} in the inventory, name=value,... for the app
}


def _spec_options():
    specs = yaml.safe_load((REPO / "roles/snapshot_stream/meta/argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    return options["snapshot_stream_cameras"]["options"], options[
        "snapshot_stream_camera_defaults"
    ]["options"]


def test_argument_specs_declare_every_camera_key():
    cameras, defaults = _spec_options()
    keys = {opt.name for opt in table.OPTIONS} | set(model.ROLE_KEYS)
    assert set(cameras) == keys, "add the new option to the camera keys of argument_specs.yml"
    assert cameras["name"]["required"] is True
    assert {k: v for k, v in defaults.items() if k != "name"} == {
        k: v for k, v in cameras.items() if k != "name"
    }
    for opt in table.OPTIONS:
        kind = type(opt.parse).__name__
        wanted = ANSIBLE_TYPES.get(kind) or (
            "int" if all(isinstance(v, int) for v in opt.parse.values) else "str"
        )
        if opt.name == "allow":
            wanted = "list"  # a list of CIDRs in the inventory, comma-separated for the app
        assert cameras[opt.name]["type"] == wanted, opt.name


def test_each_range_is_written_once():
    # The role's files and docs name no range of the app's options: they come from the table.
    texts = {
        p: p.read_text(encoding="utf-8")
        for p in [
            *REPO.glob("roles/**/*.yml"),
            *REPO.glob("roles/**/*.j2"),
            REPO / "docs/ansible.md",
        ]
    }
    for opt in table.OPTIONS:
        if type(opt.parse).__name__ != "Integer":
            continue
        lo, hi = opt.parse.lo, opt.parse.hi
        for path, text in texts.items():
            assert f"{lo}-{hi}" not in text and f"between {lo} and {hi}" not in text, (
                opt.name,
                path,
            )
    for path, text in texts.items():
        assert "0/90/180/270" not in text and "[0, 90, 180, 270]" not in text, path
        assert "1-30" not in text, path
