"""A fleet of cores sharing state (docs/security.md "A fleet of cores"): API keys and conversion jobs in a
real PostgreSQL, rate limits and stream counts in a real Redis, and two real `inferno serve` pointed at both.

The two servers are started once for the module; the last test kills one of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
from redis.asyncio import Redis

from inferno.config_file import ConfigError
from inferno.core.convert.jobs import ConversionJob, JobStatus, JobStore
from inferno.core.database.open import open_database, open_sqlite
from inferno.core.database.schema import MIGRATIONS
from inferno.core.security.keystore import KeyStore
from inferno.core.security.redis_limits import RedisRateLimiter, RedisStreamSlots
from inferno.security_config import load_security_config
from tests.postgres_redis import running_postgres, running_redis
from tests.servers import RunningServer, inferno_process


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with running_postgres() as url:
        yield url


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with running_redis() as url:
        yield url


@dataclass(frozen=True)
class Fleet:
    a: RunningServer
    b: RunningServer
    # The `inferno serve` process of core a, which the last test kills.
    a_process: psutil.Process
    admin_key: str
    # Where inferno.toml and the shared models directory are.
    root: Path

    def client(self, server: RunningServer, secret: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {secret or self.admin_key}"}
        return httpx.Client(base_url=server.base_url, headers=headers, timeout=60)

    def admin(self, server: RunningServer, method: str, path: str, body: object = None) -> httpx.Response:
        """A call with the admin key. The fleet's burst limit of 5 a second counts the admin key's calls too,
        so a refusal by it is waited out (its Retry-After) rather than failing the test."""
        with self.client(server) as admin:
            for _ in range(5):
                reply = admin.request(method, path, json=body)
                if reply.status_code != 429:
                    return reply
                time.sleep(float(reply.headers["retry-after"]))
        return reply

    def create_key(self, server: RunningServer, **extra: object) -> tuple[str, str]:
        """(key_id, secret) of a new inference key, created through server."""
        body = {"name": "fleet", "permissions": ["inference"], **extra}
        reply = self.admin(server, "POST", "/v1/auth/keys", body)
        assert reply.status_code == 201, reply.text
        return reply.json()["key_id"], reply.json()["api_key"]


FLEET_CONFIG = """
[server]
models_dirs = ["models"]

[security]
api_keys = true
admin_key_file = "admin.key"
database_url = "{database_url}"
redis_url = "{redis_url}"
rate_limit = 1000
burst_limit = 5
# Refused credentials are part of these tests; the failure limit has tests of its own (test_defaults.py).
auth_failures_per_minute = 1000
"""


@pytest.fixture(scope="module")
def fleet(postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Two cores (each with its gateway and its own data directory) sharing one PostgreSQL and one Redis."""
    root = tmp_path_factory.mktemp("fleet")
    (root / "models").mkdir()
    admin_key = "admin-" + secrets.token_urlsafe(24)
    (root / "admin.key").write_text(admin_key + "\n")
    config = root / "inferno.toml"
    config.write_text(FLEET_CONFIG.format(database_url=postgres_url, redis_url=redis_url))
    args = ("--config", str(config), "--parallel", "1", "--ctx-size", "512")
    with (
        inferno_process(*args, env={"INFERNO_DATA_DIR": str(root / "data-a")}) as (a, a_process),
        inferno_process(*args, env={"INFERNO_DATA_DIR": str(root / "data-b")}) as (b, _),
    ):
        yield Fleet(a, b, psutil.Process(a_process.pid), admin_key, root)


def _kill_tree(process: psutil.Process) -> None:
    """SIGKILL to process and everything it started (the core and the gateway): no shutdown code runs."""
    with contextlib.suppress(psutil.NoSuchProcess):
        family = [*process.children(recursive=True), process]
        for member in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                member.send_signal(signal.SIGKILL)
        psutil.wait_procs(family, timeout=10)


# --- two cores, one database, one Redis --------------------------------------------------------------------


def test_a_key_created_through_one_core_works_on_the_other(fleet: Fleet) -> None:
    _, secret = fleet.create_key(fleet.a)
    with fleet.client(fleet.b, secret) as user:
        assert user.get("/v1/models").status_code == 200
        assert user.get("/v1/auth/user").json()["auth_method"] == "api_key"


def test_a_key_revoked_on_one_core_is_refused_by_the_other_within_a_second(fleet: Fleet) -> None:
    key_id, secret = fleet.create_key(fleet.a)
    with fleet.client(fleet.b, secret) as user:
        assert user.get("/v1/models").status_code == 200
        assert fleet.admin(fleet.a, "DELETE", f"/v1/auth/keys/{key_id}").status_code == 200
        revoked_at = time.monotonic()
        refused = user.get("/v1/models")
        assert refused.status_code == 401, refused.text
        assert time.monotonic() - revoked_at < 1.0
        assert refused.json()["error"]["code"] == "authentication_failed"


