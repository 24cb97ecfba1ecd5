"""The camera_outputs role: every fleet output, from a test inventory, with no camera host.

Runs `ansible-playbook tests/fixtures/outputs-playbook.yml` (the role alone, on localhost) with
tests/fixtures/outputs-inventory.yml and checks each generated file with a real parser.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import stat
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from tools import ansible_playbook

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
INVENTORY = FIXTURES / "outputs-inventory.yml"
PLAYBOOK = FIXTURES / "outputs-playbook.yml"
AUTH_HASH = "pbkdf2:sha256:600000$TESTSALT$0123456789abcdef"

FILES = {
    "html": "cameras.html",
    "m3u": "cameras.m3u",
    "home_assistant": "home-assistant-cameras.yaml",
    "frigate": "frigate-cameras.yml",
    "csv": "cameras.csv",
}

# What the fixture inventory must give, camera by camera (inventory order).
EXPECTED = [
    {
        "id": "pi_porch_front",
        "title": "pi-porch front",
        "host": "pi-porch",
        "name": "front",
        "base": "http://192.0.2.20:8080",  # lan, bound to one address (its `host`)
        "width": 1280,
        "height": 720,
        "fps": 15,  # from the host's snapshot_stream_camera_defaults
        "auth_user": None,
    },
    {
        "id": "pi_porch_door",
        "title": "pi-porch door",
        "host": "pi-porch",
        "name": "door",
        "base": "http://192.0.2.10:8081",  # lan: ansible_host
        "width": 640,
        "height": 480,
        "fps": 10,
        "auth_user": "viewer",
    },
    {
        "id": "pi_garage_garage",
        "title": "pi-garage garage",
        "host": "pi-garage.lan",
        "name": "garage",
        # tailnet: the tailscale_hostname host var + camera_outputs_tailnet_domain
        "base": "http://garage-cam.example-tailnet.ts.net:8090",
        "width": 480,  # rotate 90 turns 640x480 into 480x640
        "height": 640,
        "fps": 8,  # 7.5 rounded up: Frigate wants an integer
        "auth_user": None,
    },
    {
        "id": "pi_shed_shed",
        "title": "pi-shed shed",
        "host": "pi-shed",
        "name": "shed",
        # tailscale_serve on 443: https, no port; hostname defaults to the inventory name
        "base": "https://pi-shed.example-tailnet.ts.net",
        "width": 320,
        "height": 240,
        "fps": 25,
        "auth_user": "viewer2",
    },
]


def run_outputs(
    out_dir: Path, *extra: str, inventory: Path = INVENTORY, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the outputs playbook into out_dir; returns the finished process."""
    env = dict(os.environ)
    env.update(
        ANSIBLE_ROLES_PATH=str(REPO / "roles"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_STDOUT_CALLBACK="default",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        ANSIBLE_LOCALHOST_WARNING="0",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
    )
    cmd = [
        ansible_playbook(),
        "-i",
        str(inventory),
        str(PLAYBOOK),
        "-e",
        f"camera_outputs_dir={out_dir}",
        *extra,
    ]
    proc = subprocess.run(
        cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    if check and proc.returncode != 0:
        pytest.fail(f"ansible-playbook failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def recap(stdout: str) -> dict[str, int]:
    """The PLAY RECAP counters of localhost."""
    match = re.search(r"^localhost\s*:\s*(.*)$", stdout.split("PLAY RECAP", 1)[-1], re.M)
    assert match, f"no PLAY RECAP line for localhost in:\n{stdout}"
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("outputs") / "fleet"  # created by the role
    first = run_outputs(out)
    second = run_outputs(out)
    return {"dir": out, "first": first, "second": second}


def read(outputs: dict[str, object], kind: str) -> str:
    return (outputs["dir"] / FILES[kind]).read_text(encoding="utf-8")


class SecretLoader(yaml.SafeLoader):
    """SafeLoader that also reads Home Assistant's `!secret NAME`."""


SecretLoader.add_constructor(
    "!secret", lambda loader, node: {"secret": loader.construct_scalar(node)}
)


class WallParser(HTMLParser):
    """Collects the camera cards, images, links and any external resource of the wall."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: list[dict[str, str]] = []
        self.images: list[dict[str, str]] = []
        self.links: list[str] = []
        self.external: list[str] = []
        self.body: dict[str, str] = {}
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "body":
            self.body = a
        if tag == "article" and "cam" in a.get("class", "").split():
            self.cards.append(a)
        if tag == "img":
            self.images.append(a)
        if tag == "a":
            self.links.append(a.get("href", ""))
        if tag == "script":
            self.scripts += 1
            if a.get("src"):
                self.external.append(a["src"])
        if tag == "link" and a.get("href"):
            self.external.append(a["href"])


def parse_wall(text: str) -> WallParser:
    parser = WallParser()
    parser.feed(text)
    parser.close()
    return parser


def test_runs_on_localhost_and_is_idempotent(outputs):
    first = recap(outputs["first"].stdout)
    assert first["failed"] == 0 and first["unreachable"] == 0
    assert first["changed"] >= 1
    second = recap(outputs["second"].stdout)
    assert second["failed"] == 0 and second["unreachable"] == 0
    assert second["changed"] == 0, outputs["second"].stdout
    # The camera hosts are never contacted: only localhost appears in the recap.
    assert "pi-porch" not in outputs["first"].stdout.split("PLAY RECAP", 1)[1]


def test_files_are_0644(outputs):
    for name in FILES.values():
        mode = stat.S_IMODE((outputs["dir"] / name).stat().st_mode)
        assert mode == 0o644, f"{name}: {oct(mode)}"


def test_m3u_playlist(outputs):
    lines = read(outputs, "m3u").splitlines()
    assert lines[0] == "#EXTM3U"
    entries = [line for line in lines[1:] if line and not line.startswith("# ")]
    assert len(entries) == 2 * len(EXPECTED)
    for cam, (info, url) in zip(
        EXPECTED, zip(entries[::2], entries[1::2], strict=True), strict=True
    ):
        assert info == f"#EXTINF:-1,{cam['title']}"
        assert url == f"{cam['base']}/stream"


def test_csv_for_nvrs(outputs):
    rows = list(csv.reader(io.StringIO(read(outputs, "csv"))))
    assert rows[0] == ["name", "host", "stream_url", "snapshot_url"]
    assert rows[1:] == [
        [cam["title"], cam["host"], f"{cam['base']}/stream", f"{cam['base']}/snapshot.jpg"]
        for cam in EXPECTED
    ]


def test_home_assistant_snippet(outputs):
    data = yaml.load(read(outputs, "home_assistant"), Loader=SecretLoader)
    cameras = data["camera"]
    assert len(cameras) == len(EXPECTED)
    for cam, entry in zip(EXPECTED, cameras, strict=True):
        assert entry["platform"] == "mjpeg"
        assert entry["name"] == cam["title"]
        assert entry["mjpeg_url"] == f"{cam['base']}/stream"
        assert entry["still_image_url"] == f"{cam['base']}/snapshot.jpg"
        if cam["auth_user"]:
            assert entry["username"] == cam["auth_user"]
            assert entry["password"] == {"secret": f"camera_{cam['id']}_password"}
        else:
            assert "username" not in entry and "password" not in entry
    # The snippet is plain YAML apart from the !secret tags.
    plain = yaml.safe_load(read(outputs, "home_assistant").replace("!secret ", ""))
    assert len(plain["camera"]) == len(EXPECTED)


def test_frigate_snippet(outputs):
    cameras = yaml.safe_load(read(outputs, "frigate"))["cameras"]
    assert list(cameras) == [cam["id"] for cam in EXPECTED]
    for cam in EXPECTED:
        entry = cameras[cam["id"]]
        (stream,) = entry["ffmpeg"]["inputs"]
        url = f"{cam['base']}/stream"
        if cam["auth_user"]:
            scheme, rest = url.split("://", 1)
            password = "{FRIGATE_" + cam["id"].upper() + "_PASSWORD}"
            url = f"{scheme}://{cam['auth_user']}:{password}@{rest}"
        assert stream["path"] == url
        assert stream["input_args"] == "preset-http-mjpeg-generic"
        assert stream["roles"] == ["detect"]
        assert entry["detect"]["width"] == cam["width"]
        assert entry["detect"]["height"] == cam["height"]
        assert entry["detect"]["fps"] == cam["fps"]


def test_camera_wall_html(outputs):
    wall = parse_wall(read(outputs, "html"))
    assert wall.body["data-mode"] == "stream"  # 4 cameras <= threshold 8: live streams
    assert wall.external == [], "the wall must be self-contained"
    assert wall.scripts == 1
    assert len(wall.cards) == len(EXPECTED)
    for cam, card, img in zip(EXPECTED, wall.cards, wall.images, strict=True):
        assert card["id"] == f"cam-{cam['id']}"
        assert card["data-name"] == cam["name"]
        assert card["data-host"] == cam["host"]
        assert card["data-stream"] == f"{cam['base']}/stream"
        assert card["data-snapshot"] == f"{cam['base']}/snapshot.jpg"
        assert card["data-healthz"] == f"{cam['base']}/healthz"
        assert card["data-auth"] == ("yes" if cam["auth_user"] else "no")
        assert img["src"] == f"{cam['base']}/stream"
        assert (img["width"], img["height"]) == (str(cam["width"]), str(cam["height"]))
        assert f"{cam['base']}/healthz" in wall.links
    assert len(wall.images) == len(EXPECTED)


def test_no_secret_in_any_output(outputs):
    for kind, name in FILES.items():
        text = read(outputs, kind)
        assert AUTH_HASH not in text and "SALT" not in text and "pbkdf2" not in text, name
        assert "$ANSIBLE_VAULT" not in text, name
        assert "auth_hash" not in text, name
        for line in text.splitlines():
            if re.match(r"\s*password\s*:", line):
                assert re.match(r"\s*password: !secret [a-z0-9_]+$", line), f"{name}: {line}"


def test_snapshot_mode_above_threshold(tmp_path):
    extra = {
        "camera_outputs_wall_snapshot_threshold": 3,
        "camera_outputs_wall_snapshot_interval": 7,
        "camera_outputs_formats": ["html"],
    }
    run_outputs(tmp_path, "-e", json.dumps(extra))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cameras.html"]
    wall = parse_wall((tmp_path / "cameras.html").read_text(encoding="utf-8"))
    assert wall.body["data-mode"] == "snapshot"
    assert wall.body["data-snapshot-interval"] == "7"
    assert [img["src"] for img in wall.images] == [
        f"{cam['base']}/snapshot.jpg" for cam in EXPECTED
    ]


def test_empty_fleet(tmp_path):
    run_outputs(tmp_path, "-e", '{"camera_outputs_hosts": []}')
    assert yaml.safe_load((tmp_path / FILES["home_assistant"]).read_text()) == {"camera": []}
    assert yaml.safe_load((tmp_path / FILES["frigate"]).read_text()) == {"cameras": {}}
    assert (tmp_path / FILES["m3u"]).read_text().splitlines()[0] == "#EXTM3U"
    assert list(csv.reader(io.StringIO((tmp_path / FILES["csv"]).read_text()))) == [
        ["name", "host", "stream_url", "snapshot_url"]
    ]
    assert parse_wall((tmp_path / FILES["html"]).read_text()).cards == []


def test_bad_expose_is_refused(tmp_path):
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "children": {
                        "cameras": {
                            "hosts": {
                                "pi-x": {
                                    "snapshot_stream_cameras": [
                                        {"name": "cam", "port": 8080, "expose": "internet"}
                                    ]
                                }
                            }
                        }
                    }
                }
            }
        )
    )
    proc = run_outputs(tmp_path / "out", inventory=inventory, check=False)
    assert proc.returncode != 0
    assert "expose must be one of lan, tailnet, tailscale_serve" in proc.stdout
    assert not (tmp_path / "out").exists()
