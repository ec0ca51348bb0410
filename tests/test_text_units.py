"""Stop-string hold-back and UTF-8-safe detokenization, on their own."""

from __future__ import annotations

from inferno.core.text.detokenizer import IncrementalDetokenizer
from inferno.core.text.stop import StopMatcher


def test_stop_string_cuts_text_before_it() -> None:
    matcher = StopMatcher(("END",))
    assert matcher.push("hello E").text == "hello "
    check = matcher.push("ND tail")
    assert check.stopped
    assert check.text == ""


def test_partial_stop_match_is_released_when_it_fails() -> None:
    matcher = StopMatcher(("\n\n",))
    first = matcher.push("line\n")
    assert (first.text, first.stopped) == ("line", False)
    second = matcher.push("next")
    assert (second.text, second.stopped) == ("\nnext", False)


def test_earliest_of_several_stop_strings_wins() -> None:
    check = StopMatcher(("world", "lo")).push("hello world")
    assert check.stopped
    assert check.text == "hel"


def test_flush_returns_held_text() -> None:
    matcher = StopMatcher(("abc",))
    assert matcher.push("xxab").text == "xx"
    assert matcher.flush() == "ab"


def test_no_stop_strings_passes_text_through() -> None:
    assert StopMatcher(()).push("anything").text == "anything"


def test_multibyte_character_split_over_tokens_comes_out_whole() -> None:
    pieces = {1: "é".encode()[:1], 2: "é".encode()[1:] + b"!", 3: "🙂".encode()[:2]}
    detok = IncrementalDetokenizer(pieces.__getitem__)
    assert detok.push(1) == ""
    assert detok.push(2) == "é!"
    assert detok.push(3) == ""
    assert detok.flush() == "\ufffd"
