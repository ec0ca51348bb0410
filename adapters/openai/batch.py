"""POST /v1/batch: the seed's batch of chat requests, sent to the core as one CreateBatch call.

Top-level fields are defaults for every item; an item's own fields win. An item that fails here (bad shape)
or in the core gets an error entry under its id; the others are unaffected. The core caps the items it takes
([security] max_batch_items) and refuses a larger batch whole; that error is the response.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from inferno.errors import InfernoError, details_from_metadata, invalid_param
from inferno.v1 import inference_service_pb2 as pb

from ..core_client import CORE
from .requests import parse_chat_request, parse_json_object
from .responses import chat_completion_json

JsonObject = dict[str, Any]


async def batch(request: web.Request) -> web.Response:
    """POST /v1/batch"""
    body = parse_json_object(await request.read())
    items = body.get("requests")
    if not isinstance(items, list) or not items:
        raise invalid_param("requests", "'requests' must be a non-empty array of chat requests")
    defaults = {k: v for k, v in body.items() if k != "requests"}
    entries: list[JsonObject | None] = []
    accepted: list[tuple[int, pb.BatchItem]] = []
    for index, item in enumerate(items):
        item_id, parsed = _parse_item(index, item, defaults)
        if isinstance(parsed, InfernoError):
            entries.append({"id": item_id, "error": parsed.to_body()["error"]})
        else:
            entries.append(None)
            accepted.append((index, pb.BatchItem(id=str(item_id), params=parsed)))
    if accepted:
        core = request.app[CORE]
        reply = await core.unary(
            request, core.inference.CreateBatch, pb.CreateBatchRequest(items=[i for _, i in accepted])
        )
        for (index, _item), result in zip(accepted, reply.results, strict=True):
            entries[index] = _result_json(items[index].get("id"), result)
    return web.json_response({"object": "batch_completion", "responses": entries})


def _parse_item(
    index: int, item: Any, defaults: JsonObject
) -> tuple[Any, pb.ChatCompletionParams | InfernoError]:
    if not isinstance(item, dict):
        return None, invalid_param(f"requests[{index}]", f"'requests[{index}]' must be an object")
    item_id = item.get("id")
    if not isinstance(item_id, str | int) or isinstance(item_id, bool):
        return None, invalid_param(
            f"requests[{index}].id", f"'requests[{index}].id' must be a string or an integer"
        )
    merged = {**defaults, **{k: v for k, v in item.items() if k != "id"}}
    if merged.get("stream"):
        return item_id, invalid_param(f"requests[{index}].stream", "batch items cannot stream")
    try:
        return item_id, parse_chat_request(merged).params
    except InfernoError as error:
        return item_id, error


def _result_json(item_id: Any, result: pb.BatchItemResult) -> JsonObject:
    if result.WhichOneof("outcome") == "error":
        error = InfernoError(
            result.error.code, result.error.message, details_from_metadata(result.error.details)
        )
        return {"id": item_id, "error": error.to_body()["error"]}
    return {**chat_completion_json(result.completion), "id": item_id}
