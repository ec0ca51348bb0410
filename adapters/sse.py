"""Server-sent events as OpenAI streams them: `data: <json>` events, ended by `data: [DONE]`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

DONE_EVENT = b"data: [DONE]\n\n"


def encode_event(data: Mapping[str, Any]) -> bytes:
    """One event holding data as single-line JSON (JSON escapes every newline inside strings)."""
    return b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


class EventStream:
    """An open text/event-stream response. Each send goes to the socket at once; nothing is batched."""

    def __init__(self, response: web.StreamResponse) -> None:
        self.response = response

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
        return cls(response)

    async def send(self, data: Mapping[str, Any]) -> None:
        # write() hands the bytes to the transport now and waits for it to drain past its high-water mark.
        await self.response.write(encode_event(data))

    async def close(self) -> None:
        """Send [DONE] and end the response."""
        await self.response.write(DONE_EVENT)
        await self.response.write_eof()