def test_the_burst_limit_holds_across_both_cores_together(fleet: Fleet) -> None:
    # The key's own 6 requests a minute under the fleet's burst limit of 5: one volley may pass at most 5
    # (6 if the burst bucket refills one in the meantime); two cores counting apart would pass 10.
    _, secret = fleet.create_key(fleet.a, rate_limit=6)
    targets = [fleet.a, fleet.b] * 6
    clients = {server.http_port: fleet.client(server, secret) for server in (fleet.a, fleet.b)}
    start = threading.Barrier(len(targets))

    def send(server: RunningServer) -> tuple[int, int]:
        start.wait()
        return server.http_port, clients[server.http_port].get("/v1/models").status_code

    try:
        with ThreadPoolExecutor(len(targets)) as pool:
            results = list(pool.map(send, targets))
    finally:
        for client in clients.values():
            client.close()
    statuses = [status for _, status in results]
    assert set(statuses) <= {200, 429}, statuses
    assert 5 <= statuses.count(200) <= 6, results
    refused_by = {port for port, status in results if status == 429}
    assert refused_by == {fleet.a.http_port, fleet.b.http_port}, results
    with fleet.client(fleet.b, secret) as user:
        refusal = user.get("/v1/models")
    assert refusal.status_code == 429 and refusal.headers["x-ratelimit-limit"] == "6"


def test_a_conversion_job_created_on_one_core_is_listed_on_the_other(fleet: Fleet) -> None:
    # Enough of a Hugging Face folder to be accepted; the job itself then fails on its empty weights.
    folder = fleet.root / "models" / "shared-source"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    (folder / "model.safetensors").write_bytes(b"")
    body = {"source_model": "shared-source", "target_format": "gguf"}
    created = fleet.admin(fleet.a, "POST", "/v1/convert", body)
    assert created.status_code == 201, created.text
    job_id = created.json()["job_id"]
    listed = fleet.admin(fleet.b, "GET", "/v1/convert")
    assert listed.status_code == 200, listed.text
    assert job_id in [job["job_id"] for job in listed.json()["data"]]
    assert fleet.admin(fleet.b, "GET", f"/v1/convert/{job_id}").json()["source_model"] == "shared-source"


def test_a_core_killed_right_after_creating_a_key_loses_nothing(fleet: Fleet) -> None:
    """Last in the module: core a does not come back."""
    key_id, secret = fleet.create_key(fleet.a)
    _kill_tree(fleet.a_process)
    with fleet.client(fleet.b, secret) as user:
        assert user.get("/v1/models").status_code == 200
    listed = fleet.admin(fleet.b, "GET", "/v1/auth/keys").json()["data"]
    assert key_id in [key["key_id"] for key in listed]


# --- the stores and limiters on their own ------------------------------------------------------------------


def test_the_schema_is_migrated_once_by_cores_starting_together(postgres_url: str) -> None:
    with ThreadPoolExecutor(4) as pool:
        databases = list(pool.map(lambda _: open_database(postgres_url, Path("/nonexistent")), range(4)))
    try:
        assert databases[0].query("SELECT version FROM schema_version") == [(len(MIGRATIONS),)]
    finally:
        for database in databases:
            database.close()


def test_keys_and_jobs_are_the_same_code_on_sqlite_and_postgresql(postgres_url: str, tmp_path: Path) -> None:
    for database in (open_sqlite(tmp_path / "inferno.db"), open_database(postgres_url, tmp_path)):
        keys = KeyStore(database, flush_every_s=3600)
        key, secret = keys.create("both", ("inference",), None, rate_limit=7)
        used = keys.authenticate(secret)
        assert used is not None and used.rate_limit == 7
        keys.flush()
        assert database.query_one("SELECT last_used FROM api_keys WHERE key_id = ?", (key.key_id,))[0]
        keys.revoke(key.key_id)
        assert keys.authenticate(secret) is None
        keys.close()
        job = _job("conv_" + secrets.token_hex(4))
        JobStore(database, owner="core-1").save(job)
        # Another core's start leaves the job alone; its own core's restart fails it.
        assert JobStore(database, owner="core-2").get(job.job_id) == job
        restarted = JobStore(database, owner="core-1").get(job.job_id)
        assert restarted is not None and restarted.status is JobStatus.FAILED
        database.close()


