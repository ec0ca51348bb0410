"""Session fixtures: one real `inferno serve` (core + gateway) on free loopback ports for the whole suite."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import httpx
import pytest
from openai import OpenAI

from inferno.core.embedded import embedded_model_path
from inferno.v1 import model_service_pb2_grpc

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

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _wait_until_healthy(server: RunningServer, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"inferno serve exited with {process.returncode}:\n{server.log_tail()}")
        try:
            if httpx.get(server.base_url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"inferno serve did not become healthy:\n{server.log_tail()}")


@contextlib.contextmanager
def running_inferno(*extra_args: str) -> Iterator[RunningServer]:
    """`inferno serve` with extra_args on free ports, from a fresh directory; SIGTERM at the end."""
    log_dir = Path(tempfile.mkdtemp(prefix="inferno-test-"))
    running = RunningServer(free_port(), free_port(), log_dir / "serve.log")
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
            command, stdout=log, stderr=subprocess.STDOUT, cwd=log_dir, env=os.environ.copy()
        )
    try:
        _wait_until_healthy(running, process)
        yield replace(running, pid=process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="session")
def server() -> Iterator[RunningServer]:
    """`inferno serve` on the embedded model, started once for the whole suite."""
    with running_inferno() as running:
        yield running


@pytest.fixture(scope="session")
def openai_client(server: RunningServer) -> OpenAI:
    return OpenAI(base_url=server.base_url + "/v1", api_key="not-needed", max_retries=0, timeout=120)


@pytest.fixture(scope="session")
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=120) as client:
        yield client


@pytest.fixture(scope="session")
def grpc_channel(server: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.grpc_target) as channel:
        yield channel


@pytest.fixture(scope="session")
def model_id(http: httpx.Client) -> str:
    return str(http.get("/v1/models").json()["data"][0]["id"])


MANAGED_CONFIG = """
[server]
models_dirs = ["models"]

[[models]]
id = "second"
path = "second.gguf"
context_length = 512
parallel = 2

[[models]]
id = "broken"
path = "broken.gguf"
"""


@pytest.fixture(scope="session")
def managed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """`inferno serve --config` with the embedded model (loaded), a copy of it as "second" (not loaded) and a
    corrupt GGUF file as "broken"."""
    root = tmp_path_factory.mktemp("managed")
    (root / "models").mkdir()
    shutil.copy(embedded_model_path(), root / "models" / "second.gguf")
    (root / "models" / "broken.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 4096)
    (root / "inferno.toml").write_text(MANAGED_CONFIG)
    config = str(root / "inferno.toml")
    with running_inferno("--config", config, "--parallel", "2", "--ctx-size", "512") as running:
        yield running


@pytest.fixture(scope="session")
def managed_http(managed_server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=managed_server.base_url, timeout=120) as client:
        yield client


@pytest.fixture(scope="session")
def models_stub(managed_server: RunningServer) -> Iterator[model_service_pb2_grpc.ModelServiceStub]:
    with grpc.insecure_channel(managed_server.grpc_target) as channel:
        yield model_service_pb2_grpc.ModelServiceStub(channel)
