"""OpenAI Responses handlers: create (whole or streamed as semantic SSE events), retrieve, delete, input
items and cancel, each one call of the core's ResponseService."""

from __future__ import annotations

import logging

from aiohttp import web

from inferno.errors import InfernoError
from inferno.v1 import response_service_pb2 as pb

from ..core_client import CORE
from ..metrics import SERVED_MODEL
from ..openai.requests import parse_json_object
from .events import ResponseEvents
from .render import deleted_json, input_items_json, response_json
from .requests import ResponsesRequest, parse_input_items_query, parse_responses_request
from .sse import ResponseEventStream, error_event

logger = logging.getLogger(__name__)


async def create_response(request: web.Request) -> web.StreamResponse:
    """POST /v1/responses"""
    parsed = parse_responses_request(parse_json_object(await request.read()))
    if parsed.stream:
        return await _stream_response(request, parsed)
    core = request.app[CORE]
    reply = await core.unary(
        request, core.responses.CreateResponse, pb.CreateResponseRequest(params=parsed.params)
    )
    request[SERVED_MODEL] = reply.response.model
    return web.json_response(response_json(reply.response))


async def get_response(request: web.Request) -> web.Response:
    """GET /v1/responses/{response_id}"""
    core = request.app[CORE]
    message = pb.GetResponseRequest(response_id=request.match_info["response_id"])
    reply = await core.unary(request, core.responses.GetResponse, message)
    return web.json_response(response_json(reply.response))


async def delete_response(request: web.Request) -> web.Response:
    """DELETE /v1/responses/{response_id}"""
    core = request.app[CORE]
    message = pb.DeleteResponseRequest(response_id=request.match_info["response_id"])
    reply = await core.unary(request, core.responses.DeleteResponse, message)
    return web.json_response(deleted_json(reply.response_id))


async def list_input_items(request: web.Request) -> web.Response:
    """GET /v1/responses/{response_id}/input_items"""
    core = request.app[CORE]
    reply = await core.unary(request, core.responses.ListResponseInputItems, parse_input_items_query(request))
    return web.json_response(input_items_json(reply.items, reply.has_more))


async def cancel_response(request: web.Request) -> web.Response:
    """POST /v1/responses/{response_id}/cancel"""
    core = request.app[CORE]
    message = pb.CancelResponseRequest(response_id=request.match_info["response_id"])
    reply = await core.unary(request, core.responses.CancelResponse, message)
    return web.json_response(response_json(reply.response))


async def _stream_response(request: web.Request, parsed: ResponsesRequest) -> web.StreamResponse:
    """Relay the core's stream as semantic events as each message arrives.

    As for chat streams (adapters/openai/routes.py) the status line waits for the first message, so a
    request the core refuses at once gets an ordinary JSON error with its status; a failure after that is a
    response.failed event. Leaving `async with` cancels the gRPC call, also when the client goes away.
    """
    core = request.app[CORE]
    call = pb.StreamResponseRequest(params=parsed.params)
    translator = ResponseEvents()
    async with core.stream(request, core.responses.StreamResponse, call) as stream:
        first = await anext(stream, None)
        if first is None:
            raise InfernoError("internal_error", "the core ended the stream before its first message")
        request[SERVED_MODEL] = first.created.model
        events = await ResponseEventStream.open(request)
        try:
            for event in translator.events(first):
                await events.send(event)
            async for message in stream:
                for event in translator.events(message):
                    await events.send(event)
        except InfernoError as error:
            await events.send(translator.failed_event(error))
        except ConnectionResetError:
            return events.response
        except Exception:
            logger.exception("stream to %s failed", request.path)
            await events.send(error_event(InfernoError("internal_error", "internal server error")))
        await events.close()
    return events.response
