"""The core's composition root: builds the registry, the services and the grpc.aio server, and runs it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

from inferno.config import CoreOptions
from inferno.config_file import ManagementConfig, load_management_config, parse_duration, parse_size
from inferno.core.catalog import build_catalog, local_model_entry
from inferno.core.convert.jobs import JobRunner, JobStore
from inferno.core.database.base import Database
from inferno.core.database.heartbeat import HEARTBEAT_S, beat
from inferno.core.database.open import open_database
from inferno.core.drain import CoreDrain
from inferno.core.engines.factory import EngineFactory
from inferno.core.interceptors import CommandInterceptor, ErrorStatusInterceptor
from inferno.core.metrics import EngineMetrics
from inferno.core.model_manager import ManagerOptions, ModelManager
from inferno.core.responses.store import ResponseStore
from inferno.core.security.authenticator import Authenticator
from inferno.core.security.interceptor import AuthInterceptor, auth_failure_limiter
from inferno.core.security.jwt_verifier import JwtVerifier
from inferno.core.security.keystore import KeyStore
from inferno.core.security.rate_limiter import RateLimiter, WebSocketMessageRate
from inferno.core.security.redis_limits import SharedLimits
from inferno.core.services.admin import AdminServicer
from inferno.core.services.auth import AuthServicer
from inferno.core.services.conversion import ConversionServicer
from inferno.core.services.inference import InferenceServicer
from inferno.core.services.models import ModelServicer
from inferno.core.services.responses import ResponseServicer
from inferno.core.validation import RequestLimits
from inferno.engine_settings import EngineSettings
from inferno.errors import InfernoError
from inferno.grpc_binding import bind_grpc_port
from inferno.grpc_services import SERVICE_NAMES
from inferno.lifecycle import StartupError, shutdown_grace_s
from inferno.security_config import SecurityConfig, load_security_config
from inferno.v1 import (
    admin_service_pb2_grpc,
    auth_service_pb2_grpc,
    conversion_service_pb2_grpc,
    inference_service_pb2_grpc,
    model_service_pb2_grpc,
    response_service_pb2_grpc,
)

log = logging.getLogger(__name__)


async def serve_core(options: CoreOptions) -> None:
    """Loads the models, serves gRPC until SIGINT/SIGTERM, then drains and frees everything."""
    metrics_registry = CollectorRegistry()
    engine_metrics = EngineMetrics(metrics_registry)
    settings = options.engine
    config = management_config(options)
    security = load_security_config(options.config_path, options.security.overrides())
    security.check_bind(options.host)
    catalog = build_catalog(config, options.model_paths, settings, security.data_dir)
    manager = ModelManager(
        catalog,
        ManagerOptions(
            auto_load=config.auto_load,
            memory_budget_bytes=config.memory_budget_bytes,
            evict_idle=config.evict_idle,
        ),
        engine_metrics,
        EngineFactory(engine_metrics),
    )
    database = open_database(security.database_url, security.data_dir)
    log.info("API keys and conversion jobs are kept in %s", database.describe())
    shared = await SharedLimits.connect(security) if security.redis_url else None
    keys = KeyStore(database) if security.api_keys else None
    auth = AuthInterceptor(
        Authenticator(keys, _jwt_verifier(security), security.admin_key),
        shared.requests if shared else RateLimiter(security.rate_limit, security.burst_limit),
        security.max_concurrent_streams,
        shared.auth_failures if shared else auth_failure_limiter(security),
        shared.streams if shared else None,
        security.hop_secret,
    )
    if not auth.enabled:
        log.warning(
            "authentication is off: anyone who can reach %s:%d may call the core",
            options.host,
            options.grpc_port,
        )
    drain = CoreDrain()
    # The error interceptor is outermost, so refusals by the auth interceptor become statuses like any error.
    # grpcio sets SO_REUSEPORT by default, which lets a second core share the port and take half its
    # connections; off, a taken port is refused.
    server = grpc.aio.server(
        interceptors=[
            ErrorStatusInterceptor(engine_metrics.record_error),
            drain,
            CommandInterceptor(engine_metrics.record_command),
            auth,
        ],
        options=[
            ("grpc.so_reuseport", 0),
            # A message the gateway's body limit lets through (JSON becomes a smaller protobuf) must not be
            # refused by gRPC's 4 MiB default; direct gRPC callers get the same room.
            ("grpc.max_receive_message_length", security.max_body_bytes),
        ],
    )
    # Bound before any model loads, so a taken port is refused in a second rather than after the load.
    bind_grpc_port(server, options.host, options.grpc_port, security, "gRPC")
    limits = RequestLimits.from_security(security)
    inference_service_pb2_grpc.add_InferenceServiceServicer_to_server(
        InferenceServicer(manager, limits), server
    )
    auth_service_pb2_grpc.add_AuthServiceServicer_to_server(AuthServicer(keys), server)
    # This core among those sharing the database: stable across its restarts, so at start it fails the
    # stored responses and conversion jobs its last run left unfinished, and only those.
    core_identity = f"{socket.gethostname()}:{security.data_dir}"
    responses = ResponseStore(database, runner=core_identity)
    response_service_pb2_grpc.add_ResponseServiceServicer_to_server(
        ResponseServicer(manager, responses, limits), server
    )
    jobs = JobStore(database, owner=core_identity)
    runner = JobRunner(
        jobs,
        _registrar(manager, settings, asyncio.get_running_loop()),
        served_paths=lambda: [m.entry.path for m in manager.models()],
    )
    conversion_service_pb2_grpc.add_ConversionServiceServicer_to_server(
        ConversionServicer(runner, config.models_dirs), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(manager), server)
    admin_service_pb2_grpc.add_AdminServiceServicer_to_server(
        AdminServicer(manager, metrics_registry, WebSocketMessageRate.from_security(security)), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    try:
        await _load_at_start(manager)
    except StartupError:
        runner.close()
        await _close_state(keys, database, shared)
        raise
    await server.start()
    stopping = asyncio.Event()
    heartbeat = asyncio.create_task(_heartbeat(database, core_identity, responses, jobs, stopping))
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    address = f"{options.host}:{options.grpc_port}"
    log.info("inferno core serving %s on %s", ", ".join(manager.ids()), address)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    grace_s = shutdown_grace_s()
    log.info("inferno core shutting down (in-flight calls get %.0f s)", grace_s)
    # Health checks answer NOT_SERVING from now on (Envoy takes the core out of rotation) and new calls get
    # UNAVAILABLE (Envoy retries them on another core); calls still running when the grace ends are
    # cancelled, and their clients get UNAVAILABLE.
    await health_servicer.enter_graceful_shutdown()
    cut = await drain.drain(grace_s)
    if cut:
        log.warning("cancelling %d call(s) still running after the %.0f s grace period", cut, grace_s)
    await server.stop(0)
    stopping.set()
    await heartbeat  # its last write done before the database closes
    # Off the loop: a job finishing now registers its output through the loop (_registrar), and a loop
    # blocked waiting for that job would hold both until the registration timed out.
    await asyncio.to_thread(runner.close)
    await manager.close()
    await _close_state(keys, database, shared)


async def _heartbeat(
    database: Database, identity: str, responses: ResponseStore, jobs: JobStore, stopping: asyncio.Event
) -> None:
    """Every HEARTBEAT_S until stopping: this core is alive, and the stored responses and conversion jobs of
    cores that stopped are failed (core/database/heartbeat.py)."""

    def once() -> None:
        cutoff = beat(database, identity)
        responses.fail_abandoned(cutoff)
        jobs.fail_abandoned(cutoff)

    while not stopping.is_set():
        try:
            await asyncio.to_thread(once)
        except Exception:  # the database may be away for a while; the next beat tries again
            log.exception("could not write this core's heartbeat")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), HEARTBEAT_S)


async def _close_state(keys: KeyStore | None, database: Database, shared: SharedLimits | None) -> None:
    """Writes what the key store holds in memory, then closes the database and the Redis connection."""
    if keys is not None:
        keys.close()
    database.close()
    if shared is not None:
        await shared.close()


async def _load_at_start(manager: ModelManager) -> None:
    """The manager's load-at-start; a model that cannot load becomes one StartupError naming the setting."""
    try:
        await manager.start()
    except InfernoError as error:
        await manager.close()
        hint = _START_HINTS.get(error.code, "")
        raise StartupError(f"cannot load a model at start: {error.message}{hint}") from None


