"""GET /v1/models/{model_id}/status: the seed's model status document plus the engine's live figures."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from inferno.model_names import state_name
from inferno.v1 import model_service_pb2

from .core_client import CORE
from .humanize import human_bytes, iso_utc
from .metrics import SERVED_MODEL


async def model_status(request: web.Request) -> web.Response:
    """GET /v1/models/{model_id}/status"""
    core = request.app[CORE]
    model_id = request.match_info["model_id"]
    # One call: the reply carries the catalog entry (the seed's "backend" is its format).
    status = await core.unary(
        request, core.models.GetModelStatus, model_service_pb2.GetModelStatusRequest(model_id=model_id)
    )
    request[SERVED_MODEL] = status.model.id
    return web.json_response(model_status_json(status, status.model))


def model_status_json(
    status: model_service_pb2.GetModelStatusResponse, model: model_service_pb2.Model
) -> dict[str, Any]:
    stats = status.stats
    # Only a loaded model holds memory: null in every other state, where the estimate has its own field.
    memory = (
        human_bytes(status.memory_bytes) if status.state == model_service_pb2.MODEL_STATE_LOADED else None
    )
    return {
        "model_id": status.model_id,
        "status": state_name(status.state),
        "backend": model.format,
        "memory_usage": memory,
        "metrics": {
            "total_requests": stats.requests_total,
            "avg_latency_ms": _from_float32(stats.avg_latency_ms),
            "tokens_per_second": _from_float32(stats.tokens_per_second),
            "last_used": iso_utc(stats.last_used),
            "memory_usage": memory,
            "queue_depth": stats.waiting_sequences,
            "running_sequences": stats.running_sequences,
        },
        "progress": _from_float32(status.load_progress)
        if status.state == model_service_pb2.MODEL_STATE_LOADING
        else None,
        "error": status.error or None,
        "estimated_memory": human_bytes(model.estimated_memory_bytes),
        "load_seconds": _from_float32(status.load_seconds),
        "engine": {
            "name": status.engine,
            "device": status.device or None,
            "gpu_memory_used": human_bytes(status.gpu_memory_bytes) if status.gpu_memory_bytes else None,
            "running_sequences": stats.running_sequences,
            "waiting_sequences": stats.waiting_sequences,
            "decode_steps": stats.decode_steps,
            "max_sequences_per_step": stats.max_sequences_per_step,
            "last_step_sequences": stats.last_step_sequences,
            "kv_cache_usage": _from_float32(stats.kv_cache_usage),
            "max_parallel_sequences": stats.max_parallel_sequences,
            "prompt_tokens_total": stats.prompt_tokens_total,
            "generated_tokens_total": stats.generated_tokens_total,
        },
    }


def _from_float32(value: float) -> float:
    """A proto float as the shortest decimal it stands for: 45.2, not 45.20000076293945."""
    return float(f"{value:.7g}")
