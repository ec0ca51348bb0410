"""Anthropic Messages handlers: POST /v1/messages (whole or streamed) and /v1/messages/count_tokens.

Both are mappings of existing RPCs: a message is a chat completion (CreateChatCompletion, or
StreamChatCompletion when stream is true) and a token count is Tokenize, or a one-token chat completion when
tools are given, since only the chat RPC renders tool definitions into the prompt.
"""

from __future__ import annotations

import logging

from aiohttp import web

from inferno.errors import InfernoError
from inferno.v1 import inference_service_pb2

from ..core_client import CORE
from ..metrics import SERVED_MODEL
from ..openai.requests import parse_json_object
from .errors import anthropic_error_body, with_anthropic_errors
from .requests import MessagesRequest, parse_count_tokens_request, parse_messages_request
from .responses import MessageEvents, count_tokens_json, message_json
from .sse import MessageEventStream

logger = logging.getLogger(__name__)


@with_anthropic_errors
async def messages(request: web.Request) -> web.StreamResponse:
    """POST /v1/messages"""
    message = parse_messages_request(parse_json_object(await request.read()))
    if message.stream:
        return await _stream_message(request, message)
    core = request.app[CORE]
    reply = await core.unary(
        request,
        core.inference.CreateChatCompletion,
        inference_service_pb2.CreateChatCompletionRequest(params=message.params),
    )
    request[SERVED_MODEL] = reply.model
    return web.json_response(message_json(reply, message.stop_sequences))


@with_anthropic_errors
async def count_tokens(request: web.Request) -> web.Response:
    """POST /v1/messages/count_tokens"""
    count = parse_count_tokens_request(parse_json_object(await request.read()))
    core = request.app[CORE]
    if count.tokenize is not None:
        tokens = await core.unary(request, core.inference.Tokenize, count.tokenize)
        return web.json_response(count_tokens_json(tokens.count))
    reply = await core.unary(
        request,
        core.inference.CreateChatCompletion,
        inference_service_pb2.CreateChatCompletionRequest(params=count.chat),
    )
    request[SERVED_MODEL] = reply.model
    return web.json_response(count_tokens_json(reply.usage.prompt_tokens))


async def _stream_message(request: web.Request, message: MessagesRequest) -> web.StreamResponse:
    """Relay the core's stream as Anthropic's events as each message arrives.

    As for OpenAI streams (adapters/openai/routes.py), the status line waits for the first message, so a
    request the core refuses at once gets an ordinary JSON error with its status; later failures arrive as
    an error event. Leaving `async with` cancels the gRPC call, also when the client goes away.
    """
    core = request.app[CORE]
    call = inference_service_pb2.StreamChatCompletionRequest(params=message.params)
    translator = MessageEvents(message.stop_sequences)
    async with core.stream(request, core.inference.StreamChatCompletion, call) as stream:
        first = await anext(stream, None)
        if first is None:
            raise InfernoError("internal_error", "the core ended the stream before its first message")
        request[SERVED_MODEL] = first.model
        events = await MessageEventStream.open(request)
        try:
            for event in translator.events(first):
                await events.send(event)
            async for reply in stream:
                for event in translator.events(reply):
                    await events.send(event)
            for event in translator.final_events():
                await events.send(event)
        except InfernoError as error:
            await events.send(anthropic_error_body(error))
        except ConnectionResetError:
            return events.response
        except Exception:
            logger.exception("stream to %s failed", request.path)
            await events.send(anthropic_error_body(InfernoError("internal_error", "internal server error")))
        await events.close()
    return events.response
