"""SSE framing: one `data: <json>` line per event, a blank line after each, [DONE] last."""

from __future__ import annotations

import json

from inferno.adapters.sse import DONE_EVENT, encode_event


def test_event_is_one_data_line_and_a_blank_line() -> None:
    assert encode_event({"a": 1, "b": [True, None]}) == b'data: {"a":1,"b":[true,null]}\n\n'


def test_newlines_inside_strings_do_not_break_the_event() -> None:
    event = encode_event({"content": "line one\nline two\r\n"})
    assert event.count(b"\n") == 2
    assert json.loads(event.removeprefix(b"data: "))["content"] == "line one\nline two\r\n"


def test_non_ascii_text_is_sent_as_utf8() -> None:
    assert encode_event({"content": "héllo 🔥"}) == 'data: {"content":"héllo 🔥"}\n\n'.encode()


def test_done_event() -> None:
    assert DONE_EVENT == b"data: [DONE]\n\n"
