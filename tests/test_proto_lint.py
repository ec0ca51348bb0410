"""The proto passes `buf lint` (STANDARD rules, configured in buf.yaml)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.tools import require_tool

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_proto_passes_buf_lint() -> None:
    result = subprocess.run(
        [require_tool("buf", "BUF"), "lint"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"buf lint failed:\n{result.stdout}{result.stderr}"
