"""GET /ws: streamed chats over one WebSocket, as {"type", "id", "data"} JSON messages.

Client messages: "chat" (data is a chat completion body; streaming is implied), "cancel" (the id of a running
chat), "ping", "subscribe_metrics", "subscribe_models" and "unsubscribe" (the id of a subscription; see
ws_subscriptions.py). Replies: "chat_chunk" per streamed delta (the choice of the matching SSE chunk: role,
text, tool-call pieces, logprobs, finish_reason), then "chat_done" (finish_reason, usage), or "error"; "pong";
"metrics_update" and "model_status" per subscription; "unsubscribed". Each chat ends with exactly one
"chat_done" or "error"; a cancelled chat ends with "chat_done" whose finish_reason is "cancelled". Several
chats and subscriptions may run at once, one task each; closing the socket cancels them all.

Credentials: the upgrade request's Authorization header, or a first message {"type": "auth", "data":
{"api_key": "..."}} (or "token"), answered with "auth_ok" or an authentication_failed error. The core checks
them on every call the socket makes. Messages beyond the core's WebSocket rate (GetServerStatus's
websocket_limits, read when the socket opens: [security] ws_messages_per_second of the core) are refused with
rate_limit_exceeded; a message that does work is also a core call under the core's own rate limit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from inferno.errors import InfernoError, invalid_param
from inferno.v1 import admin_service_pb2, auth_service_pb2, inference_service_pb2

from .core_client import AUTHORIZATION, CORE
from .draining import DRAIN, shutting_down_error
from .metrics import METRICS
from .openai.requests import check_metadata_text, check_text, load_json_object, parse_chat_request
from .openai.responses import ChatChunkStream, finish_reason_name, usage_json
from .ws_subscriptions import metrics_updates, model_status_updates, parse_metrics_subscription

logger = logging.getLogger(__name__)

WS_MAX_MESSAGE_BYTES = 1024 * 1024
_HEARTBEAT_S = 30.0
_LIMITS_TIMEOUT_S = 10.0
_CLIENT_CLOSED = 499

ChatId = str | int
_MESSAGE_TYPES = ("auth", "chat", "cancel", "ping", "subscribe_metrics", "subscribe_models", "unsubscribe")
Frame = dict[str, Any]


async def websocket_endpoint(request: web.Request) -> web.WebSocketResponse:
    """GET /ws"""
    socket = web.WebSocketResponse(max_msg_size=WS_MAX_MESSAGE_BYTES, heartbeat=_HEARTBEAT_S)
    if not socket.can_prepare(request).ok:
        raise InfernoError("invalid_parameters", "GET /ws expects a WebSocket upgrade request")
    core = request.app[CORE]
    status = await core.unary(
        request,
        core.admin.GetServerStatus,
        admin_service_pb2.GetServerStatusRequest(),
        timeout=_LIMITS_TIMEOUT_S,
    )
    await socket.prepare(request)
    session = _ChatSession(request, socket, _MessageAllowance(status.websocket_limits))
    drain = request.app.get(DRAIN)
    if drain is not None:
        drain.add_stream(session)
    try:
        async for message in socket:
            if message.type is WSMsgType.TEXT:
                await session.handle(message.data)
            elif message.type is WSMsgType.BINARY:
                await session.send_error(None, InfernoError("invalid_json", "send JSON in text frames"))
            elif message.type is WSMsgType.ERROR:
                break
    finally:
        if drain is not None:
            drain.discard_stream(session)
        await session.cancel_all()
    return socket


def error_frame(chat_id: ChatId | None, error: InfernoError) -> Frame:
    return {"type": "error", "id": chat_id, "data": error.to_body()}


@dataclass
class ChatFrames:
    """Turns one chat's core stream messages into chat_chunk frames and its closing chat_done.

    Each chat_chunk's data is the choice of the SSE chunk the same message becomes (ChatChunkStream, the one
    place that shapes them): {"index", "delta" (role, content, tool_calls), "logprobs", "finish_reason"}, so
    a WebSocket client sees the role delta, text, tool-call pieces, log-probabilities and each choice's
    finish_reason exactly as an SSE client does. The usage SSE sends in its last chunk is in chat_done.
    """

    chat_id: ChatId
    model: str = ""
    finish_reason: str | None = None
    usage: dict[str, int] | None = None
    _stream: ChatChunkStream = field(
        default_factory=lambda: ChatChunkStream(include_usage=False), init=False, repr=False
    )

    def chunks(self, message: inference_service_pb2.StreamChatCompletionResponse) -> list[Frame]:
        self.model = message.model or self.model
        if message.HasField("usage"):
            self.usage = usage_json(message.usage)
        self.finish_reason = finish_reason_name(message.finish_reason) or self.finish_reason
        return [
            {"type": "chat_chunk", "id": self.chat_id, "data": choice}
            for chunk in self._stream.chunks(message)
            for choice in chunk["choices"]
        ]

    def done(self) -> Frame:
        data = {"finish_reason": self.finish_reason, "usage": self.usage}
        return {"type": "chat_done", "id": self.chat_id, "data": data}


class _ChatSession:
    """The running chats of one socket; sends from all of them go out one at a time."""

    def __init__(
        self, request: web.Request, socket: web.WebSocketResponse, allowance: _MessageAllowance
    ) -> None:
        self._request = request
        self._socket = socket
        self._allowance = allowance
        # Running chats by id, for "cancel"; a chat leaves it just before its last frame. _tasks holds every
        # task until it ends (the event loop keeps only weak references).
        self._chats: dict[ChatId, asyncio.Task[None]] = {}
        self._subscriptions: dict[ChatId, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._send_lock = asyncio.Lock()

    async def handle(self, text: str) -> None:
        """Act on one client message; every problem is answered with an error frame for that message, and
        the socket and its other chats go on. An unexpected exception is a bug: logged, and answered with
        internal_error."""
        chat_id: ChatId | None = None
        try:
            frame = load_json_object(text, what="message")
            if _is_chat_id(frame.get("id")):
                chat_id = frame["id"]
            # After the id is read, so an error about the text (even about the id) still names its chat.
            check_text(frame)
            kind = frame.get("type")
            self._allowance.take()
            if kind == "auth":
                await self._authenticate(chat_id, frame.get("data"))
                return
            if kind == "ping":
                await self._send({"type": "pong", "id": chat_id, "data": {}})
                return
            if kind not in _MESSAGE_TYPES:
                raise invalid_param(
                    "type", f"unknown message type {kind!r}; expected one of {', '.join(_MESSAGE_TYPES)}"
                )
            if chat_id is None:
                raise invalid_param("id", "'id' must be a non-empty string or an integer")
            if kind == "chat":
                self._start_chat(chat_id, frame.get("data"))
            elif kind == "cancel":
                await self._cancel_chat(chat_id)
            elif kind == "subscribe_metrics":
                subscription = parse_metrics_subscription(frame.get("data"))
                self._subscribe(chat_id, "metrics_update", metrics_updates(self._request, subscription))
            elif kind == "subscribe_models":
                self._subscribe(chat_id, "model_status", model_status_updates(self._request))
            else:
                await self._unsubscribe(chat_id)
        except InfernoError as error:
            await self.send_error(chat_id, error)
        except Exception:
            logger.exception("WebSocket message %r failed", chat_id)
            await self.send_error(chat_id, InfernoError("internal_error", "internal server error"))

    async def _authenticate(self, frame_id: ChatId | None, data: Any) -> None:
        secret = data.get("api_key") or data.get("token") if isinstance(data, dict) else None
        if not isinstance(secret, str) or not secret:
            raise invalid_param("data", '\'data\' must be an object like {"api_key": "..."}')
        check_metadata_text(secret, "data.api_key")
        core = self._request.app[CORE]
        self._request[AUTHORIZATION] = f"Bearer {secret}"
        try:
            user = await core.unary(
                self._request, core.auth.GetCurrentUser, auth_service_pb2.GetCurrentUserRequest()
            )
        except InfernoError:
            del self._request[AUTHORIZATION]
            raise
        data = {"user_id": user.user_id, "permissions": list(user.permissions)}
        await self._send({"type": "auth_ok", "id": frame_id, "data": data})

    async def send_error(self, chat_id: ChatId | None, error: InfernoError) -> None:
        await self._send(error_frame(chat_id, error))

    async def cancel_all(self) -> None:
        """Cancel every running chat (and so its gRPC call) and wait for them to end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    def busy(self) -> bool:
        """Whether a chat is running (a shutdown's grace period waits for chats, not for idle sockets)."""
        return bool(self._chats)

    async def end_for_shutdown(self, error: InfernoError) -> None:
        """End each running chat with an error frame, then close the socket with 1001 (going away)."""
        chats = dict(self._chats)
        for task in (*chats.values(), *self._subscriptions.values()):
            task.cancel()
        if self._tasks:
            # Chats that were sending their last frame finish it.
            await asyncio.wait(list(self._tasks), timeout=1.0)
        for chat_id, task in chats.items():
            if task.cancelled():
                await self.send_error(chat_id, error)
        await self._socket.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")

    def _subscribe(self, sub_id: ChatId, kind: str, updates: AsyncIterator[dict[str, Any]]) -> None:
        if sub_id in self._subscriptions or sub_id in self._chats:
            raise invalid_param("id", f"id {sub_id!r} is already in use on this socket")
        task = asyncio.create_task(self._run_subscription(sub_id, kind, updates))
        self._subscriptions[sub_id] = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_subscription(
        self, sub_id: ChatId, kind: str, updates: AsyncIterator[dict[str, Any]]
    ) -> None:
        try:
            async for data in updates:
                await self._send({"type": kind, "id": sub_id, "data": data})
        except InfernoError as error:
            self._subscriptions.pop(sub_id, None)
            await self.send_error(sub_id, error)

    async def _unsubscribe(self, sub_id: ChatId) -> None:
        task = self._subscriptions.pop(sub_id, None)
        if task is None:
            raise InfernoError("not_found", f"no subscription with id {sub_id!r}", {"param": "id"})
        task.cancel()
        await asyncio.wait([task])
        await self._send({"type": "unsubscribed", "id": sub_id, "data": {}})

    def _start_chat(self, chat_id: ChatId, data: Any) -> None:
        drain = self._request.app.get(DRAIN)
        if drain is not None and drain.draining:
            raise shutting_down_error()
        if chat_id in self._chats or chat_id in self._subscriptions:
            raise invalid_param("id", f"id {chat_id!r} is already in use on this socket")
        if not isinstance(data, dict):
            raise invalid_param("data", "'data' must be an object holding a chat completion body")
        chat = parse_chat_request(data)
        task = asyncio.create_task(self._run_chat(chat_id, chat.params))
        self._chats[chat_id] = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _cancel_chat(self, chat_id: ChatId) -> None:
        task = self._chats.pop(chat_id, None)
        if task is None:
            raise InfernoError("not_found", f"no running chat with id {chat_id!r}", {"param": "id"})
        task.cancel()
        await asyncio.wait([task])
        cancelled = {"finish_reason": "cancelled", "usage": None}
        await self._send({"type": "chat_done", "id": chat_id, "data": cancelled})

    async def _run_chat(self, chat_id: ChatId, params: inference_service_pb2.ChatCompletionParams) -> None:
        started = time.perf_counter()
        frames = ChatFrames(chat_id)
        status = _CLIENT_CLOSED
        core = self._request.app[CORE]
        message = inference_service_pb2.StreamChatCompletionRequest(params=params)
        try:
            async with core.stream(self._request, core.inference.StreamChatCompletion, message) as stream:
                async for reply in stream:
                    for frame in frames.chunks(reply):
                        await self._send(frame)
            last = frames.done()
            status = 200
        except InfernoError as error:
            last = error_frame(chat_id, error)
            status = error.kind.http_status
        except Exception:
            logger.exception("WebSocket chat %r failed", chat_id)
            last = error_frame(chat_id, InfernoError("internal_error", "internal server error"))
            status = 500
        finally:
            # Forgotten before the last frame goes out, so a cancel can no longer reach a finished chat.
            if self._chats.get(chat_id) is asyncio.current_task():
                del self._chats[chat_id]
            self._request.app[METRICS].observe("ws_chat", frames.model, status, time.perf_counter() - started)
        await self._send(last)

    async def _send(self, frame: Frame) -> None:
        """Send one frame; if the socket is gone, drop it (closing the socket cancels the chats).

        ASCII-escaped: an id echoed back may hold a lone surrogate, which UTF-8 cannot encode."""
        text = json.dumps(frame, separators=(",", ":"))
        async with self._send_lock:
            if self._socket.closed:
                return
            try:
                await self._socket.send_str(text)
            except ConnectionResetError:
                return


class _MessageAllowance:
    """One socket's token bucket, with the core's numbers; a rate of 0 lets every message through."""

    def __init__(self, limits: admin_service_pb2.WebSocketLimits) -> None:
        self._per_second = limits.messages_per_second
        self._burst = max(limits.message_burst, 1)
        self._tokens = float(self._burst)
        self._updated = time.monotonic()

    def take(self) -> None:
        if not self._per_second:
            return
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._per_second)
        self._updated = now
        if self._tokens < 1:
            raise InfernoError(
                "rate_limit_exceeded",
                f"at most {self._per_second} WebSocket messages per second are accepted",
                {"ws_messages_per_second": str(self._per_second)},
            )
        self._tokens -= 1


def _is_chat_id(value: Any) -> bool:
    if isinstance(value, str):
        return value != ""
    return isinstance(value, int) and not isinstance(value, bool)
