"""google.protobuf.Struct values as the plain JSON they were sent as."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format, struct_pb2

from inferno.errors import invalid_param


def struct_to_json(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as a dict. Struct keeps every number as a double; integral ones become ints again, because
    JSON schema keywords such as maxItems want ints."""
    value = _integral_floats_as_ints(json_format.MessageToDict(struct))
    assert isinstance(value, dict)
    return value


def schema_from(struct: struct_pb2.Struct, text: str, param: str) -> dict[str, Any]:
    """A JSON schema given as JSON text (which keeps property order) or, failing that, as a Struct."""
    if not text:
        return struct_to_json(struct)
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise invalid_param(param, f"'{param}' is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise invalid_param(param, f"'{param}' must be a JSON object")
    return value


def _integral_floats_as_ints(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _integral_floats_as_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral_floats_as_ints(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
