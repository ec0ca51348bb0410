"""Debian packages some tests need (PostgreSQL, Redis, Chromium), installed on first use.

The README's test command is the whole of CI, so the suite installs what it needs itself: as root through
apt-get (as .ci/run runs), otherwise the test fails naming the command to run. Never a skip: a test that
skips in CI is not a pass.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

_installed: set[str] = set()


def ensure_debian_packages(packages: Sequence[str], *, binaries: Sequence[str]) -> None:
    """Makes sure every path or command in binaries exists, installing packages with apt-get if one is
    missing."""
    if all(_found(binary) for binary in binaries):
        return
    missing = [package for package in packages if package not in _installed]
    if os.geteuid() != 0:
        pytest.fail(f"these tests need Debian packages: sudo apt-get install -y {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    update = subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, text=True)
    install = subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        env=env,
        capture_output=True,
        text=True,
    )
    if install.returncode != 0:
        pytest.fail(f"apt-get install {' '.join(missing)} failed:\n{update.stderr}\n{install.stderr[-2000:]}")
    _installed.update(missing)
    absent = [binary for binary in binaries if not _found(binary)]
    if absent:
        pytest.fail(f"installed {' '.join(missing)} but {', '.join(absent)} is still missing")


def _found(binary: str) -> bool:
    return Path(binary).exists() if "/" in binary else shutil.which(binary) is not None
