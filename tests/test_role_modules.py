"""The roles' own modules, run as Ansible runs them (a JSON arguments file, JSON on stdout):
json_record (roles/snapshot_stream_common) and snapshot_stream_wheel (roles/snapshot_stream)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RECORD = REPO / "roles" / "snapshot_stream_common" / "library" / "json_record.py"
WHEEL = REPO / "roles" / "snapshot_stream" / "library" / "snapshot_stream_wheel.py"
APP = REPO / "app"


def run_module(module: Path, args: dict, tmp_path: Path, check: bool = False, diff: bool = False):
    params = tmp_path / "args.json"
    params.write_text(
        json.dumps(
            {"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": check, "_ansible_diff": diff}}
        )
    )
    r = subprocess.run(
        [sys.executable, str(module), str(params)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return json.loads(r.stdout)


# -- json_record -----------------------------------------------------------------------------


def test_record_reads_missing_as_default(tmp_path):
    path = tmp_path / "rec" / "settings.json"
    out = run_module(RECORD, {"path": str(path)}, tmp_path)
    assert (out["changed"], out["exists"], out["content"]) == (False, False, {})
    out = run_module(RECORD, {"path": str(path), "default": {"serve": []}}, tmp_path)
    assert out["content"] == {"serve": []}
    assert not path.parent.exists()


def test_record_writes_root_only_once(tmp_path):
    path = tmp_path / "rec" / "settings.json"
    data = {"format": 1, "tags": ["tag:camera"], "ssh": False}
    out = run_module(RECORD, {"path": str(path), "content": data}, tmp_path, diff=True)
    assert out["changed"] is True
    assert out["diff"]["after"] == json.dumps(data, indent=4, sort_keys=True) + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert json.loads(path.read_text()) == data
    out = run_module(RECORD, {"path": str(path), "content": data}, tmp_path)
    assert out["changed"] is False
    out = run_module(RECORD, {"path": str(path)}, tmp_path)
    assert (out["exists"], out["content"]) == (True, data)


def test_record_keeps_what_ansibles_to_nice_json_wrote(tmp_path):
    # A record written by an earlier version of the roles (copy + to_nice_json) is not rewritten.
    from ansible.plugins.filter.core import to_nice_json

    path = tmp_path / "serve.json"
    data = {"format": 1, "serve": [{"https": 443, "target": "http://127.0.0.1:8080"}]}
    path.write_text(to_nice_json(data) + "\n")
    path.chmod(0o600)
    assert run_module(RECORD, {"path": str(path), "content": data}, tmp_path)["changed"] is False


def test_record_check_mode_and_mode_fix(tmp_path):
    path = tmp_path / "r.json"
    out = run_module(RECORD, {"path": str(path), "content": {"a": 1}}, tmp_path, check=True)
    assert out["changed"] is True and not path.exists()
    run_module(RECORD, {"path": str(path), "content": {"a": 1}}, tmp_path)
    path.chmod(0o644)
    assert run_module(RECORD, {"path": str(path), "content": {"a": 1}}, tmp_path)["changed"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_record_refuses_to_read_garbage(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("{not json")
    out = run_module(RECORD, {"path": str(path)}, tmp_path)
    assert out["failed"] is True and "is not JSON" in out["msg"]
    # writing replaces it
    assert run_module(RECORD, {"path": str(path), "content": {}}, tmp_path)["changed"]


# -- the app's wheel ---------------------------------------------------------------------------


def copy_app(dest: Path) -> Path:
    shutil.copytree(
        APP,
        dest,
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", ".pytest_cache", "tests"),
    )
    return dest


def test_wheel_version_carries_the_source_hash_and_is_reproducible(tmp_path):
    src = copy_app(tmp_path / "app")
    (src / "snapshot_stream" / "__pycache__").mkdir(exist_ok=True)
    (src / "snapshot_stream" / "__pycache__" / "cli.cpython-311.pyc").write_bytes(b"cache")
    first = run_module(WHEEL, {"src": str(src), "dest": str(tmp_path / "a")}, tmp_path)
    again = run_module(WHEEL, {"src": str(src), "dest": str(tmp_path / "a")}, tmp_path)
    other = run_module(WHEEL, {"src": str(src), "dest": str(tmp_path / "b")}, tmp_path)
    assert first["changed"] is True and again["changed"] is False and other["changed"] is True
    assert first["version"].startswith("0.1.0+g") and len(first["version"]) == len("0.1.0+g") + 12
    assert first["filename"] == f"snapshot_stream-{first['version']}-py3-none-any.whl"
    assert Path(first["path"]).read_bytes() == Path(other["path"]).read_bytes()
    names = zipfile.ZipFile(first["path"]).namelist()
    assert "snapshot_stream/options.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    # any change of the source is a new version
    cli = src / "snapshot_stream" / "cli.py"
    cli.write_text(cli.read_text() + "\n# changed\n")
    changed = run_module(WHEEL, {"src": str(src), "dest": str(tmp_path / "a")}, tmp_path)
    assert changed["changed"] is True and changed["version"] != first["version"]


def test_wheel_keeps_only_a_few_old_ones(tmp_path):
    src = copy_app(tmp_path / "app")
    dest = tmp_path / "wheels"
    built = []
    for i in range(4):
        (src / "snapshot_stream" / "extra.py").write_text(f"X = {i}\n")
        built.append(run_module(WHEEL, {"src": str(src), "dest": str(dest), "keep": 2}, tmp_path))
        os.utime(built[-1]["path"], (1000 + i, 1000 + i))
    assert sorted(p.name for p in dest.iterdir()) == sorted(b["filename"] for b in built[1:])


@pytest.mark.timeout(300)
def test_wheel_installs_and_runs(tmp_path):
    out = run_module(WHEEL, {"src": str(APP), "dest": str(tmp_path / "wheels")}, tmp_path)
    env_dir = tmp_path / "venv"
    # the system site packages hold the app's dependencies here, like the Pi's pinned ones
    venv.create(env_dir, with_pip=True, system_site_packages=True)
    python = env_dir / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", out["path"]]
    subprocess.run(pip, check=True, timeout=240, env={**os.environ, "PYTHONPATH": ""})
    version = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('snapshot-stream'))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert version.stdout.strip() == out["version"]
    env_file = tmp_path / "cam.env"
    env_file.write_text("SNAPSHOT_STREAM_FPS='0'\n")
    r = subprocess.run(
        [str(env_dir / "bin" / "snapshot-stream"), "check-env", str(env_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 2
    assert r.stderr == (
        "snapshot-stream: error: SNAPSHOT_STREAM_FPS must be above 0 and at most 30 (got 0)\n"
    )
