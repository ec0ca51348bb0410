"""POST /v1/models/{model_id}/load and /unload in the seed's shapes; ?stream=true streams load progress
as server-sent events: the core's coalesced updates (about ten a second), then a "loaded" event at 100."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from inferno.model_names import phase_name
from inferno.v1 import model_service_pb2

from .core_client import CORE
from .humanize import human_bytes
from .metrics import SERVED_MODEL
from .sse import EventStream


async def load_model(request: web.Request) -> web.StreamResponse:
    """Waits for the load and answers as the seed shows; ?stream=true sends an event per progress step."""
    core = request.app[CORE]
    model_id = request.match_info["model_id"]
    request[SERVED_MODEL] = model_id
    streaming = request.query.get("stream", "").lower() in ("1", "true", "yes")
    message = model_service_pb2.LoadModelRequest(model_id=model_id)
    events: EventStream | None = None
    async with core.stream(request, core.models.LoadModel, message) as updates:
        async for update in updates:
            if update.phase == model_service_pb2.LOAD_PHASE_READY:
                body = loaded_json(update)
                if events is None:
                    return web.json_response(body)
                await events.send({"type": "loaded", **body, "progress": 100.0})
                await events.close()
                return events.response
            if streaming:
                events = events or await EventStream.open(request)
                await events.send(progress_json(update))
    raise RuntimeError("the core's load stream ended without a READY message")


async def unload_model(request: web.Request) -> web.Response:
    core = request.app[CORE]
    model_id = request.match_info["model_id"]
    request[SERVED_MODEL] = model_id
    force = request.query.get("force", "").lower() in ("1", "true", "yes")
    reply = await core.unary(
        request, core.models.UnloadModel, model_service_pb2.UnloadModelRequest(model_id=model_id, force=force)
    )
    return web.json_response(
        {
            "status": "success",
            "message": "Model unloaded successfully",
            "model_id": reply.model_id,
            "cancelled_requests": reply.cancelled_requests,
        }
    )


def loaded_json(update: model_service_pb2.LoadModelResponse) -> dict[str, Any]:
    return {
        "status": "success",
        "message": "Model loaded successfully",
        "model_id": update.model_id,
        "backend": update.format,
        "memory_usage": human_bytes(update.memory_bytes),
    }


def progress_json(update: model_service_pb2.LoadModelResponse) -> dict[str, Any]:
    return {
        "type": "progress",
        "model_id": update.model_id,
        "status": "loading",
        "phase": phase_name(update.phase),
        "progress": round(update.percent, 1),
        "eta": f"{round(update.eta_seconds)}s" if update.HasField("eta_seconds") else None,
    }
