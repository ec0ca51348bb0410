"""GET /health: the core's health check and server status, in the fields of both seed documents."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from grpc_health.v1 import health_pb2

from inferno.errors import InfernoError
from inferno.v1 import admin_service_pb2

from .core_client import CORE
from .humanize import human_bytes, human_duration

_CORE_TIMEOUT_S = 5.0


async def health(request: web.Request) -> web.Response:
    """200 with the server status while the core serves; 503 {"status": "unhealthy", "reason"} otherwise."""
    core = request.app[CORE]
    try:
        check = await core.unary(
            request, core.health.Check, health_pb2.HealthCheckRequest(service=""), timeout=_CORE_TIMEOUT_S
        )
    except InfernoError as error:
        return _unhealthy(error.message)
    if check.status != health_pb2.HealthCheckResponse.SERVING:
        state = health_pb2.HealthCheckResponse.ServingStatus.Name(check.status)
        return _unhealthy(f"the inference core at {core.address} reports {state}")
    try:
        message = admin_service_pb2.GetServerStatusRequest()
        status = await core.unary(request, core.admin.GetServerStatus, message, timeout=_CORE_TIMEOUT_S)
    except InfernoError as error:
        if error.code != "core_unavailable":
            raise
        return _unhealthy(error.message)
    body = health_json(status)
    return web.json_response(body, status=503 if body["status"] == "unhealthy" else 200)


# System memory in use above which the server reports itself degraded.
DEGRADED_MEMORY_RATIO = 0.95


def health_verdict(status: admin_service_pb2.GetServerStatusResponse) -> tuple[str, str | None]:
    """healthy; degraded (serving, with a reason worth a look); unhealthy (cannot serve a request now)."""
    system = status.system
    if not status.models_loaded:
        if status.models_loading:
            return "unhealthy", f"no model is loaded yet; loading {', '.join(status.models_loading)}"
        return "unhealthy", "no model is loaded"
    reasons = []
    if status.models_failed:
        reasons.append(f"loading failed for {', '.join(status.models_failed)}")
    if status.models_loading:
        reasons.append(f"loading {', '.join(status.models_loading)}")
    if (
        system.memory_total_bytes
        and system.memory_used_bytes / system.memory_total_bytes > DEGRADED_MEMORY_RATIO
    ):
        reasons.append(f"system memory is over {DEGRADED_MEMORY_RATIO:.0%} used")
    return ("degraded", "; ".join(reasons)) if reasons else ("healthy", None)


def health_json(status: admin_service_pb2.GetServerStatusResponse) -> dict[str, Any]:
    """The seed's status/version/models_loaded/system plus the second seed's model/gpu_memory_used/
    uptime_seconds, and a reason unless healthy."""
    verdict, reason = health_verdict(status)
    system = status.system
    has_gpu_memory = system.HasField("gpu_memory_used_bytes")
    gpu_memory = human_bytes(system.gpu_memory_used_bytes) if has_gpu_memory else None
    return {
        "status": verdict,
        "reason": reason,
        "version": status.version,
        "models_loaded": list(status.models_loaded),
        "system": {
            "cpu_usage": round(system.cpu_percent, 1),
            "memory_usage": human_bytes(system.memory_used_bytes),
            "gpu_usage": round(system.gpu_percent, 1) if system.HasField("gpu_percent") else None,
            "uptime": human_duration(status.uptime_seconds),
        },
        "model": status.default_model or None,
        "gpu_memory_used": gpu_memory,
        "uptime_seconds": int(status.uptime_seconds),
        "gpu_unavailable_reason": system.gpu_unavailable_reason or None,
    }


def _unhealthy(reason: str) -> web.Response:
    return web.json_response({"status": "unhealthy", "reason": reason}, status=503)
