"""`inferno serve`: runs the core and the gateway as two child processes and keeps them up."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from inferno.config import CoreOptions, GatewayOptions
from inferno.core_channel import sync_channel
from inferno.engine_settings import ENGINE_SETTINGS
from inferno.gateway_grpc import gateway_environment
from inferno.inflight import INFLIGHT_FILE_ENV, RequestShape, read_inflight
from inferno.lifecycle import (
    EXIT_STARTUP_REFUSED,
    SUPERVISOR_PID_ENV,
    check_port_free,
    inferno_command,
    shutdown_grace_s,
)
from inferno.security_config import HOP_SECRET_ENV, SecurityConfig, load_security_config

_CORE_READY_TIMEOUT_S = 600.0
_GATEWAY_READY_TIMEOUT_S = 60.0
# A child's SIGTERM drain takes up to the grace period; this much more for freeing models and the like.
_STOP_MARGIN_S = 15.0
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
    # Whether the child answers (quick; for the recovery time after a restart).
    ready: Callable[[], bool] | None = None

    def start(self) -> None:
        # The child asks for SIGTERM when this process dies (inferno.lifecycle.die_with_parent).
        env = {**(self.env if self.env is not None else os.environ), SUPERVISOR_PID_ENV: str(os.getpid())}
        self.process = subprocess.Popen(self.command, env=env)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 20.0 + _STOP_MARGIN_S) -> None:
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
    command = inferno_command("core", "--host", core.host, "--grpc-port", str(core.grpc_port))
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
    return inferno_command(
        "gateway",
        "--core",
        gateway.core_address,
        "--host",
        gateway.host,
        "--port",
        str(gateway.port),
        *(["--config", str(gateway.config_path.resolve())] if gateway.config_path else []),
        *gateway.security.arguments(),
    )


def _core_answers(address: str, security: SecurityConfig, timeout: float = 1.0) -> bool:
    with sync_channel(address, security) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def _port_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _wait_until_ready(child: _Child, stop: threading.Event, timeout_s: float) -> bool:
    assert child.ready is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not stop.is_set() and child.alive():
        if child.ready():
            return child.alive()
        stop.wait(0.3)
    return False


def serve(core: CoreOptions, gateway: GatewayOptions) -> int:
    """Starts both, prints the banner once both answer, restarts one that dies (at most 5 times a minute),
    stops both on SIGINT/SIGTERM (each drains for the grace period) and returns 0. A port in use or a child
    that refuses to start stops it with one line and exit status 2; the children die with it."""
    security = load_security_config(core.config_path, core.security.overrides())
    security.check_bind(core.host)
    if security.hop_secret is None:
        # The two children share it through the environment: the core then believes the client addresses
        # the gateway forwards, and nobody else's (inferno/call_metadata.py).
        os.environ[HOP_SECRET_ENV] = secrets.token_hex(32)
    grace_s = shutdown_grace_s()
    # Checked here too so a taken port is one line before any model loads; the children check again.
    check_port_free(gateway.host, gateway.port, "HTTP")
    check_port_free(core.host, core.grpc_port, "gRPC")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    handle, inflight_name = tempfile.mkstemp(prefix="inferno-inflight-", suffix=".json")
    os.close(handle)
    inflight = Path(inflight_name)
    try:
        core_env = {**os.environ, INFLIGHT_FILE_ENV: str(inflight)}
        core_child = _Child(
            "core",
            core_command(core),
            env=core_env,
            ready=lambda: _core_answers(gateway.core_address, security),
        )
        gateway_child = _Child(
            "gateway",
            gateway_command(gateway),
            env=gateway_environment(os.environ),
            ready=lambda: _port_answers(gateway.host, gateway.port),
        )
        print(f"inferno: loading models in the core (gRPC {core.host}:{core.grpc_port}) ...", flush=True)
        for child, timeout_s in (
            (core_child, _CORE_READY_TIMEOUT_S),
            (gateway_child, _GATEWAY_READY_TIMEOUT_S),
        ):
            child.start()
            if _wait_until_ready(child, stop, timeout_s):
                continue
            status = _start_failed(child, stop)
            for started in (gateway_child, core_child):
                started.stop(grace_s + _STOP_MARGIN_S)
            return status
        _announce(core, gateway, security)
        return supervise(core_child, gateway_child, stop, inflight, grace_s)
    finally:
        inflight.unlink(missing_ok=True)


def _start_failed(child: _Child, stop: threading.Event) -> int:
    """The exit status of `inferno serve` when child did not come up; says why unless the child did."""
    if stop.is_set():
        return 0
    code = child.process.poll() if child.process else None
    if code == EXIT_STARTUP_REFUSED:
        return code  # the child printed its one line
    why = _exit_text(code) if code is not None else "did not answer in time"
    print(f"inferno: the {child.name} did not start ({why}); see its log above", file=sys.stderr, flush=True)
    return 1


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


def supervise(
    core_child: _Child,
    gateway_child: _Child,
    stop: threading.Event,
    inflight: Path,
    grace_s: float = 20.0,
) -> int:
    """Starts the gateway (unless started) and keeps both children up until stop is set: restarts one that
    dies (at most 5 times a minute) and says how long it took to answer again, but not a child that refused
    to start (exit status 2) nor a core that died by a signal in a decode step twice (CrashLoopGuard).
    Returns the exit status of `inferno serve`."""
    if gateway_child.process is None:
        gateway_child.start()
    restarts: list[float] = []
    guard = CrashLoopGuard()
    # Restarted children not yet answering, with when their death was seen.
    recovering: dict[str, float] = {}
    status = 0
    while not status and not stop.wait(0.5):
        for child in (core_child, gateway_child):
            if child.alive():
                _report_recovery(child, recovering)
                continue
            now = time.monotonic()
            code = child.process.returncode if child.process else None
            if code == EXIT_STARTUP_REFUSED:
                status = code  # the child printed why; a restart would refuse the same way
                break
            shape = read_inflight(inflight) if child is core_child else None
            verdict = guard.check(code, shape, now)
            restarts = [t for t in restarts if now - t < _RESTART_WINDOW_S] + [now]
            if verdict is None and len(restarts) > _RESTART_LIMIT:
                verdict = f"inferno: {child.name} keeps exiting; giving up"
            if verdict is not None:
                print(verdict, file=sys.stderr, flush=True)
                status = 1
                break
            during = f" while serving {shape.describe()}" if shape is not None else ""
            print(
                f"inferno: {child.name} {_exit_text(code)}{during}; restarting", file=sys.stderr, flush=True
            )
            if child is core_child:
                inflight.write_bytes(b"")
            child.start()
            recovering.setdefault(child.name, now)
    print("inferno: shutting down", flush=True)
    # The gateway first: its streams drain while the core still serves them.
    gateway_child.stop(grace_s + _STOP_MARGIN_S)
    core_child.stop(grace_s + _STOP_MARGIN_S)
    return status


def _report_recovery(child: _Child, recovering: dict[str, float]) -> None:
    """Once a restarted child answers: one line with the time from its death to answering again."""
    since = recovering.get(child.name)
    if since is None or child.ready is None or not child.ready():
        return
    del recovering[child.name]
    print(f"inferno: {child.name} recovered in {time.monotonic() - since:.1f} s", file=sys.stderr, flush=True)
