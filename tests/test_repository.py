"""What the repository keeps out of git."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def ignored(path: str) -> bool:
    r = subprocess.run(
        ["git", "check-ignore", "--quiet", "--no-index", path],
        cwd=REPO,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert r.returncode in (0, 1), r.stderr
    return r.returncode == 0


@pytest.mark.parametrize(
    "path",
    [
        "inventory",
        "inventory/hosts.yml",
        "inventory.yml",
        "group_vars/all/vault.yml",
        "group_vars/cameras.yml",
        "host_vars/pi-garden.local.yml",
        "outputs/cameras.html",
    ],
)
def test_the_users_inventory_is_not_committed(path):
    # ansible.cfg reads ./inventory; `git add -A` must not pick up host names, addresses or keys.
    assert ignored(path)


@pytest.mark.parametrize(
    "path",
    [
        "inventory.example",
        "molecule/fleet/molecule.yml",
        "tests/fixtures/outputs-inventory.yml",
        "roles/snapshot_stream/defaults/main.yml",
    ],
)
def test_the_repositorys_own_files_are_not_ignored(path):
    assert not ignored(path)
