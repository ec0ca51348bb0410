"""A regular expression (Python syntax) as a GBNF grammar whose root matches exactly the strings the whole
regex matches: vLLM's guided_regex on llama.cpp's grammar sampler.

Python's own parser reads the pattern, so its syntax errors are Python's. What a grammar cannot express is
refused: backreferences, lookarounds, anchors other than at the ends, case-insensitive matching. \\d, \\w and
\\s are their ASCII sets, so a constrained output always matches the regex.
"""

from __future__ import annotations

import re
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser  # type: ignore[attr-defined]
from typing import Any

from inferno.errors import InfernoError, invalid_param

# llama.cpp expands x{m,n} into n copies of x: larger counts are refused rather than built.
MAX_REPETITION = 1000


def count_over_limit(count: str) -> bool:
    """Whether a repetition count written in a grammar or pattern ("12") is over MAX_REPETITION."""
    # The length test first: int() refuses strings of thousands of digits.
    return count.isascii() and count.isdigit() and (len(count) > 9 or int(count) > MAX_REPETITION)


_CATEGORIES = {
    sre.CATEGORY_DIGIT: ("0-9", False),
    sre.CATEGORY_NOT_DIGIT: ("0-9", True),
    sre.CATEGORY_WORD: ("a-zA-Z0-9_", False),
    sre.CATEGORY_NOT_WORD: ("a-zA-Z0-9_", True),
    sre.CATEGORY_SPACE: (" \\t\\n\\r\\x0B\\x0C", False),
    sre.CATEGORY_NOT_SPACE: (" \\t\\n\\r\\x0B\\x0C", True),
}
_START_ANCHORS = (sre.AT_BEGINNING, sre.AT_BEGINNING_STRING)
_END_ANCHORS = (sre.AT_END, sre.AT_END_STRING)


def regex_grammar(pattern: str, param: str) -> str:
    """GBNF (rule root) for pattern; invalid_parameters naming param for a pattern it cannot take."""
    try:
        parsed = _parser.parse(pattern)
    except re.error as exc:
        raise invalid_param(param, f"'{param}' is not a valid regular expression: {exc}") from None
    except RecursionError:
        raise invalid_param(param, f"'{param}' nests too deeply") from None
    if parsed.state.flags & re.IGNORECASE:
        raise _refused(param, "case-insensitive matching")
    writer = _GrammarWriter(param, dotall=bool(parsed.state.flags & re.DOTALL))
    items = list(parsed)
    if items and items[0][0] is sre.AT and items[0][1] in _START_ANCHORS:
        items = items[1:]
    if items and items[-1][0] is sre.AT and items[-1][1] in _END_ANCHORS:
        items = items[:-1]
    try:
        return f"root ::= {writer.sequence(items)}\n"
    except RecursionError:
        raise invalid_param(param, f"'{param}' nests too deeply") from None


class _GrammarWriter:
    def __init__(self, param: str, dotall: bool) -> None:
        self._param = param
        self._any = "[\\x01-\\U0010FFFF]" if dotall else "[^\\n]"

    def sequence(self, items: list[tuple[Any, Any]]) -> str:
        parts: list[str] = []
        literal: list[str] = []
        for op, arg in items:
            if op is sre.LITERAL:
                literal.append(chr(arg))
                continue
            if literal:
                parts.append(_string(literal))
                literal = []
            parts.append(self._item(op, arg))
        if literal:
            parts.append(_string(literal))
        return " ".join(parts) if parts else '""'

    def _item(self, op: Any, arg: Any) -> str:
        if op is sre.NOT_LITERAL:
            return f"[^{_class_char(arg)}]"
        if op is sre.ANY:
            return self._any
        if op is sre.IN:
            return self._class(arg)
        if op is sre.BRANCH:
            return "(" + " | ".join(self.sequence(list(branch)) for branch in arg[1]) + ")"
        if op is sre.SUBPATTERN:
            return f"({self.sequence(list(arg[3]))})"
        if op is sre.ATOMIC_GROUP:
            return f"({self.sequence(list(arg))})"
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT):
            return self._repeat(*arg)
        if op is sre.AT:
            raise _refused(self._param, "anchors (^, $, \\b) other than at the start and end")
        if op in (sre.GROUPREF, sre.GROUPREF_EXISTS):
            raise _refused(self._param, "backreferences")
        if op in (sre.ASSERT, sre.ASSERT_NOT):
            raise _refused(self._param, "lookahead and lookbehind")
        raise _refused(self._param, f"the regex construct {op}")

    def _repeat(self, low: int, high: Any, body: Any) -> str:
        unbounded = high is sre.MAXREPEAT
        if low > MAX_REPETITION or (not unbounded and high > MAX_REPETITION):
            raise invalid_param(
                self._param, f"'{self._param}' repeats something more than {MAX_REPETITION} times"
            )
        inner = f"({self.sequence(list(body))})"
        if unbounded:
            return inner + ("*" if low == 0 else "+" if low == 1 else f"{{{low},}}")
        if (low, high) == (0, 1):
            return inner + "?"
        return inner + (f"{{{low}}}" if low == high else f"{{{low},{high}}}")

    def _class(self, items: list[tuple[Any, Any]]) -> str:
        negated = bool(items) and items[0][0] is sre.NEGATE
        members = items[1:] if negated else items
        if len(members) == 1 and members[0][0] is sre.CATEGORY:
            chars, category_negated = _CATEGORIES[members[0][1]]
            return f"[{'^' if negated != category_negated else ''}{chars}]"
        parts: list[str] = []
        for op, arg in members:
            if op is sre.LITERAL:
                parts.append(_class_char(arg))
            elif op is sre.RANGE:
                parts.append(f"{_class_char(arg[0])}-{_class_char(arg[1])}")
            elif op is sre.CATEGORY and not _CATEGORIES[arg][1]:
                parts.append(_CATEGORIES[arg][0])
            else:
                raise _refused(self._param, "negated classes (\\D, \\W, \\S) inside a character set")
        if not parts:
            raise _refused(self._param, "an empty character set")
        return f"[{'^' if negated else ''}{''.join(parts)}]"


def _refused(param: str, what: str) -> InfernoError:
    return invalid_param(param, f"'{param}' uses {what}, which a grammar cannot enforce")


def gbnf_string(text: str) -> str:
    """text as a GBNF string literal."""
    return _string(list(text))


def _string(chars: list[str]) -> str:
    return '"' + "".join(_literal_char(c) for c in chars) + '"'


def _literal_char(c: str) -> str:
    if c in '"\\':
        return "\\" + c
    if " " <= c <= "~":
        return c
    return _escape(ord(c))


def _class_char(code: int) -> str:
    c = chr(code)
    return c if c.isascii() and c.isalnum() else _escape(code)


def _escape(code: int) -> str:
    if code <= 0xFF:
        return f"\\x{code:02X}"
    if code <= 0xFFFF:
        return f"\\u{code:04X}"
    return f"\\U{code:08X}"
