"""Server-sent events as Anthropic streams them: `event: <type>` and `data: <json>`, with no [DONE]."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from inferno.errors import InfernoError

from ..sse import EventStream
from .errors import anthropic_error_body


def encode_named_event(data: Mapping[str, Any]) -> bytes:
    """One event named after data's "type" (Anthropic's SDKs skip events without a name)."""
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"event: {data['type']}\ndata: {payload}\n\n".encode()


class MessageEventStream(EventStream):
    """The gateway's event stream (each event sent at once, registered with the Drain) in Anthropic's
    framing: a stream ends with message_stop or an error event, and then the response simply ends.
    Open it with MessageEventStream.open(request)."""

    async def send(self, data: Mapping[str, Any]) -> None:
        if not self.busy():
            raise ConnectionResetError("the event stream has ended")
        await self.response.write(encode_named_event(data))

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
            await self.response.write(encode_named_event(anthropic_error_body(error)))
            await self.response.write_eof()
        except (ConnectionResetError, RuntimeError):
            pass  # the client is gone or the handler finished the response meanwhile
        if self._handler is not None and self._handler is not asyncio.current_task():
            self._handler.cancel()
