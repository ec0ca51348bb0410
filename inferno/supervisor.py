"""`inferno serve`: runs the core and the gateway as two child processes and keeps them up."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from inferno.config import CoreOptions, GatewayOptions
from inferno.core_channel import sync_channel
from inferno.engine_settings import ENGINE_SETTINGS
from inferno.security_config import SecurityConfig, load_security_config

_CORE_READY_TIMEOUT_S = 600.0
_RESTART_LIMIT = 5
_RESTART_WINDOW_S = 60.0


@dataclass
class _Child:
    name: str
    command: list[str]
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.command)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        if not self.alive():
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def core_command(core: CoreOptions) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "inferno.cli",
        "core",
        "--host",
        core.host,
        "--grpc-port",
        str(core.grpc_port),
    ]
    for path in core.model_paths:
        command += ["--model", str(path)]
    # Resolved values, so the child runs with what the parent resolved whatever its environment says.
    for spec in ENGINE_SETTINGS:
        command += [spec.flag, str(getattr(core.engine, spec.name))]
    if core.config_path is not None:
        command += ["--config", str(core.config_path.resolve())]
    for directory in core.models_dirs:
        command += ["--models-dir", str(directory.resolve())]
    if core.auto_load is not None:
        command.append("--auto-load" if core.auto_load else "--no-auto-load")
    if core.evict_idle is not None:
        command.append("--evict-idle" if core.evict_idle else "--no-evict-idle")
    if core.memory_budget is not None:
        command += ["--memory-budget", core.memory_budget]
    if core.keep_alive is not None:
        command += ["--keep-alive", core.keep_alive]
    return command + core.security.arguments()


def gateway_command(gateway: GatewayOptions) -> list[str]:
    return [
        sys.executable,
        "-m",
        "inferno.cli",
        "gateway",
        "--core",
        gateway.core_address,
        "--host",
        gateway.host,
        "--port",
        str(gateway.port),
        *(["--config", str(gateway.config_path.resolve())] if gateway.config_path else []),
        *gateway.security.arguments(),
    ]


def _wait_for_core(address: str, security: SecurityConfig, core: _Child, stop: threading.Event) -> bool:
    deadline = time.monotonic() + _CORE_READY_TIMEOUT_S
    with sync_channel(address, security) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline and not stop.is_set() and core.alive():
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            except grpc.RpcError:
                pass
            stop.wait(0.3)
    return False


def serve(core: CoreOptions, gateway: GatewayOptions) -> int:
    """Starts both, restarts one that dies (at most 5 times a minute), stops both on SIGINT/SIGTERM."""
    security = load_security_config(core.config_path, core.security.overrides())
    security.check_bind(core.host)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    core_child = _Child("core", core_command(core))
    gateway_child = _Child("gateway", gateway_command(gateway))
    print(f"inferno: loading models in the core (gRPC {core.host}:{core.grpc_port}) ...", flush=True)
    core_child.start()
    if not _wait_for_core(gateway.core_address, security, core_child, stop):
        core_child.stop()
        if stop.is_set():
            return 0
        print("inferno: the core did not start; see its log above", file=sys.stderr, flush=True)
        return 1
    gateway_child.start()
    scheme = "https" if security.tls_enabled else "http"
    base = f"{scheme}://{gateway.host}:{gateway.port}"
    ws = f"{'wss' if security.tls_enabled else 'ws'}://{gateway.host}:{gateway.port}/ws"
    if not security.auth_enabled:
        print("inferno: authentication is off, so only loopback addresses are served", flush=True)
    print(
        f"inferno: serving\n  OpenAI API  {base}/v1\n  WebSocket   {ws}\n"
        f"  health      {base}/health\n  gRPC        {core.host}:{core.grpc_port}\nPress Ctrl-C to stop.",
        flush=True,
    )
    restarts: list[float] = []
    while not stop.wait(0.5):
        for child in (core_child, gateway_child):
            if child.alive():
                continue
            now = time.monotonic()
            restarts = [t for t in restarts if now - t < _RESTART_WINDOW_S] + [now]
            if len(restarts) > _RESTART_LIMIT:
                print(f"inferno: {child.name} keeps exiting; giving up", file=sys.stderr, flush=True)
                stop.set()
                break
            code = child.process.returncode if child.process else None
            print(f"inferno: {child.name} exited with {code}; restarting", file=sys.stderr, flush=True)
            child.start()
    print("inferno: shutting down", flush=True)
    gateway_child.stop()
    core_child.stop()
    return 1 if len(restarts) > _RESTART_LIMIT else 0
