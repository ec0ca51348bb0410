"""google.protobuf.Struct values as the plain JSON they were sent as."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format, struct_pb2

from inferno.errors import invalid_param

# The deepest JSON schema a request may carry (objects and arrays nested in each other). Real schemas stay
# under ten; the grammar converter recurses once per level, so a deep one would exhaust Python's stack.
MAX_SCHEMA_DEPTH = 64


def struct_to_json(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as a dict. Struct keeps every number as a double; integral ones become ints again, because
    JSON schema keywords such as maxItems want ints."""
    value = _integral_floats_as_ints(json_format.MessageToDict(struct))
    assert isinstance(value, dict)
    return value


def schema_from(struct: struct_pb2.Struct, text: str, param: str) -> dict[str, Any]:
    """A JSON schema given as JSON text (which keeps property order) or, failing that, as a Struct; at most
    MAX_SCHEMA_DEPTH deep."""
    if not text:
        try:
            value: Any = struct_to_json(struct)
        except RecursionError:
            raise _too_deep(param) from None
    else:
        try:
            value = json.loads(text)
        except RecursionError:
            raise _too_deep(param) from None
        except ValueError as exc:
            raise invalid_param(param, f"'{param}' is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise invalid_param(param, f"'{param}' must be a JSON object")
    if _depth(value) > MAX_SCHEMA_DEPTH:
        raise _too_deep(param)
    return value


def _depth(value: Any) -> int:
    """How deeply objects and arrays nest in value (a scalar is 0), without recursion."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_SCHEMA_DEPTH:
            break
        pending.extend((child, depth + 1) for child in children)
    return deepest


def _too_deep(param: str) -> Exception:
    return invalid_param(param, f"'{param}' nests objects and arrays more than {MAX_SCHEMA_DEPTH} deep")


def _integral_floats_as_ints(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _integral_floats_as_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral_floats_as_ints(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
