"""Real Envoy, `inferno core` and `inferno gateway` processes on free loopback ports, for the Envoy and fleet
tests: each started from a config or flags, waited on until it serves, and stopped at the end."""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from inferno.envoy_config import Address, CoreEndpoint, Topology, render_yaml
from tests.servers import RunningServer, free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class RunningEnvoy:
    listener_port: int
    admin_port: int
    log_path: Path
    # The certificate to trust when the listener speaks TLS.
    tls_ca: Path | None = None

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls_ca else 'http'}://127.0.0.1:{self.listener_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.listener_port}"

    def channel(self) -> grpc.Channel:
        if self.tls_ca is None:
            return grpc.insecure_channel(self.grpc_target)
        credentials = grpc.ssl_channel_credentials(root_certificates=self.tls_ca.read_bytes())
        return grpc.secure_channel(self.grpc_target, credentials)

    def http_client(self, timeout: float = 120) -> httpx.Client:
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(self.tls_ca)) if self.tls_ca else True
        )
        return httpx.Client(base_url=self.base_url, timeout=timeout, verify=verify)

    def stat(self, name: str) -> int:
        """One counter from the admin interface (0 when Envoy has not created it)."""
        text = httpx.get(f"{self.admin_url}/stats", params={"filter": f"^{name}$"}, timeout=10).text
        for line in text.splitlines():
            key, _, value = line.partition(": ")
            if key == name:
                return int(value)
        return 0


def _wait_for_envoy(envoy: RunningEnvoy, process: subprocess.Popen[bytes]) -> None:
    """Until /ready says LIVE: the clusters are initialised (one health check round done), listener open."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"envoy exited with {process.returncode}:\n{envoy.log_path.read_text()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{envoy.admin_url}/ready", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"envoy did not become ready in time:\n{envoy.log_path.read_text()}")


@contextlib.contextmanager
def envoy_process(envoy_bin: str, config_text: str, envoy: RunningEnvoy) -> Iterator[RunningEnvoy]:
    """Envoy running config_text (written beside its log), from the repo root: the default config names its
    descriptor set relative to it."""
    config = envoy.log_path.with_suffix(".yaml")
    config.write_text(config_text)
    with envoy.log_path.open("wb") as log:
        process = subprocess.Popen(
            [envoy_bin, "-c", str(config), "--disable-hot-restart", "--concurrency", "1", "-l", "warning"],
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_envoy(envoy, process)
        yield envoy
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


@contextlib.contextmanager
def envoy_in_front_of(envoy_bin: str, server: RunningServer, log_path: Path) -> Iterator[RunningEnvoy]:
    """Envoy on free ports, from the generated config for one `inferno serve`: its core and its gateway."""
    envoy = RunningEnvoy(free_port(), free_port(), log_path)
    topology = Topology(
        cores=(CoreEndpoint(Address("127.0.0.1", server.grpc_port)),),
        gateways=(Address("127.0.0.1", server.http_port),),
        listen=Address("127.0.0.1", envoy.listener_port),
        admin_port=envoy.admin_port,
    )
    with envoy_process(envoy_bin, render_yaml(topology), envoy):
        yield envoy


class InfernoProcess:
    """One `inferno core` or `inferno gateway` child, which the tests may signal, kill and start again on the
    same port."""

    def __init__(self, args: list[str], port: int, env: dict[str, str], tls_ca: Path | None = None) -> None:
        self.args = args
        self.port = port
        self.tls_ca = tls_ca
        self.workdir = Path(tempfile.mkdtemp(prefix="inferno-fleet-"))
        self._env = {**os.environ, "INFERNO_DATA_DIR": str(self.workdir / "data"), **env}
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.args[0]}-{self.starts}.log"

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def start(self) -> None:
        self.starts += 1
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "inferno.cli", *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=self._env,
            )

    def running(self) -> subprocess.Popen[bytes]:
        assert self.process is not None, "not started"
        return self.process

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def channel(self) -> grpc.Channel:
        target = f"127.0.0.1:{self.port}"
        if self.tls_ca is None:
            return grpc.insecure_channel(target)
        return grpc.secure_channel(target, grpc.ssl_channel_credentials(self.tls_ca.read_bytes()))

    def health(self, service: str = "inferno.v1.InferenceService") -> int:
        """The core's grpc.health.v1 answer for service."""
        with self.channel() as channel:
            request = health_pb2.HealthCheckRequest(service=service)
            return health_pb2_grpc.HealthStub(channel).Check(request, timeout=5).status

    def wait_serving(self) -> None:
        """A core: until its health check says SERVING."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.running().poll() is not None:
                raise RuntimeError(f"inferno {self.args[0]} exited:\n{self.log_tail()}")
            with contextlib.suppress(grpc.RpcError):
                if self.health() == health_pb2.HealthCheckResponse.SERVING:
                    return
            time.sleep(0.3)
        raise RuntimeError(f"inferno {self.args[0]} did not start serving:\n{self.log_tail()}")

    def wait_listening(self) -> None:
        """A gateway: until it answers HTTP (its /openapi.json needs no core)."""
        scheme = "https" if self.tls_ca else "http"
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(self.tls_ca)) if self.tls_ca else True
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.running().poll() is not None:
                raise RuntimeError(f"inferno {self.args[0]} exited:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                url = f"{scheme}://127.0.0.1:{self.port}/openapi.json"
                if httpx.get(url, timeout=2, verify=verify).status_code == 200:
                    return
            time.sleep(0.3)
        raise RuntimeError(f"inferno {self.args[0]} did not start listening:\n{self.log_tail()}")
