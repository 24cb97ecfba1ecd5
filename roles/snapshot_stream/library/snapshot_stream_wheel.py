"""Ansible module snapshot_stream_wheel: the app's wheel, built on the controller."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: snapshot_stream_wheel
short_description: Build the snapshot-stream app's wheel (run it on the controller)
description:
  - Builds a pure-Python wheel (PEP 427) of the app from its source directory, with the Python
    standard library only: the controller needs no build tools and no network.
  - Its version is the one in pyproject.toml with a local label of the source's hash,
    C(0.1.0+g<12 hex digits>), so a changed source is a new version and an unchanged one the
    same version. The archive is reproducible (sorted entries, fixed dates): the same source
    gives the same bytes.
  - The wheel holds the files of the package directory (never caches), the metadata from
    pyproject.toml and the README, and the console scripts.
  - A wheel that is already in O(dest) is not built again; other wheels of the app there are
    removed, except the O(keep) most recent ones (other checkouts may be using them).
options:
  src:
    description: The app's source directory (holds pyproject.toml).
    type: path
    required: true
  dest:
    description: Where the wheel goes. Empty, C($XDG_CACHE_HOME/snapshot-stream/wheels) or
      C(~/.cache/snapshot-stream/wheels).
    type: path
  keep:
    description: How many other wheels of the app to leave in O(dest).
    type: int
    default: 4
author: snapshot-stream contributors
"""

RETURN = r"""
path:
  description: The wheel on the controller.
  type: str
  returned: always
filename:
  description: Its file name.
  type: str
  returned: always
version:
  description: Its version, as pip reports it once installed.
  type: str
  returned: always
"""

SKIP_DIRS = {"__pycache__"}
SKIP_SUFFIXES = (".pyc", ".pyo")
EPOCH = (1980, 1, 1, 0, 0, 0)


def load_project(src: Path) -> dict[str, Any]:
    import tomllib  # Python 3.11+, which ansible-core 2.19 needs on the controller anyway

    with open(src / "pyproject.toml", "rb") as f:
        data = tomllib.load(f)
    project = data["project"]
    packages = data.get("tool", {}).get("setuptools", {}).get("packages", {})
    include = packages.get("find", {}).get("include") or [project["name"].replace("-", "_")]
    project["_packages"] = sorted({p.rstrip("*") for p in include})
    return project


def package_files(src: Path, packages: list[str]) -> list[tuple[str, bytes]]:
    """(archive name, content) of every file of the packages, sorted."""
    files = []
    for package in packages:
        root = src / package
        if not root.is_dir():
            raise FileNotFoundError(f"no package directory {root}")
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
            for name in filenames:
                if name.endswith(SKIP_SUFFIXES):
                    continue
                path = Path(dirpath) / name
                files.append((path.relative_to(src).as_posix(), path.read_bytes()))
    return sorted(files)


def metadata(project: dict[str, Any], version: str, readme: str) -> str:
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {project['name']}",
        f"Version: {version}",
    ]
    if project.get("description"):
        lines.append(f"Summary: {project['description']}")
    license_ = project.get("license")
    if isinstance(license_, str):
        lines.append(f"License: {license_}")
    if project.get("requires-python"):
        lines.append(f"Requires-Python: {project['requires-python']}")
    lines += [f"Requires-Dist: {dep}" for dep in project.get("dependencies", [])]
    if readme:
        lines.append("Description-Content-Type: text/markdown")
        return "\n".join(lines) + "\n\n" + readme
    return "\n".join(lines) + "\n"


def record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build(src: Path, dest: Path) -> tuple[Path, str, bool]:
    """Builds the wheel into dest unless it is there; returns (path, version, built)."""
    project = load_project(src)
    readme_path = src / str(project.get("readme") or "README.md")
    readme = readme_path.read_text(encoding="utf-8") if readme_path.is_file() else ""
    files = package_files(src, project["_packages"])
    source_hash = hashlib.sha256()
    for name, data in [*files, ("pyproject.toml", (src / "pyproject.toml").read_bytes())]:
        source_hash.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    source_hash.update(b"README\0" + readme.encode())
    version = f"{project['version']}+g{source_hash.hexdigest()[:12]}"
    dist = re.sub(r"[-_.]+", "_", project["name"]).lower()
    path = dest / f"{dist}-{version}-py3-none-any.whl"
    if path.is_file():
        return path, version, False
    info = f"{dist}-{version}.dist-info"
    scripts = project.get("scripts", {})
    extra = [
        (f"{info}/METADATA", metadata(project, version, readme).encode()),
        (
            f"{info}/WHEEL",
            (
                b"Wheel-Version: 1.0\nGenerator: snapshot_stream_wheel\n"
                b"Root-Is-Purelib: true\nTag: py3-none-any\n"
            ),
        ),
    ]
    if scripts:
        entries = "".join(f"{name} = {target}\n" for name, target in sorted(scripts.items()))
        extra.append((f"{info}/entry_points.txt", f"[console_scripts]\n{entries}".encode()))
    members = files + extra
    record = "".join(record_line(n, d) + "\n" for n, d in members) + f"{info}/RECORD,,\n"
    members.append((f"{info}/RECORD", record.encode()))
    dest.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest, prefix=".building-", suffix=".whl")
    try:
        with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as whl:
            for name, data in members:
                entry = zipfile.ZipInfo(name, EPOCH)
                entry.external_attr = 0o644 << 16
                entry.compress_type = zipfile.ZIP_DEFLATED
                whl.writestr(entry, data)
        os.chmod(tmp, 0o644)
        # Another run may have built the same bytes meanwhile: replacing them is harmless.
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path, version, True


def prune(dest: Path, keep_path: Path, keep: int) -> list[str]:
    """Removes the oldest other wheels of the app beyond ``keep``."""
    prefix = keep_path.name.split("-", 1)[0] + "-"
    others = [p for p in dest.glob(prefix + "*.whl") if p != keep_path]
    others.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    removed = []
    for old in others[keep:]:
        old.unlink(missing_ok=True)
        removed.append(str(old))
    return removed


def default_dest() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "snapshot-stream" / "wheels"


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "src": {"type": "path", "required": True},
            "dest": {"type": "path"},
            "keep": {"type": "int", "default": 4},
        },
        supports_check_mode=True,
    )
    src = Path(module.params["src"])
    dest = Path(module.params["dest"]) if module.params["dest"] else default_dest()
    try:
        path, version, built = build(src, dest)
        removed = prune(dest, path, max(0, module.params["keep"])) if built else []
    except (OSError, KeyError, ValueError) as exc:
        module.fail_json(msg=f"cannot build the app's wheel from {src} into {dest}: {exc}")
    module.exit_json(
        changed=built, path=str(path), filename=path.name, version=version, removed=removed
    )


if __name__ == "__main__":
    main()
