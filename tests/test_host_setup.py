"""What a fresh machine gets: one list of host packages (scripts/host-packages.txt), read by
scripts/ci-setup and by scripts/host-check, whose checks name the package behind a failure; and the
fresh-machine stage that runs both in a bare Debian 12 container before anything else is tested."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"


def _host_check() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("host_check", str(SCRIPTS / "host-check"))
    spec = importlib.util.spec_from_loader("host_check", loader)
    assert spec
    module = importlib.util.module_from_spec(spec)
    sys.modules["host_check"] = module  # dataclasses look their module up by name
    loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def hc() -> ModuleType:
    return _host_check()


def test_ci_setup_and_host_check_read_one_list(hc) -> None:
    r = subprocess.run(
        [str(SCRIPTS / "ci-setup"), "--list"], capture_output=True, text=True, check=True
    )
    from_ci_setup = r.stdout.split()
    assert from_ci_setup == hc.read_list()
    # the armhf headers are a Recommends of the cross compiler: listed, never assumed
    assert "libc6-dev-armhf-cross" in from_ci_setup


def test_the_list_and_the_checks_agree() -> None:
    r = subprocess.run(
        [str(SCRIPTS / "host-check"), "--lint"], capture_output=True, text=True, check=False
    )
    assert r.returncode == 0, r.stdout
    assert "no list problem" in r.stdout


def test_a_package_dropped_from_the_list_is_named(tmp_path) -> None:
    text = (SCRIPTS / "host-packages.txt").read_text()
    dropped = re.sub(r"(?m)^libc6-dev-armhf-cross\b.*\n", "", text)
    assert dropped != text
    (tmp_path / "list.txt").write_text(dropped + "hello   # a package no check uses\n")
    r = subprocess.run(
        [str(SCRIPTS / "host-check"), "--lint", "--packages", str(tmp_path / "list.txt")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 1
    assert (
        "check cc-armhf needs libc6-dev-armhf-cross, which scripts/host-packages.txt does not list"
        in r.stdout
    )
    assert "lists hello, which no check uses" in r.stdout


def test_a_failing_check_names_its_packages_that_are_not_installed(hc, tmp_path) -> None:
    # a package that exists in Debian but that no test machine installs
    check = hc.Check("probe", ("make", "hello-traditional"), "a probe", "echo out; exit 3")
    ok, out, _ = hc.run(check, tmp_path)
    assert not ok
    assert "out" in out and "(exit 3)" in out
    lines = hc.report(check, out, listed=["make"])
    assert (
        "      missing package: hello-traditional (not in scripts/host-packages.txt: add it there)"
        in lines
    )
    assert not any("missing package: make" in line for line in lines)


def test_a_check_that_passes_shows_what_it_saw(hc, tmp_path) -> None:
    ok, out, _ = hc.run(hc.Check("probe", ("make",), "a probe", "echo one; echo two >&2"), tmp_path)
    assert ok
    assert out == "one"


def test_every_check_runs_here(hc) -> None:
    """The checks themselves, on this machine: under `make test`, set up by scripts/ci-setup."""
    r = subprocess.run(
        [str(SCRIPTS / "host-check")], capture_output=True, text=True, check=False, timeout=600
    )
    if r.returncode and os.environ.get("SNAPSHOT_STREAM_HOST_TOOLS") != "required":
        pytest.skip(f"this machine lacks host tools (sudo scripts/ci-setup):\n{r.stdout}")
    assert r.returncode == 0, r.stdout
    assert f"all {len(hc.CHECKS)} checks passed" in r.stdout


def test_make_test_runs_the_fresh_machine_stage_first() -> None:
    stages = re.findall(r"^\S*\s*scripts/stage (\w+) ", (SCRIPTS / "test-stages").read_text(), re.M)
    assert stages == ["fresh", "lint", "pytest", "molecule"]
