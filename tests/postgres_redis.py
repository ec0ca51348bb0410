"""A real PostgreSQL and a real Redis on free loopback ports, each in a temporary directory, for the tests of
state shared by a fleet of cores.

PostgreSQL refuses to run as root, so as root (CI) the cluster belongs to the `postgres` user the Debian
package creates and its commands run through runuser.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from tests.servers import free_port
from tests.system_packages import ensure_debian_packages

_START_TIMEOUT_S = 60.0


def _postgres_bin() -> Path:
    ensure_debian_packages(["postgresql"], binaries=["pg_ctlcluster"])
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        raise RuntimeError("the postgresql package is installed but no /usr/lib/postgresql/*/bin/initdb")
    return found[-1].parent


def _as_postgres(command: list[str]) -> list[str]:
    """command as the postgres user when we are root (PostgreSQL will not run as root)."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextlib.contextmanager
def running_postgres() -> Iterator[str]:
    """A fresh PostgreSQL cluster on 127.0.0.1 (trust authentication); yields its postgresql:// URL."""
    bin_dir = _postgres_bin()
    root = Path(tempfile.mkdtemp(prefix="inferno-postgres-"))
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
    data = root / "data"
    port = free_port()
    subprocess.run(
        _as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-N"]),
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {root}"
    subprocess.run(
        _as_postgres(
            [str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"]
        ),
        check=True,
        capture_output=True,
        timeout=_START_TIMEOUT_S,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
            capture_output=True,
            timeout=_START_TIMEOUT_S,
        )
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def running_redis() -> Iterator[str]:
    """A Redis server on 127.0.0.1 that keeps nothing on disk; yields its redis:// URL."""
    ensure_debian_packages(["redis-server"], binaries=["redis-server"])
    root = Path(tempfile.mkdtemp(prefix="inferno-redis-"))
    port = free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    with (root / "log").open("wb") as log:
        process = subprocess.Popen([*command, "--dir", str(root)], stdout=log, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        _wait_for_redis(url, process, root / "log")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(root, ignore_errors=True)


def _wait_for_redis(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {process.returncode}: {log.read_text()}")
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError(f"redis-server did not answer: {log.read_text()}")
    finally:
        client.close()
