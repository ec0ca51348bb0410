"""OpenAI-compatible handlers: chat and text completions (whole or streamed as SSE) and models."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from inferno.errors import InfernoError
from inferno.v1 import inference_service_pb2, model_service_pb2

from ..core_client import CORE, CoreStream
from ..ignored_fields import IGNORED_FIELDS
from ..metrics import SERVED_MODEL
from ..sse import EventStream
from .requests import (
    parse_chat_request,
    parse_completion_request,
    parse_detokenize_request,
    parse_json_object,
    parse_tokenize_request,
)
from .responses import (
    ChatChunkStream,
    ChunkStream,
    CompletionChunkStream,
    chat_completion_json,
    completion_json,
    detokenize_json,
    model_json,
    model_list_json,
    tokenize_json,
)

logger = logging.getLogger(__name__)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """POST /v1/chat/completions"""
    chat = parse_chat_request(parse_json_object(await request.read()))
    request[IGNORED_FIELDS] = chat.ignored_fields
    core = request.app[CORE]
    if chat.stream:
        message = inference_service_pb2.StreamChatCompletionRequest(params=chat.params)
        stream = core.stream(request, core.inference.StreamChatCompletion, message)
        return await _stream_events(request, stream, ChatChunkStream(chat.include_usage))
    reply = await core.unary(
        request,
        core.inference.CreateChatCompletion,
        inference_service_pb2.CreateChatCompletionRequest(params=chat.params),
    )
    request[SERVED_MODEL] = reply.model
    return web.json_response(chat_completion_json(reply))


async def completions(request: web.Request) -> web.StreamResponse:
    """POST /v1/completions"""
    completion = parse_completion_request(parse_json_object(await request.read()))
    request[IGNORED_FIELDS] = completion.ignored_fields
    core = request.app[CORE]
    if completion.stream:
        message = inference_service_pb2.StreamCompletionRequest(params=completion.params)
        stream = core.stream(request, core.inference.StreamCompletion, message)
        return await _stream_events(request, stream, CompletionChunkStream(completion.include_usage))
    reply = await core.unary(
        request,
        core.inference.CreateCompletion,
        inference_service_pb2.CreateCompletionRequest(params=completion.params),
    )
    request[SERVED_MODEL] = reply.model
    return web.json_response(completion_json(reply))


async def tokenize(request: web.Request) -> web.Response:
    """POST /v1/tokenize and POST /tokenize"""
    message = parse_tokenize_request(parse_json_object(await request.read()))
    core = request.app[CORE]
    return web.json_response(tokenize_json(await core.unary(request, core.inference.Tokenize, message)))


async def detokenize(request: web.Request) -> web.Response:
    """POST /v1/detokenize and POST /detokenize"""
    message = parse_detokenize_request(parse_json_object(await request.read()))
    core = request.app[CORE]
    return web.json_response(detokenize_json(await core.unary(request, core.inference.Detokenize, message)))


async def list_models(request: web.Request) -> web.Response:
    """GET /v1/models"""
    core = request.app[CORE]
    reply = await core.unary(request, core.models.ListModels, model_service_pb2.ListModelsRequest())
    return web.json_response(model_list_json(reply))


async def get_model(request: web.Request) -> web.Response:
    """GET /v1/models/{model_id}"""
    core = request.app[CORE]
    message = model_service_pb2.GetModelRequest(model_id=request.match_info["model_id"])
    reply = await core.unary(request, core.models.GetModel, message)
    request[SERVED_MODEL] = reply.model.id
    return web.json_response(model_json(reply.model))


async def _stream_events(
    request: web.Request, stream: CoreStream[Any], chunks: ChunkStream[Any]
) -> web.StreamResponse:
    """Relay a core stream as SSE, one event per chunk as each message arrives.

    The status line waits for the first message, so a request the core refuses at once (unknown model,
    prompt too long) gets an ordinary JSON error with its status. Later failures arrive as an error event
    followed by [DONE]. If the client goes away the handler is cancelled and leaving `async with`
    cancels the gRPC call.
    """
    async with stream:
        first = await anext(stream, None)
        if first is not None:
            request[SERVED_MODEL] = first.model
        events = await EventStream.open(request)
        try:
            if first is not None:
                for chunk in chunks.chunks(first):
                    await events.send(chunk)
                async for message in stream:
                    for chunk in chunks.chunks(message):
                        await events.send(chunk)
                for chunk in chunks.final_chunks():
                    await events.send(chunk)
        except InfernoError as error:
            await events.send(error.to_body())
        except ConnectionResetError:
            return events.response
        except Exception:
            logger.exception("stream to %s failed", request.path)
            await events.send(InfernoError("internal_error", "internal server error").to_body())
        await events.close()
    return events.response
