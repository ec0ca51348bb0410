"""GET /health: the core's health check, server status and health verdict, in the fields of both seed
documents."""

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


_VERDICTS = {
    admin_service_pb2.HEALTH_STATUS_HEALTHY: "healthy",
    admin_service_pb2.HEALTH_STATUS_DEGRADED: "degraded",
    admin_service_pb2.HEALTH_STATUS_UNHEALTHY: "unhealthy",
}


def health_json(status: admin_service_pb2.GetServerStatusResponse) -> dict[str, Any]:
    """The seed's status/version/models_loaded/system plus the second seed's model/gpu_memory_used/
    uptime_seconds, and a reason unless healthy. The verdict is the core's (core/health.py)."""
    verdict, reason = _verdict(status)
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
        "gpu": system.gpu_name or None,
        "cpu_path": system.cpu_path or None,
        "uptime_seconds": int(status.uptime_seconds),
        "gpu_unavailable_reason": system.gpu_unavailable_reason or None,
    }


def _verdict(status: admin_service_pb2.GetServerStatusResponse) -> tuple[str, str | None]:
    if status.health_status not in _VERDICTS:  # a core that gives no verdict is not known to be serving
        return "unhealthy", "the inference core gave no health verdict"
    return _VERDICTS[status.health_status], status.health_reason or None


def _unhealthy(reason: str) -> web.Response:
    return web.json_response({"status": "unhealthy", "reason": reason}, status=503)
