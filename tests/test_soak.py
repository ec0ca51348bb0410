"""The soak (bench/soak.py) for 30 seconds: 16 workers of streams dropped, cancelled and read to the end, and
invalid requests, over REST, WebSocket and gRPC; then no 5xx, no leaked sequence, bounded RSS growth."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parent.parent / "bench" / "soak.py"
CHECKS = (
    "zero 5xx",
    "every error in the seed's body shape",
    "no other failure",
    "zero leaked sequences",
    "core and gateway never restarted",
    "core RSS growth under",
    "gateway RSS growth under",
    "a plain chat still answers",
)


def test_a_30_second_soak_passes_every_check(tmp_path: Path) -> None:
    report_path = tmp_path / "soak.json"
    command = [sys.executable, str(SOAK), "--seconds", "30", "--streams", "16", "--json", str(report_path)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr[-4000:]
    check_rows = [line for line in run.stdout.splitlines() if line.startswith("| ") and " | pass | " in line]
    for check in CHECKS:
        assert any(row.startswith(f"| {check}") for row in check_rows), (check, run.stdout)
    assert "**FAIL**" not in run.stdout
    report = json.loads(report_path.read_text())
    assert not report["server_errors"] and not report["bad_bodies"] and not report["failures"]
    assert report["leaked_sequences"] == 0
    outcomes = report["outcomes"]
    # Every kind of traffic ran: SSE streams dropped and read out, WebSocket chats and gRPC streams
    # cancelled, invalid requests refused.
    for kind in ("SSE chat dropped", "SSE chat full", "WS chat cancelled", "gRPC stream cancelled"):
        assert outcomes.get(kind, 0) > 0, (kind, outcomes)
    assert outcomes.get("invalid REST refused 4xx", 0) > 0, outcomes
