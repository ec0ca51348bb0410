"""The Inferno-Warning header that names request fields the server ignored: a field it neither serves nor
refuses must never change a request's meaning silently."""

from __future__ import annotations

import json
from collections.abc import Sequence

from aiohttp import web

WARNING_HEADER = "Inferno-Warning"
IGNORED_FIELDS = web.RequestKey("ignored_fields", tuple[str, ...])
# A body may carry any number of unknown keys; the header names this many and counts the rest.
_MAX_NAMED = 20


def ignored_fields_warning(fields: Sequence[str]) -> str:
    """ "ignored fields: a, b" in printable ASCII (other names JSON-quoted, so no header can be forged)."""
    named = [_header_safe(name) for name in fields[:_MAX_NAMED]]
    more = len(fields) - len(named)
    return "ignored fields: " + ", ".join(named) + (f" and {more} more" if more else "")


async def add_warning_header(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """on_response_prepare hook: the warning for a request whose handler recorded ignored fields."""
    fields = request.get(IGNORED_FIELDS)
    if fields:
        response.headers[WARNING_HEADER] = ignored_fields_warning(fields)


def _header_safe(name: str) -> str:
    if name.isascii() and name.isprintable() and not any(c in name for c in ',"\\'):
        return name
    return json.dumps(name)[:200]
