"""GET /tokenizer_info: a model's tokenizer settings in vLLM's shape (lm-evaluation-harness's remote
tokenizer reads eos_token, bos_token and chat_template from it)."""

from __future__ import annotations

from aiohttp import web

from inferno.v1 import inference_service_pb2

from ..core_client import CORE
from ..metrics import SERVED_MODEL
from .requests import optional_str
from .responses import JsonObject


async def tokenizer_info(request: web.Request) -> web.Response:
    """GET /tokenizer_info[?model=ID] (the default model when none is named)."""
    model = optional_str(request.query.get("model"), "model") or ""
    core = request.app[CORE]
    message = inference_service_pb2.GetTokenizerInfoRequest(model=model)
    reply = await core.unary(request, core.inference.GetTokenizerInfo, message)
    request[SERVED_MODEL] = reply.model
    return web.json_response(tokenizer_info_json(reply))


def tokenizer_info_json(reply: inference_service_pb2.GetTokenizerInfoResponse) -> JsonObject:
    """vLLM's TokenizerInfoResponse: tokenizer_class and the tokenizer's config fields."""
    body: JsonObject = {
        "tokenizer_class": reply.tokenizer_class,
        "model": reply.model,
        "bos_token": reply.bos_token if reply.HasField("bos_token") else None,
        "eos_token": reply.eos_token if reply.HasField("eos_token") else None,
        "add_bos_token": reply.add_bos_token,
        "add_eos_token": reply.add_eos_token,
        "model_max_length": reply.model_max_length,
        "vocab_size": reply.vocab_size,
    }
    if reply.chat_template:
        body["chat_template"] = reply.chat_template
    return body
