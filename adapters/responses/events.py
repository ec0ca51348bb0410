"""The core's response stream as OpenAI's semantic events, one request at a time.

response.created and response.in_progress open the stream; an item's first delta adds it
(response.output_item.added, and response.content_part.added for a message or reasoning); its text streams
as response.output_text.delta, response.reasoning_text.delta or response.function_call_arguments.delta;
the finished response closes every item (the matching .done events, then response.output_item.done) and
ends the stream with response.completed or response.incomplete. Sequence numbers are stamped by the event
stream (sse.py) as events are sent.
"""

from __future__ import annotations

from typing import Any

from inferno.errors import InfernoError
from inferno.v1 import response_service_pb2 as pb

from .render import content_part_json, item_json, reasoning_part_json, response_json

JsonObject = dict[str, Any]

_DELTA_EVENTS = {
    "message": "response.output_text.delta",
    "reasoning": "response.reasoning_text.delta",
    "function_call": "response.function_call_arguments.delta",
}


class ResponseEvents:
    def __init__(self) -> None:
        self._response: pb.Response | None = None
        # Output index -> the item as added.
        self._added: dict[int, pb.ResponseItem] = {}

    def events(self, message: pb.StreamResponseResponse) -> list[JsonObject]:
        """The events one core message becomes, in order."""
        kind = message.WhichOneof("event")
        if kind == "created":
            self._response = message.created
            body = response_json(message.created)
            return [
                {"type": "response.created", "response": body},
                {"type": "response.in_progress", "response": body},
            ]
        if kind == "delta":
            return self._delta_events(message.delta)
        if kind == "finished":
            return self._finished_events(message.finished)
        return []

    def failed_event(self, error: InfernoError) -> JsonObject:
        """response.failed, for a stream the core ended with an error after it began."""
        failed = pb.Response()
        if self._response is not None:
            failed.CopyFrom(self._response)
        failed.status = pb.RESPONSE_STATUS_FAILED
        failed.error.CopyFrom(pb.ResponseError(code=error.code, message=error.message))
        return {"type": "response.failed", "response": response_json(failed)}

    def _delta_events(self, delta: pb.ResponseOutputDelta) -> list[JsonObject]:
        events: list[JsonObject] = []
        index = delta.output_index
        if delta.HasField("added"):
            events += self._added_events(index, delta.added)
        item = self._added.get(index)
        if item is None or not delta.text:
            return events
        kind = item.WhichOneof("item")
        event: JsonObject = {
            "type": _DELTA_EVENTS[kind or "message"],
            "item_id": item.id,
            "output_index": index,
        }
        if kind != "function_call":
            event["content_index"] = 0
        event["delta"] = delta.text
        if kind == "message":
            event["logprobs"] = []
        events.append(event)
        return events

    def _added_events(self, index: int, item: pb.ResponseItem) -> list[JsonObject]:
        self._added[index] = item
        events: list[JsonObject] = [
            {"type": "response.output_item.added", "output_index": index, "item": item_json(item)}
        ]
        kind = item.WhichOneof("item")
        part = _empty_part(kind)
        if part is not None:
            events.append(
                {
                    "type": "response.content_part.added",
                    "item_id": item.id,
                    "output_index": index,
                    "content_index": 0,
                    "part": part,
                }
            )
        return events

    def _finished_events(self, response: pb.Response) -> list[JsonObject]:
        events: list[JsonObject] = []
        for index, item in enumerate(response.output):
            if index not in self._added:
                opening = pb.ResponseItem()
                opening.CopyFrom(item)
                opening.status = pb.RESPONSE_ITEM_STATUS_IN_PROGRESS
                events += self._added_events(index, opening)
            events += _item_done_events(index, item)
        ending = (
            "response.incomplete"
            if response.status == pb.RESPONSE_STATUS_INCOMPLETE
            else "response.completed"
        )
        events.append({"type": ending, "response": response_json(response)})
        return events


def _empty_part(kind: str | None) -> JsonObject | None:
    if kind == "message":
        return content_part_json(pb.ResponseContentPart(type=pb.RESPONSE_CONTENT_TYPE_OUTPUT_TEXT))
    if kind == "reasoning":
        return reasoning_part_json("")
    return None


def _item_done_events(index: int, item: pb.ResponseItem) -> list[JsonObject]:
    kind = item.WhichOneof("item")
    where = {"item_id": item.id, "output_index": index}
    events: list[JsonObject] = []
    if kind == "message":
        part = item.message.content[0] if item.message.content else pb.ResponseContentPart()
        text = {**where, "content_index": 0, "text": part.text, "logprobs": []}
        events.append({"type": "response.output_text.done", **text})
        events.append(
            {
                "type": "response.content_part.done",
                **where,
                "content_index": 0,
                "part": content_part_json(part),
            }
        )
    elif kind == "reasoning":
        events.append(
            {"type": "response.reasoning_text.done", **where, "content_index": 0, "text": item.reasoning.text}
        )
        thoughts = reasoning_part_json(item.reasoning.text)
        events.append({"type": "response.content_part.done", **where, "content_index": 0, "part": thoughts})
    elif kind == "function_call":
        call = item.function_call
        events.append(
            {
                "type": "response.function_call_arguments.done",
                **where,
                "name": call.name,
                "arguments": call.arguments,
            }
        )
    events.append({"type": "response.output_item.done", "output_index": index, "item": item_json(item)})
    return events
