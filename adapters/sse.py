"""Server-sent events as OpenAI streams them: `data: <json>` events, ended by `data: [DONE]`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from inferno.errors import InfernoError

from .draining import DRAIN

DONE_EVENT = b"data: [DONE]\n\n"


def encode_event(data: Mapping[str, Any]) -> bytes:
    """One event holding data as single-line JSON (JSON escapes every newline inside strings)."""
    return b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def encode_named_event(data: Mapping[str, Any]) -> bytes:
    """One event named after data's "type" (`event: <type>`), as Anthropic's and the Responses API's streams
    frame them (their SDKs skip events without a name)."""
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"event: {data['type']}\ndata: {payload}\n\n".encode()


class EventStream:
    """An open text/event-stream response. Each send goes to the socket at once; nothing is batched.

    While open it is registered with the gateway's Drain: a shutdown whose grace period ends first sends the
    seed's error body as the last event, then [DONE], and cancels the handler.
    """

    def __init__(self, response: web.StreamResponse, request: web.Request | None = None) -> None:
        self.response = response
        self._ended = False
        self._handler = asyncio.current_task()
        self._drain = request.app.get(DRAIN) if request is not None else None
        if self._drain is not None:
            self._drain.add_stream(self)
            # A handler that ends without close() (the client went away) must not stay registered.
            if self._handler is not None:
                self._handler.add_done_callback(lambda _: self._end())

    @classmethod
    async def open(cls, request: web.Request) -> EventStream:
        """Send the 200 status and headers; after this, errors can only travel as events."""
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                # Tells nginx-style proxies not to hold events back.
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        return cls(response, request)

    async def send(self, data: Mapping[str, Any]) -> None:
        """Send one event; ConnectionResetError once the stream has ended (shut down or closed)."""
        if self._ended:
            raise ConnectionResetError("the event stream has ended")
        # write() hands the bytes to the transport now and waits for it to drain past its high-water mark.
        await self.response.write(self._encode(data))

    async def close(self) -> None:
        """Send the closing event ([DONE]) and end the response (nothing when it has already ended)."""
        if self._ended:
            return
        self._end()
        await self.response.write(self._closing())
        await self.response.write_eof()

    def busy(self) -> bool:
        return not self._ended

    async def end_for_shutdown(self, error: InfernoError) -> None:
        """The final error event and the closing event, then cancel the handler (and so its gRPC call)."""
        if self._ended:
            return
        self._end()
        try:
            await self.response.write(self._encode(self._error_event(error)) + self._closing())
            await self.response.write_eof()
        except (ConnectionResetError, RuntimeError):
            pass  # the client is gone or the handler finished the response meanwhile
        if self._handler is not None and self._handler is not asyncio.current_task():
            self._handler.cancel()

    # The framing, which other APIs' streams (Anthropic's, the Responses API's) override.

    def _encode(self, data: Mapping[str, Any]) -> bytes:
        return encode_event(data)

    def _closing(self) -> bytes:
        return DONE_EVENT

    def _error_event(self, error: InfernoError) -> Mapping[str, Any]:
        return error.to_body()

    def _end(self) -> None:
        self._ended = True
        if self._drain is not None:
            self._drain.discard_stream(self)