_START_HINTS = {
    "insufficient_memory": " (raise --memory-budget or [server] memory_budget in inferno.toml)",
    "model_load_failed": " (check --model, --models-dir and [[models]] in inferno.toml)",
}


def _registrar(
    manager: ModelManager, settings: EngineSettings, loop: asyncio.AbstractEventLoop
) -> Callable[[Path], str]:
    """Registers a conversion's output with the manager, on the event loop that owns it."""

    async def register(path: Path) -> str:
        return manager.register(local_model_entry(path, settings))

    return lambda path: asyncio.run_coroutine_threadsafe(register(path), loop).result(timeout=60)


def _jwt_verifier(security: SecurityConfig) -> JwtVerifier | None:
    if not security.jwt_enabled:
        return None
    return JwtVerifier(
        security.jwt_secret,
        security.jwt_public_key,
        security.jwt_jwks,
        security.jwt_issuer,
        security.jwt_audience,
        security.jwt_permissions_claim,
    )


def management_config(options: CoreOptions) -> ManagementConfig:
    """inferno.toml (when given) with the command line's flags on top."""
    config = load_management_config(options.config_path) if options.config_path else ManagementConfig()
    if options.models_dirs:
        config = replace(config, models_dirs=tuple(d.resolve() for d in options.models_dirs))
    if options.auto_load is not None:
        config = replace(config, auto_load=options.auto_load)
    if options.memory_budget is not None:
        config = replace(config, memory_budget_bytes=parse_size(options.memory_budget, "--memory-budget"))
    if options.evict_idle is not None:
        config = replace(config, evict_idle=options.evict_idle)
    if options.keep_alive is not None:
        config = replace(config, keep_alive_s=parse_duration(options.keep_alive, "--keep-alive"))
    return config
