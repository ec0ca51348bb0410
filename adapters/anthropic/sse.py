"""Server-sent events as Anthropic streams them: `event: <type>` and `data: <json>`, with no [DONE]."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from inferno.errors import InfernoError

from ..sse import EventStream, encode_named_event
from .errors import anthropic_error_body


class MessageEventStream(EventStream):
    """The gateway's event stream (each event sent at once, registered with the Drain) in Anthropic's
    framing: a stream ends with message_stop or an error event, and then the response simply ends.
    Open it with MessageEventStream.open(request)."""

    def _encode(self, data: Mapping[str, Any]) -> bytes:
        return encode_named_event(data)

    def _closing(self) -> bytes:
        return b""

    def _error_event(self, error: InfernoError) -> Mapping[str, Any]:
        return anthropic_error_body(error)
