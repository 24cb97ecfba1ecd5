"""Helpers shared by the repository-level tests (the tests import it by name: pytest puts
this directory on sys.path)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest


def ansible_playbook() -> str:
    """The ansible-playbook of this venv (make venv), else the one on PATH."""
    local = Path(sys.executable).parent / "ansible-playbook"
    found = str(local) if local.exists() else shutil.which("ansible-playbook")
    if not found:
        pytest.fail("ansible-playbook not found (install requirements-dev.txt)")
    return found
