"""Requests aiohttp refuses itself, before any handler or middleware runs (a request line or header over its
size limits, a message that is not HTTP), answered with the seed's error body instead of aiohttp's plain
text."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler

from inferno.errors import InfernoError

from .errors import error_response

logger = logging.getLogger(__name__)


class _SeedErrorHandler(RequestHandler):
    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500 or request.writer.output_size > 0:
            # Not the client's doing, or a response already under way: aiohttp's own handling and logging.
            return super().handle_error(request, status, exc, message)
        logger.info("refused a malformed request from %s: %s", request.remote, type(exc).__name__)
        if isinstance(exc, LineTooLong):
            error = InfernoError(
                "request_too_large", f"the request line or a header is longer than {exc.args[1]} bytes"
            )
        else:
            error = InfernoError("invalid_parameters", "the request is not well-formed HTTP/1.1")
        response = error_response(error)
        response.force_close()
        return response


class _SeedErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _SeedErrorHandler(self, loop=self._loop, **self._kwargs)


def answer_protocol_errors_as_json(runner: web.AppRunner) -> None:
    """Makes the set-up runner's connections answer malformed requests with the seed's error body."""
    server = runner.server
    assert server is not None, "runner.setup() first"
    # The app builds a plain web.Server; this subclass differs only in the handler each connection gets.
    server.__class__ = _SeedErrorServer
