"""The JSON Schema pieces every part of the OpenAPI document shares (adapters/openapi.py and the path items of
the Anthropic, Responses and compatibility routes that it merges in)."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

ERROR_REF: Schema = {"$ref": "#/components/schemas/Error"}
STRING_OR_NULL: Schema = {"type": ["string", "null"]}
BOOL_OR_NULL: Schema = {"type": ["boolean", "null"]}
NUMBER_OR_NULL: Schema = {"type": ["number", "null"]}
UINT32: Schema = {"type": "integer", "minimum": 0, "maximum": 2**32 - 1}
UINT32_OR_NULL: Schema = {"type": ["integer", "null"], "minimum": 0, "maximum": 2**32 - 1}
