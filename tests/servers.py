"""Real `inferno serve` processes on free loopback ports, for fixtures and for tests that need their own."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx

STARTUP_TIMEOUT_S = 180.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class RunningServer:
    http_port: int
    grpc_port: int
    log_path: Path
    # The `inferno serve` supervisor; the core and the gateway are its children.
    pid: int = 0
    # The CA certificate to trust when the server speaks TLS.
    tls_ca: Path | None = None

    @property
    def base_url(self) -> str:
        scheme = "https" if self.tls_ca else "http"
        return f"{scheme}://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


_SERVING_BANNER = b"inferno: serving\n"


def _wait_until_healthy(server: RunningServer, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"inferno serve exited with {process.returncode}:\n{server.log_tail()}")
        try:
            verify = ssl.create_default_context(cafile=str(server.tls_ca)) if server.tls_ca else True
            healthy = httpx.get(server.base_url + "/health", timeout=2, verify=verify).status_code == 200
            # The banner: the supervisor has seen both children answer, so a child that dies from here on is
            # restarted rather than taken for one that did not start.
            if healthy and _SERVING_BANNER in server.log_path.read_bytes():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"inferno serve did not become healthy:\n{server.log_tail()}")


@contextlib.contextmanager
def inferno_process(
    *extra_args: str, tls_ca: Path | None = None, env: dict[str, str] | None = None
) -> Iterator[tuple[RunningServer, subprocess.Popen[bytes]]]:
    """`inferno serve` with extra_args on free ports, from a fresh directory, and its process (for tests that
    kill or signal it); SIGTERM at the end if it is still running."""
    log_dir = Path(tempfile.mkdtemp(prefix="inferno-test-"))
    running = RunningServer(free_port(), free_port(), log_dir / "serve.log", tls_ca=tls_ca)
    command = [
        sys.executable,
        "-m",
        "inferno.cli",
        "serve",
        "--port",
        str(running.http_port),
        "--grpc-port",
        str(running.grpc_port),
        *extra_args,
    ]
    with running.log_path.open("wb") as log:
        # cwd outside the checkout so the installed package is what runs.
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=log_dir,
            # A data directory of its own: keys, converted models and the like stay out of $HOME.
            env={**os.environ, "INFERNO_DATA_DIR": str(log_dir / "data"), **(env or {})},
        )
    try:
        _wait_until_healthy(running, process)
        yield replace(running, pid=process.pid), process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


@contextlib.contextmanager
def running_inferno(
    *extra_args: str, tls_ca: Path | None = None, env: dict[str, str] | None = None
) -> Iterator[RunningServer]:
    """`inferno serve` with extra_args on free ports, from a fresh directory; SIGTERM at the end."""
    with inferno_process(*extra_args, tls_ca=tls_ca, env=env) as (running, _process):
        yield running
