"""`inferno serve`: runs the core and the gateway as two child processes and keeps them up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from inferno.config import CoreOptions, GatewayOptions
from inferno.core_channel import sync_channel
from inferno.engine_settings import ENGINE_SETTINGS
from inferno.inflight import INFLIGHT_FILE_ENV, RequestShape, read_inflight
from inferno.security_config import SecurityConfig, load_security_config

_CORE_READY_TIMEOUT_S = 600.0
_RESTART_LIMIT = 5
_RESTART_WINDOW_S = 60.0
# Two deaths by a signal in a decode step within this long: the next request would kill it again.
_CRASH_WINDOW_S = 600.0


class CrashLoopGuard:
    """Restarting a core that dies by a signal in a decode step runs into the same death on the next such
    request: after the second within _CRASH_WINDOW_S, the supervisor stops and says what killed it."""

    def __init__(self, window_s: float = _CRASH_WINDOW_S) -> None:
        self._window_s = window_s
        self._last: tuple[float, RequestShape] | None = None

    def check(self, returncode: int | None, shape: RequestShape | None, now: float) -> str | None:
        """None: restart the core. Otherwise why not, in one line."""
        if returncode is None or returncode >= 0 or shape is None:
            return None
        previous, self._last = self._last, (now, shape)
        if previous is None or now - previous[0] > self._window_s:
            return None
        serving = shape.describe()
        if previous[1] != shape:
            serving = f"{previous[1].describe()}, then {serving}"
        died = f"core died with {_signal_text(-returncode)}"
        return f"inferno: {died} twice while serving {serving}; not restarting"


def _signal_text(number: int) -> str:
    try:
        return f"{signal.Signals(number).name} (signal {number})"
    except ValueError:
        return f"signal {number}"


def _exit_text(code: int | None) -> str:
    return f"died with {_signal_text(-code)}" if code is not None and code < 0 else f"exited with {code}"


@dataclass
class _Child:
    name: str
    command: list[str]
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, env=self.env)

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
    handle, inflight_name = tempfile.mkstemp(prefix="inferno-inflight-", suffix=".json")
    os.close(handle)
    inflight = Path(inflight_name)
    try:
        core_env = {**os.environ, INFLIGHT_FILE_ENV: str(inflight)}
        core_child = _Child("core", core_command(core), env=core_env)
        gateway_child = _Child("gateway", gateway_command(gateway))
        print(f"inferno: loading models in the core (gRPC {core.host}:{core.grpc_port}) ...", flush=True)
        core_child.start()
        if not _wait_for_core(gateway.core_address, security, core_child, stop):
            core_child.stop()
            if stop.is_set():
                return 0
            print("inferno: the core did not start; see its log above", file=sys.stderr, flush=True)
            return 1
        _announce(core, gateway, security)
        return supervise(core_child, gateway_child, stop, inflight)
    finally:
        inflight.unlink(missing_ok=True)


def _announce(core: CoreOptions, gateway: GatewayOptions, security: SecurityConfig) -> None:
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


def supervise(core_child: _Child, gateway_child: _Child, stop: threading.Event, inflight: Path) -> int:
    """Starts the gateway and keeps both children up until stop is set: restarts one that dies (at most 5
    times a minute), but not a core that died by a signal in a decode step twice (CrashLoopGuard). Returns
    the exit status of `inferno serve`."""
    gateway_child.start()
    restarts: list[float] = []
    guard = CrashLoopGuard()
    failed = False
    while not failed and not stop.wait(0.5):
        for child in (core_child, gateway_child):
            if child.alive():
                continue
            now = time.monotonic()
            code = child.process.returncode if child.process else None
            shape = read_inflight(inflight) if child is core_child else None
            verdict = guard.check(code, shape, now)
            restarts = [t for t in restarts if now - t < _RESTART_WINDOW_S] + [now]
            if verdict is None and len(restarts) > _RESTART_LIMIT:
                verdict = f"inferno: {child.name} keeps exiting; giving up"
            if verdict is not None:
                print(verdict, file=sys.stderr, flush=True)
                failed = True
                break
            during = f" while serving {shape.describe()}" if shape is not None else ""
            print(
                f"inferno: {child.name} {_exit_text(code)}{during}; restarting", file=sys.stderr, flush=True
            )
            if child is core_child:
                inflight.write_bytes(b"")
            child.start()
    print("inferno: shutting down", flush=True)
    gateway_child.stop()
    core_child.stop()
    return 1 if failed else 0
