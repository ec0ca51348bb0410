"""The gateway's shutdown drain: after SIGTERM new requests get 503, work in flight gets a grace period, and
streams still open when it ends get their protocol's final error event."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from aiohttp import web
from aiohttp.typedefs import Handler

from inferno.errors import InfernoError

from .errors import error_response

_POLL_S = 0.05


def shutting_down_error() -> InfernoError:
    """What a request or a stream gets from a gateway that is shutting down."""
    return InfernoError("core_unavailable", "the server is shutting down; retry shortly")


class OpenStream(Protocol):
    """A stream that can end itself with a final error event (an SSE response, a WebSocket session)."""

    def busy(self) -> bool:
        """Whether work is in flight that the grace period should wait for."""
        ...

    async def end_for_shutdown(self, error: InfernoError) -> None:
        """Send the protocol's final error event for whatever is in flight, then close."""
        ...


class Drain:
    """The gateway's requests in flight and open streams, and whether it is shutting down."""

    def __init__(self) -> None:
        self.draining = False
        self._requests = 0
        self._streams: set[OpenStream] = set()

    def add_stream(self, stream: OpenStream) -> None:
        self._streams.add(stream)

    def discard_stream(self, stream: OpenStream) -> None:
        self._streams.discard(stream)

    def _idle(self) -> bool:
        return self._requests == 0 and not any(stream.busy() for stream in self._streams)

    async def drain(self, grace_s: float) -> int:
        """Refuse new requests, wait up to grace_s for work in flight, then end every stream still open.
        Returns how many streams were ended early."""
        self.draining = True
        deadline = time.monotonic() + grace_s
        while not self._idle() and time.monotonic() < deadline:
            await asyncio.sleep(_POLL_S)
        streams = list(self._streams)
        early = sum(stream.busy() for stream in streams)
        if streams:
            await asyncio.gather(*(stream.end_for_shutdown(shutting_down_error()) for stream in streams))
        return early

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """503 while draining; otherwise counts the request in flight. /ws is counted by its session, so an
        idle socket does not hold the shutdown for the whole grace period."""
        if self.draining:
            return error_response(shutting_down_error(), request)
        if request.path == "/ws":
            return await handler(request)
        self._requests += 1
        try:
            return await handler(request)
        finally:
            self._requests -= 1


DRAIN = web.AppKey("drain", Drain)
