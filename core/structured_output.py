"""response_format as a llama.cpp grammar (GBNF): JSON objects, or JSON that satisfies a schema."""

from __future__ import annotations

import json

from llama_cpp.llama_grammar import json_schema_to_gbnf

from inferno.core.struct_json import struct_to_json
from inferno.errors import invalid_param
from inferno.v1 import inference_service_pb2 as pb

_ANY_OBJECT_SCHEMA = {"type": "object"}
# The converter's string rule lets raw control characters into strings, which JSON forbids (json.loads
# refuses them); this is the rule llama.cpp's own grammars use.
_LOOSE_CHAR_RULE = 'char ::= [^"\\\\] |'
_JSON_CHAR_RULE = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'


def grammar_for(response_format: pb.ResponseFormat) -> str | None:
    """The GBNF that constrains sampling to the format, or None for free text."""
    kind = response_format.type
    if kind in (pb.RESPONSE_FORMAT_TYPE_UNSPECIFIED, pb.RESPONSE_FORMAT_TYPE_TEXT):
        return None
    if kind == pb.RESPONSE_FORMAT_TYPE_JSON_OBJECT:
        # The schema converter's grammar allows one space between tokens, where llama.cpp's generic JSON
        # grammar allows runs of newlines a small model can get lost in.
        return json_strings_only(json_schema_to_gbnf(json.dumps(_ANY_OBJECT_SCHEMA)))
    if not response_format.HasField("json_schema"):
        raise invalid_param("response_format.json_schema", "'response_format.json_schema.schema' is required")
    schema = struct_to_json(response_format.json_schema)
    try:
        return json_strings_only(json_schema_to_gbnf(json.dumps(schema)))
    except (
        Exception
    ) as exc:  # the converter raises bare exceptions of several kinds on schemas it cannot take
        raise invalid_param(
            "response_format.json_schema", f"cannot turn this JSON schema into a grammar: {exc}"
        ) from exc


def json_strings_only(grammar: str) -> str:
    """The grammar with its JSON string characters limited to what JSON allows unescaped."""
    return grammar.replace(_LOOSE_CHAR_RULE, _JSON_CHAR_RULE)
