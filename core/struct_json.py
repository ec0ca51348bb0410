"""google.protobuf.Struct values as the plain JSON they were sent as."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, struct_pb2


def struct_to_json(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as a dict. Struct keeps every number as a double; integral ones become ints again, because
    JSON schema keywords such as maxItems want ints."""
    value = _integral_floats_as_ints(json_format.MessageToDict(struct))
    assert isinstance(value, dict)
    return value


def _integral_floats_as_ints(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _integral_floats_as_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral_floats_as_ints(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
