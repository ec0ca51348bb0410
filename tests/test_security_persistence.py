"""Keys and revocations survive a restart; the admin key can come from the environment; the key CLI works
on the database and against a running server; no-auth servers stay on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from inferno.core.embedded import EMBEDDED_MODEL_ID
from tests.security_fixtures import SecuredServer
from tests.servers import running_inferno

ADMIN_KEY = "admin-key-from-the-environment"
CHAT = {"model": EMBEDDED_MODEL_ID, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}


def _inferno(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "inferno.cli", *args],
        capture_output=True, text=True, timeout=120, check=False, env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_keys_and_revocations_survive_a_restart(tmp_path: Path) -> None:
    args = ("--api-keys", "--data-dir", str(tmp_path / "data"), "--parallel", "1", "--ctx-size", "256")
    env = {"INFERNO_ADMIN_KEY": ADMIN_KEY}
    with running_inferno(*args, env=env) as server:
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        kept = httpx.post(server.base_url + "/v1/auth/keys", headers=admin, json={"name": "kept"}).json()
        gone = httpx.post(server.base_url + "/v1/auth/keys", headers=admin, json={"name": "gone"}).json()
        assert (
            httpx.delete(server.base_url + f"/v1/auth/keys/{gone['key_id']}", headers=admin).status_code
            == 200
        )
    with running_inferno(*args, env=env) as server:

        def chat(secret: str) -> int:
            headers = {"Authorization": f"Bearer {secret}"}
            return httpx.post(
                server.base_url + "/v1/chat/completions", headers=headers, json=CHAT, timeout=60
            ).status_code

        assert chat(kept["api_key"]) == 200
        assert chat(gone["api_key"]) == 401
    wal = (tmp_path / "data" / "inferno.db").read_bytes()[:16]
    assert wal.startswith(b"SQLite format 3")


def test_key_cli_on_the_database(tmp_path: Path) -> None:
    data = ("--data-dir", str(tmp_path / "data"))
    created = _inferno(
        "keys", "create", "ci-bot", "--permissions", "inference,model_management", "--expires-in", "7d", *data
    )
    assert created.returncode == 0, created.stderr
    key_id, secret = created.stdout.splitlines()[:2]
    assert key_id.startswith("key_") and secret.startswith("sk-inf-")
    listing = _inferno("keys", "list", *data).stdout
    assert key_id in listing and "inference,model_management" in listing and secret not in listing
    assert _inferno("keys", "revoke", key_id, *data).returncode == 0
    revoked_line = next(
        line for line in _inferno("keys", "list", *data).stdout.splitlines() if key_id in line
    )
    assert not revoked_line.rstrip().endswith("-")  # the REVOKED column holds a time
    refused = _inferno("keys", "create", "x", "--permissions", "root", *data)
    assert refused.returncode == 1 and "unknown permissions" in refused.stderr


def test_key_cli_against_a_running_server(secured: SecuredServer) -> None:
    core = ("--core", secured.server.grpc_target, "--config", str(secured.config))
    created = _inferno("keys", "create", "remote", *core)
    assert created.returncode == 0, created.stderr
    key_id, secret = created.stdout.splitlines()[:2]
    with secured.client(secret) as user:
        assert user.get("/v1/models").status_code == 200
    assert key_id in _inferno("keys", "list", *core).stdout
    assert _inferno("keys", "revoke", key_id, *core).returncode == 0
    with secured.client(secret) as user:
        assert user.get("/v1/models").status_code == 401


def test_without_auth_only_loopback_may_be_bound() -> None:
    refused = _inferno("core", "--host", "0.0.0.0", "--grpc-port", "1")
    assert refused.returncode == 2
    assert "allow_unauthenticated" in refused.stderr and "0.0.0.0" in refused.stderr