def _job(job_id: str) -> ConversionJob:
    return ConversionJob(
        job_id, "src", "gguf", "f16", JobStatus.PROCESSING, 10.0, time.time(), time.time(), None, "out.gguf"
    )


# conversion_jobs as releases before schema_version made it.
OLD_JOBS_TABLE = """
CREATE TABLE conversion_jobs (
    job_id TEXT PRIMARY KEY, source TEXT NOT NULL, target_format TEXT NOT NULL, quantization TEXT NOT NULL,
    status TEXT NOT NULL, progress REAL NOT NULL, created REAL NOT NULL, started REAL, finished REAL,
    output_file TEXT NOT NULL, source_bytes INTEGER NOT NULL DEFAULT 0,
    output_bytes INTEGER NOT NULL DEFAULT 0, error TEXT NOT NULL DEFAULT '', model_id TEXT NOT NULL DEFAULT ''
)
"""


def test_a_database_made_before_schema_versions_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "inferno.db"
    with sqlite3.connect(path) as old:
        old.execute(OLD_JOBS_TABLE)
        old.execute(
            "INSERT INTO conversion_jobs (job_id, source, target_format, quantization, status, progress, "
            "created, output_file) VALUES ('conv_old', 's', 'gguf', 'f16', 'processing', 5, 1, 'o.gguf')"
        )
    old.close()
    store = JobStore(path, owner="this-host:/data")
    restarted = store.get("conv_old")
    assert restarted is not None and restarted.status is JobStatus.FAILED  # a job from before owners
    store.close()
    with sqlite3.connect(path) as migrated:
        assert migrated.execute("SELECT version FROM schema_version").fetchone() == (len(MIGRATIONS),)
    migrated.close()


def test_two_cores_never_both_spend_the_last_token(redis_url: str) -> None:
    async def volley() -> list[bool]:
        cores = [Redis.from_url(redis_url), Redis.from_url(redis_url)]
        limiters = [RedisRateLimiter(client, "test", per_minute=10, burst=0) for client in cores]
        caller = "key:" + secrets.token_hex(4)
        decisions = await asyncio.gather(*(limiters[i % 2].take(caller) for i in range(40)))
        for client in cores:
            await client.aclose()
        return [decision.allowed for decision in decisions]

    assert asyncio.run(volley()).count(True) == 10


def test_stream_counts_are_shared_released_and_expire_with_a_dead_core(redis_url: str) -> None:
    async def scenario() -> None:
        client = Redis.from_url(redis_url)
        alive = RedisStreamSlots(client, lease_s=60)
        dying = RedisStreamSlots(client, lease_s=0.6)
        caller = "key:" + secrets.token_hex(4)
        held = await dying.acquire(caller, 2)
        first = await alive.acquire(caller, 2)
        assert held is not None and first is not None
        assert await alive.acquire(caller, 2) is None  # two open, across both cores
        alive.release(first)
        await asyncio.sleep(0.1)  # the release is written in the background
        second = await alive.acquire(caller, 2)
        assert second is not None
        assert await alive.acquire(caller, 2) is None
        await dying.close()  # the core dies: its stream is never released, its lease no longer renewed
        await asyncio.sleep(0.8)
        assert await alive.acquire(caller, 2) is not None
        await alive.close()
        await client.aclose()

    asyncio.run(scenario())


def test_a_stream_lease_is_renewed_while_the_stream_runs(redis_url: str) -> None:
    async def scenario() -> None:
        client = Redis.from_url(redis_url)
        slots = RedisStreamSlots(client, lease_s=0.6)
        caller = "key:" + secrets.token_hex(4)
        assert await slots.acquire(caller, 1) is not None
        await asyncio.sleep(1.5)  # longer than a lease: renewed every 0.2 s
        assert await slots.acquire(caller, 1) is None
        await slots.close()
        await client.aclose()

    asyncio.run(scenario())


def test_the_shared_state_settings_come_from_the_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "inferno.toml"
    config.write_text(
        '[security]\ndatabase_url = "postgresql://db/inferno"\nredis_url = "redis://cache:6379/0"\n'
    )
    loaded = load_security_config(config)
    assert (loaded.database_url, loaded.redis_url) == ("postgresql://db/inferno", "redis://cache:6379/0")
    monkeypatch.setenv("INFERNO_DATABASE_URL", "postgres://other/inferno")
    assert load_security_config(config).database_url == "postgres://other/inferno"
    monkeypatch.setenv("INFERNO_REDIS_URL", "mysql://nope")
    with pytest.raises(ConfigError, match="redis_url"):
        load_security_config(config)
