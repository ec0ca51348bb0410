"""Follows a tool-calling reply (grammar.py's layout) as it streams, turning it into content and tool calls.

The grammar guarantees the layout; text that does not follow it (a model run without the grammar) is passed
through as content, so nothing the model wrote is lost.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from enum import Enum, auto

from inferno.core.tools.grammar import (
    CALL_ARGUMENTS_PREFIX,
    CALL_NAME_PREFIX,
    CALL_SUFFIX,
    CALLS_PREFIX,
    CALLS_SEPARATOR,
    CALLS_SUFFIX,
    RESPONSE_PREFIX,
)

_CALL_HEAD = re.compile(re.escape(CALL_NAME_PREFIX) + r"([A-Za-z0-9_-]+)" + re.escape(CALL_ARGUMENTS_PREFIX))
_SIMPLE_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


@dataclass
class ToolCallDelta:
    """New text of one call: the first delta of a call has its id and name."""

    index: int
    arguments: str = ""
    id: str = ""
    name: str = ""


@dataclass
class ParsedOutput:
    """What one piece of model text turned into."""

    content: str = ""
    calls: list[ToolCallDelta] = field(default_factory=list)


@dataclass
class ParsedCall:
    id: str
    name: str
    arguments: str = ""


class _State(Enum):
    START = auto()
    CALL_HEAD = auto()
    ARGUMENTS = auto()
    AFTER_CALL = auto()
    RESPONSE = auto()
    PASSTHROUGH = auto()
    DONE = auto()


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


class ToolCallParser:
    def __init__(self) -> None:
        self._state = _State.START
        self._buffer = ""
        self._depth = 0
        self._in_string = False
        self._escaped = False
        self.calls: list[ParsedCall] = []
        self.content = ""

    def feed(self, text: str) -> ParsedOutput:
        out = ParsedOutput()
        self._buffer += text
        progressed = True
        while progressed and self._buffer:
            progressed = self._advance(out)
        self.content += out.content
        return out

    def _advance(self, out: ParsedOutput) -> bool:
        """Consumes what it can of the buffer; False when it needs more text."""
        buffer = self._buffer
        if self._state is _State.START:
            for prefix, state in ((CALLS_PREFIX, _State.CALL_HEAD), (RESPONSE_PREFIX + '"', _State.RESPONSE)):
                if buffer.startswith(prefix):
                    self._state, self._buffer = state, buffer[len(prefix) :]
                    return True
            if CALLS_PREFIX.startswith(buffer) or (RESPONSE_PREFIX + '"').startswith(buffer):
                return False
            self._state = _State.PASSTHROUGH
            return True
        if self._state is _State.PASSTHROUGH:
            out.content += buffer
            self._buffer = ""
            return False
        if self._state is _State.CALL_HEAD:
            match = _CALL_HEAD.match(buffer)
            if match is None:
                if len(buffer) > len(CALL_NAME_PREFIX) + 64 + len(CALL_ARGUMENTS_PREFIX):
                    self._state = _State.PASSTHROUGH
                    return True
                return False
            call = ParsedCall(new_call_id(), match.group(1))
            self.calls.append(call)
            out.calls.append(ToolCallDelta(len(self.calls) - 1, id=call.id, name=call.name))
            self._state, self._buffer = _State.ARGUMENTS, buffer[match.end() :]
            self._depth, self._in_string, self._escaped = 0, False, False
            return True
        if self._state is _State.ARGUMENTS:
            return self._take_arguments(out)
        if self._state is _State.AFTER_CALL:
            rest = buffer.lstrip(" ")
            if rest.startswith(CALL_SUFFIX + CALLS_SEPARATOR):
                self._state, self._buffer = _State.CALL_HEAD, rest[len(CALL_SUFFIX + CALLS_SEPARATOR) :]
                return True
            if rest.startswith(CALL_SUFFIX + CALLS_SUFFIX):
                self._state, self._buffer = _State.DONE, ""
                return False
            return False
        if self._state is _State.RESPONSE:
            return self._take_response_text(out)
        self._buffer = ""  # DONE: the grammar allows nothing after the closing brace
        return False

    def _take_arguments(self, out: ParsedOutput) -> bool:
        """Arguments are one JSON value; it ends where its outermost object or array closes."""
        for i, char in enumerate(self._buffer):
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif char == "\\":
                    self._escaped = True
                elif char == '"':
                    self._in_string = False
            elif char == '"':
                self._in_string = True
            elif char in "{[":
                self._depth += 1
            elif char in "}]":
                self._depth -= 1
                if self._depth == 0:
                    self._emit_arguments(out, self._buffer[: i + 1])
                    self._state, self._buffer = _State.AFTER_CALL, self._buffer[i + 1 :]
                    return True
        self._emit_arguments(out, self._buffer)
        self._buffer = ""
        return False

    def _emit_arguments(self, out: ParsedOutput, piece: str) -> None:
        if not piece:
            return
        index = len(self.calls) - 1
        self.calls[index].arguments += piece
        if out.calls and out.calls[-1].index == index:
            out.calls[-1].arguments += piece
        else:
            out.calls.append(ToolCallDelta(index, arguments=piece))

    def _take_response_text(self, out: ParsedOutput) -> bool:
        """Decodes the JSON string of {"response": "..."} as far as it is complete."""
        buffer, i = self._buffer, 0
        while i < len(buffer):
            char = buffer[i]
            if char == '"':
                self._state, self._buffer = _State.DONE, ""
                return False
            if char != "\\":
                out.content += char
                i += 1
                continue
            if i + 1 >= len(buffer):
                break
            code = buffer[i + 1]
            if code in _SIMPLE_ESCAPES:
                out.content += _SIMPLE_ESCAPES[code]
                i += 2
                continue
            # \uXXXX, possibly a surrogate pair \uD83D\uDE00
            escape = re.match(r"\\u([0-9a-fA-F]{4})(\\u([0-9a-fA-F]{4}))?", buffer[i:])
            needed = 12 if escape and 0xD800 <= int(escape.group(1), 16) < 0xDC00 else 6
            if len(buffer) - i < needed:
                break
            out.content += json.loads('"' + buffer[i : i + needed] + '"')
            i += needed
        self._buffer = buffer[i:]
        return False
