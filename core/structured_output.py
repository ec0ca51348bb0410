"""response_format as a llama.cpp grammar (GBNF): JSON objects, or JSON that satisfies a schema."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from inferno.core.regex_grammar import MAX_REPETITION, count_over_limit
from inferno.core.struct_json import schema_from
from inferno.errors import InfernoError, invalid_param
from inferno.v1 import inference_service_pb2 as pb

_ANY_OBJECT_SCHEMA = {"type": "object"}
# The converter's string rule lets raw control characters into strings, which JSON forbids (json.loads
# refuses them); this is the rule llama.cpp's own grammars use.
_LOOSE_CHAR_RULE = 'char ::= [^"\\\\] |'
_JSON_CHAR_RULE = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'


def grammar_for(response_format: pb.ResponseFormat) -> str | None:
    """The GBNF that constrains sampling to the format, or None for free text."""
    # llama-cpp-python's schema converter is pure Python, but importing its package loads llama.cpp: only
    # when a grammar is needed, so the GPU core starts without it.
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    kind = response_format.type
    if kind in (pb.RESPONSE_FORMAT_TYPE_UNSPECIFIED, pb.RESPONSE_FORMAT_TYPE_TEXT):
        return None
    if kind == pb.RESPONSE_FORMAT_TYPE_JSON_OBJECT:
        # The schema converter's grammar allows one space between tokens, where llama.cpp's generic JSON
        # grammar allows runs of newlines a small model can get lost in.
        return json_strings_only(json_schema_to_gbnf(json.dumps(_ANY_OBJECT_SCHEMA)))
    if not response_format.HasField("json_schema") and not response_format.json_schema_text:
        raise invalid_param("response_format.json_schema", "'response_format.json_schema.schema' is required")
    schema = schema_from(
        response_format.json_schema, response_format.json_schema_text, "response_format.json_schema"
    )
    return schema_grammar(schema, "response_format.json_schema")


def schema_grammar(schema: dict[str, Any], param: str) -> str:
    """The GBNF for JSON that satisfies schema; invalid_parameters naming param for one it cannot convert."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    check_repetitions(schema, param)
    try:
        return json_strings_only(json_schema_to_gbnf(json.dumps(enforceable(schema))))
    except SCHEMA_CONVERTER_ERRORS as exc:
        raise unconvertible_schema(param, exc) from exc


# What llama-cpp-python's schema converter raises on a schema it cannot take: assert on an unknown "type",
# KeyError or ValueError on bad references and patterns, TypeError and AttributeError where a keyword has the
# wrong JSON type, RecursionError where it recurses past the stack. Anything else it raises is a bug and stays
# internal_error.
SCHEMA_CONVERTER_ERRORS = (
    AssertionError,
    KeyError,
    ValueError,
    TypeError,
    AttributeError,
    IndexError,
    RecursionError,
)


def unconvertible_schema(param: str, exc: Exception) -> InfernoError:
    reason = str(exc) or type(exc).__name__
    return invalid_param(param, f"cannot turn '{param}' into a grammar: {reason}")


# The keywords the converter turns into that many copies of a rule (a string's characters, an array's items).
_REPEATING_KEYWORDS = ("minLength", "maxLength", "minItems", "maxItems")
# A counted repetition in a pattern: a{3}, a{2,5}, a{2,}.
_PATTERN_COUNT = re.compile(r"(?<!\\)\{(\d+)(?:,(\d*))?\}")


def check_repetitions(schema: Any, param: str) -> None:
    """Refuses a schema the converter would write out more than MAX_REPETITION copies of a rule for: it
    spells a repetition out in full, so "minLength": 1000000000 would take the core minutes and gigabytes
    before llama.cpp refused the result."""
    if isinstance(schema, list):
        for item in schema:
            check_repetitions(item, param)
        return
    if not isinstance(schema, dict):
        return
    for keyword in _REPEATING_KEYWORDS:
        value = schema.get(keyword)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > MAX_REPETITION:
            raise invalid_param(
                param, f"'{param}' asks for {keyword} {value}; at most {MAX_REPETITION} can be enforced"
            )
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        for match in _PATTERN_COUNT.finditer(pattern):
            if any(count_over_limit(count or "") for count in match.groups()):
                raise invalid_param(
                    param, f"'{param}' has a pattern that repeats more than {MAX_REPETITION} times"
                )
    for value in schema.values():
        check_repetitions(value, param)


# Integer ranges up to this many values become an enum so the grammar enforces them.
MAX_ENUMERATED_INTEGER_RANGE = 1000


def enforceable(schema: Any) -> Any:
    """The schema with bounded integer ranges spelled out as enums: llama-cpp-python's converter ignores
    minimum and maximum, but enums it turns into alternatives. Wider or one-sided ranges stay unenforced."""
    if isinstance(schema, list):
        return [enforceable(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: enforceable(value) for key, value in schema.items()}
    if result.get("type") == "integer" and "enum" not in result and "const" not in result:
        low = _bound(result, "minimum", "exclusiveMinimum", 1)
        high = _bound(result, "maximum", "exclusiveMaximum", -1)
        if low is not None and high is not None and 0 <= high - low <= MAX_ENUMERATED_INTEGER_RANGE:
            result["enum"] = list(range(low, high + 1))
    return result


def _bound(schema: dict[str, Any], inclusive: str, exclusive: str, step: int) -> int | None:
    """The smallest (step 1) or largest (step -1) allowed integer, from either keyword."""
    candidates: list[int] = []
    if _finite_number(schema.get(inclusive)):
        value = schema[inclusive]
        candidates.append(math.ceil(value) if step > 0 else math.floor(value))
    if _finite_number(schema.get(exclusive)):
        value = schema[exclusive]
        candidates.append(math.floor(value) + 1 if step > 0 else math.ceil(value) - 1)
    if not candidates:
        return None
    return max(candidates) if step > 0 else min(candidates)


def _finite_number(value: Any) -> bool:
    # JSON text read by Python may hold Infinity or NaN (1e400 overflows), which no integer bound can be.
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, int) and not isinstance(value, bool)


def json_strings_only(grammar: str) -> str:
    """The grammar with its JSON string characters limited to what JSON allows unescaped."""
    return grammar.replace(_LOOSE_CHAR_RULE, _JSON_CHAR_RULE)
