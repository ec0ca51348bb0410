"""Server-sent events as OpenAI's Responses stream them: `event: <type>` and `data: <json>` with a
sequence_number on every event, and no [DONE]."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from inferno.errors import InfernoError

from ..sse import EventStream


class ResponseEventStream(EventStream):
    """The gateway's event stream (each event sent at once, registered with the Drain) in the Responses
    framing. Open it with ResponseEventStream.open(request)."""

    def __init__(self, response: web.StreamResponse, request: web.Request | None = None) -> None:
        super().__init__(response, request)
        self._sequence = 0

    async def send(self, data: Mapping[str, Any]) -> None:
        if not self.busy():
            raise ConnectionResetError("the event stream has ended")
        await self.response.write(self._encode(data))

    async def close(self) -> None:
        if not self.busy():
            return
        self._end()
        await self.response.write_eof()

    async def end_for_shutdown(self, error: InfernoError) -> None:
        """An error event, then cancel the handler (and so its gRPC call)."""
        if not self.busy():
            return
        self._end()
        try:
            await self.response.write(self._encode(error_event(error)))
            await self.response.write_eof()
        except (ConnectionResetError, RuntimeError):
            pass  # the client is gone or the handler finished the response meanwhile
        if self._handler is not None and self._handler is not asyncio.current_task():
            self._handler.cancel()

    def _encode(self, data: Mapping[str, Any]) -> bytes:
        event = {**data, "sequence_number": self._sequence}
        self._sequence += 1
        payload = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
        return f"event: {data['type']}\ndata: {payload}\n\n".encode()


def error_event(error: InfernoError) -> dict[str, Any]:
    """OpenAI's stream error event; details (the seed's) ride along."""
    return {
        "type": "error",
        "code": error.code,
        "message": error.message,
        "param": error.details.get("param"),
    }
