"""`make test`, the README's test command: it sets the machine up itself as root, and anyone else
is stopped at once with one line naming the command to run."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
def test_make_test_as_another_user_stops_with_one_line(tmp_path) -> None:
    work = tmp_path / "checkout"
    work.mkdir()
    shutil.copy(REPO / "Makefile", work / "Makefile")
    for d in (tmp_path, work):
        d.chmod(0o777)
    r = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "make", "test"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": os.environ["PATH"], "HOME": str(work)},
    )
    lines = [line for line in (r.stdout + r.stderr).splitlines() if line.strip()]
    assert r.returncode != 0
    assert len(lines) == 1, lines
    assert "run: sudo make test" in lines[0]
    # nothing was started: no venv, no artifacts
    assert sorted(p.name for p in work.iterdir()) == ["Makefile"]


@pytest.mark.skipif(os.geteuid() != 0, reason="make test refuses to plan anything without root")
def test_make_test_as_root_sets_the_machine_up_first() -> None:
    r = subprocess.run(
        ["make", "--dry-run", "--no-print-directory", "test"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    commands = [line for line in r.stdout.splitlines() if line.strip()]
    assert "scripts/ci-setup" in commands[0], commands
    assert any("scripts/test-stages" in c for c in commands[1:]), commands


def test_ci_runs_the_readmes_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    ci = [
        line.strip()
        for line in (REPO / ".ci/run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert "make test" in readme
    assert ci[-1] == "make test"
