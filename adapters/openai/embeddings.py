"""POST /v1/embeddings in OpenAI's shape: input as a string, strings, token ids or token-id arrays;
encoding_format float or base64 (little-endian float32, as OpenAI sends it)."""

from __future__ import annotations

import base64
import struct
from typing import Any

from aiohttp import web

from inferno.errors import invalid_param
from inferno.v1 import inference_service_pb2

from ..core_client import CORE
from ..metrics import SERVED_MODEL
from .requests import optional_str, parse_json_object, parse_prompts, required_str, uint_field

_ENCODINGS = ("float", "base64")


async def embeddings(request: web.Request) -> web.Response:
    message, encoding = parse_embeddings_request(parse_json_object(await request.read()))
    core = request.app[CORE]
    reply = await core.unary(request, core.inference.CreateEmbeddings, message)
    request[SERVED_MODEL] = reply.model
    return web.json_response(embeddings_json(reply, encoding))


def parse_embeddings_request(
    body: dict[str, Any],
) -> tuple[inference_service_pb2.CreateEmbeddingsRequest, str]:
    """A /v1/embeddings body as CreateEmbeddingsRequest plus its encoding_format (float or base64)."""
    encoding = body.get("encoding_format") or "float"
    if encoding not in _ENCODINGS:
        raise invalid_param("encoding_format", "'encoding_format' must be float or base64")
    message = inference_service_pb2.CreateEmbeddingsRequest(
        model=required_str(body.get("model"), "model"),
        inputs=parse_prompts(body.get("input"), "input"),
        user=optional_str(body.get("user"), "user") or "",
    )
    if body.get("dimensions") is not None:
        message.dimensions = uint_field(body["dimensions"], "dimensions")
    return message, encoding


def embeddings_json(reply: inference_service_pb2.CreateEmbeddingsResponse, encoding: str) -> dict[str, Any]:
    def encoded(values: Any) -> list[float] | str:
        if encoding == "float":
            return list(values)
        return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()

    return {
        "object": "list",
        "data": [
            {"object": "embedding", "embedding": encoded(e.values), "index": e.index} for e in reply.data
        ],
        "model": reply.model,
        "usage": {"prompt_tokens": reply.usage.prompt_tokens, "total_tokens": reply.usage.total_tokens},
    }
