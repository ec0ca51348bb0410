"""POST /v1/batch: the seed's batch of chat (`messages`) and completion (`prompt`) requests, sent to the core
as one CreateBatch call.

Top-level fields are defaults for every item; an item's own fields win. An item that fails here (bad shape)
or in the core gets an error entry under its id; the others are unaffected. What is wrong with the batch as a
whole is the response, with its own status: a body that is not a batch (400), no model (400), a model the
core cannot serve (404 model_not_found and the like), more items than [security] max_batch_items (400).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from inferno.errors import InfernoError, details_from_metadata, invalid_param
from inferno.v1 import inference_service_pb2 as pb

from ..core_client import CORE
from .requests import optional_str, parse_chat_request, parse_completion_request, parse_json_object
from .responses import chat_completion_json, completion_json

JsonObject = dict[str, Any]


async def batch(request: web.Request) -> web.Response:
    """POST /v1/batch"""
    parsed = parse_batch_request(parse_json_object(await request.read()))
    # Called even when every item failed here: the batch's own errors (its model) come first.
    core = request.app[CORE]
    reply = await core.unary(request, core.inference.CreateBatch, parsed.message)
    entries = parsed.entries
    for (index, item_id), result in zip(parsed.accepted, reply.results, strict=True):
        entries[index] = _result_json(item_id, result)
    return web.json_response({"object": "batch_completion", "responses": entries})


@dataclass
class BatchRequest:
    """A parsed batch: the CreateBatch message of the items that parsed, the response entries so far (an
    error entry for each item that did not, None where the core's result goes) and, per accepted item, its
    index in entries and its id."""

    message: pb.CreateBatchRequest
    entries: list[JsonObject | None]
    accepted: list[tuple[int, Any]]


def parse_batch_request(body: JsonObject) -> BatchRequest:
    """A /v1/batch body; what is wrong with the batch as a whole raises, what is wrong with one item is that
    item's error entry."""
    items = body.get("requests")
    if not isinstance(items, list) or not items:
        raise invalid_param("requests", "'requests' must be a non-empty array of chat or completion requests")
    # Missing or empty is the core's to refuse (gRPC callers meet the same check); a wrong type is JSON shape.
    model = optional_str(body.get("model"), "model") or ""
    defaults = {k: v for k, v in body.items() if k != "requests"}
    message = pb.CreateBatchRequest(model=model)
    entries: list[JsonObject | None] = []
    accepted: list[tuple[int, Any]] = []
    for index, item in enumerate(items):
        item_id, parsed = _parse_item(index, item, defaults)
        if isinstance(parsed, InfernoError):
            entries.append({"id": item_id, "error": parsed.to_body()["error"]})
        else:
            entries.append(None)
            accepted.append((index, item_id))
            message.items.append(parsed)
    return BatchRequest(message, entries, accepted)


def _parse_item(index: int, item: Any, defaults: JsonObject) -> tuple[Any, pb.BatchItem | InfernoError]:
    """The item as a BatchItem: a completion when it (or the defaults) has 'prompt', else a chat request."""
    where = f"requests[{index}]"
    if not isinstance(item, dict):
        return None, invalid_param(where, f"'{where}' must be an object")
    item_id = item.get("id")
    if not isinstance(item_id, str | int) or isinstance(item_id, bool):
        return None, invalid_param(f"{where}.id", f"'{where}.id' must be a string or an integer")
    merged = {**defaults, **{k: v for k, v in item.items() if k != "id"}}
    if merged.get("stream"):
        return item_id, invalid_param(f"{where}.stream", "batch items cannot stream")
    if "prompt" in merged and "messages" in merged:
        return item_id, invalid_param(
            where, f"'{where}' has both 'messages' (chat) and 'prompt' (completion); give one"
        )
    try:
        if "prompt" in merged:
            completion = parse_completion_request(merged).params
            return item_id, pb.BatchItem(id=str(item_id), completion_params=completion)
        return item_id, pb.BatchItem(id=str(item_id), params=parse_chat_request(merged).params)
    except InfernoError as error:
        return item_id, error


def _result_json(item_id: Any, result: pb.BatchItemResult) -> JsonObject:
    outcome = result.WhichOneof("outcome")
    if outcome == "error":
        error = InfernoError(
            result.error.code, result.error.message, details_from_metadata(result.error.details)
        )
        return {"id": item_id, "error": error.to_body()["error"]}
    if outcome == "text_completion":
        return {**completion_json(result.text_completion), "id": item_id}
    return {**chat_completion_json(result.completion), "id": item_id}
