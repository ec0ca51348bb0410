"""Server-sent events as OpenAI's Responses stream them: `event: <type>` and `data: <json>` with a
sequence_number on every event, and no [DONE]."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from inferno.errors import InfernoError

from ..sse import EventStream, encode_named_event


class ResponseEventStream(EventStream):
    """The gateway's event stream (each event sent at once, registered with the Drain) in the Responses
    framing. Open it with ResponseEventStream.open(request)."""

    def __init__(self, response: web.StreamResponse, request: web.Request | None = None) -> None:
        super().__init__(response, request)
        self._sequence = 0

    def _closing(self) -> bytes:
        return b""

    def _error_event(self, error: InfernoError) -> Mapping[str, Any]:
        return error_event(error)

    def _encode(self, data: Mapping[str, Any]) -> bytes:
        self._sequence += 1
        return encode_named_event({**data, "sequence_number": self._sequence - 1})


def error_event(error: InfernoError) -> dict[str, Any]:
    """OpenAI's stream error event; details (the seed's) ride along."""
    return {
        "type": "error",
        "code": error.code,
        "message": error.message,
        "param": error.details.get("param"),
    }
