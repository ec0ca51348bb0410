"""The streaming tool-call parser: the same calls and text however the model's output is split."""

from __future__ import annotations

import json

from inferno.core.tools.parser import ToolCallParser

CALLS = (
    '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Pa\\"ris {x}", "tags": ["a", "]"]} }, '
    '{"name": "get_time", "arguments": {}}]}'
)
RESPONSE = '{"response": "Hi \\"there\\" \\u00e9\\ud83d\\ude00\\n\\\\ done"}'


def _feed_in_pieces(text: str, size: int) -> ToolCallParser:
    parser = ToolCallParser()
    for start in range(0, len(text), size):
        parser.feed(text[start : start + size])
    return parser


def test_calls_are_the_same_for_every_split() -> None:
    for size in range(1, len(CALLS) + 1):
        parser = _feed_in_pieces(CALLS, size)
        assert [(c.name, json.loads(c.arguments)) for c in parser.calls] == [
            ("get_weather", {"city": 'Pa"ris {x}', "tags": ["a", "]"]}),
            ("get_time", {}),
        ], size
        assert parser.content == ""


def test_deltas_carry_the_id_and_name_first_then_argument_pieces() -> None:
    parser = ToolCallParser()
    deltas = [d for start in range(0, len(CALLS), 4) for d in parser.feed(CALLS[start : start + 4]).calls]
    firsts = [d for d in deltas if d.id]
    assert [d.name for d in firsts] == ["get_weather", "get_time"]
    assert [d.index for d in firsts] == [0, 1]
    for index, call in enumerate(parser.calls):
        assert "".join(d.arguments for d in deltas if d.index == index) == call.arguments


def test_response_text_is_decoded_for_every_split() -> None:
    for size in range(1, len(RESPONSE) + 1):
        parser = _feed_in_pieces(RESPONSE, size)
        assert parser.content == json.loads(RESPONSE)["response"], size
        assert parser.calls == []


def test_text_outside_the_layout_passes_through() -> None:
    parser = _feed_in_pieces("Sure! The weather is fine.", 3)
    assert parser.content == "Sure! The weather is fine."
    assert parser.calls == []
