"""The gateway application: every route it serves, and the blocking runner `inferno gateway` uses."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from aiohttp.typedefs import Handler

from inferno.config import GatewayOptions
from inferno.core_channel import COMMAND_METADATA
from inferno.lifecycle import port_error, shutdown_grace_s
from inferno.security_config import SecurityConfig, load_security_config

from . import auth_routes, conversion_routes
from .anthropic import routes as anthropic
from .anthropic.api_key import API_KEY_HEADER, authorization_from_api_key
from .core_client import AUTHORIZATION, CORE, SECURITY, CoreClient, copy_core_headers
from .cors import cors_middleware
from .dashboard.routes import dashboard_asset, dashboard_page
from .docs_page.routes import docs_asset, docs_page
from .draining import DRAIN, Drain
from .errors import error_middleware
from .grpc_relay import start_relay
from .health import health
from .ignored_fields import add_warning_header
from .metrics import METRICS, GatewayMetrics, metrics_endpoint, metrics_middleware
from .model_management import load_model, unload_model
from .model_status import model_status
from .openai import routes as openai
from .openai.batch import batch
from .openai.embeddings import embeddings
from .openai.requests import check_metadata_text, check_path_parameters
from .openai.tokenizer_info import tokenizer_info
from .openapi import openapi_document
from .protocol_errors import answer_protocol_errors_as_json
from .responses import routes as responses
from .websocket import websocket_endpoint

logger = logging.getLogger(__name__)

# After the drain's grace period (inferno.lifecycle.shutdown_grace_s) aiohttp waits this long for handlers
# still running, then cancels them (and so their gRPC calls) and waits up to as long again.
_SHUTDOWN_TIMEOUT_S = 1.0

# A model id (which may contain "/") that does not end in the path of a model action route.
_MODEL_ID_NOT_ACTION = r"(?!.*/(?:status|load|unload)$).+"


def build_app(core_address: str, security: SecurityConfig | None = None) -> web.Application:
    """The OpenAI-compatible REST/SSE API, /ws, /health and /metrics over the core at core_address.

    The gRPC channel opens when the app starts and closes on cleanup.
    """
    security = security or SecurityConfig()
    # Middlewares run outermost first: metrics see the status the error middleware renders.
    # The drain's 503 while shutting down is counted by the metrics and needs no error handling.
    drain = Drain()
    middlewares = [metrics_middleware, drain.middleware, error_middleware, _client_input]
    if security.cors_origins:
        middlewares.insert(0, cors_middleware(security.cors_origins))
    app = web.Application(middlewares=middlewares, client_max_size=security.max_body_bytes)
    app[DRAIN] = drain
    app[METRICS] = GatewayMetrics.create()
    app[SECURITY] = security
    app.cleanup_ctx.append(_core_channel(core_address, security))
    app.on_response_prepare.append(copy_core_headers)
    app.on_response_prepare.append(add_warning_header)

    # Route names are the `endpoint` label of the request metrics. Model ids may contain "/", so the model
    # route refuses ids ending in an action's suffix: GET .../load matches only the load route and is a 405
    # (Allow: POST), not a lookup of the model "<id>/load".
    router = app.router
    router.add_post("/v1/chat/completions", openai.chat_completions, name="chat")
    router.add_post("/v1/messages", anthropic.messages, name="messages")
    router.add_post("/v1/messages/count_tokens", anthropic.count_tokens, name="messages_count_tokens")
    router.add_post("/v1/completions", openai.completions, name="completions")
    router.add_post("/v1/responses", responses.create_response, name="responses_create")
    router.add_get("/v1/responses/{response_id}", responses.get_response, name="responses_get")
    router.add_delete("/v1/responses/{response_id}", responses.delete_response, name="responses_delete")
    router.add_get(
        "/v1/responses/{response_id}/input_items", responses.list_input_items, name="responses_input_items"
    )
    router.add_post("/v1/responses/{response_id}/cancel", responses.cancel_response, name="responses_cancel")
    router.add_post("/v1/batch", batch, name="batch")
    router.add_post("/v1/embeddings", embeddings, name="embeddings")
    router.add_post("/v1/tokenize", openai.tokenize, name="tokenize")
    router.add_post("/v1/detokenize", openai.detokenize, name="detokenize")
    # vLLM's (and llama.cpp's) tokenizer routes at the root, where lm-evaluation-harness looks for them.
    router.add_post("/tokenize", openai.tokenize, name="tokenize_root")
    router.add_post("/detokenize", openai.detokenize, name="detokenize_root")
    router.add_get("/tokenizer_info", tokenizer_info, name="tokenizer_info")
    router.add_get("/v1/models", openai.list_models, name="models")
    router.add_get("/v1/models/{model_id:.+}/status", model_status, name="model_status")
    router.add_post("/v1/models/{model_id:.+}/load", load_model, name="model_load")
    router.add_post("/v1/models/{model_id:.+}/unload", unload_model, name="model_unload")
    router.add_get(f"/v1/models/{{model_id:{_MODEL_ID_NOT_ACTION}}}", openai.get_model, name="model")
    router.add_post("/v1/auth/keys", auth_routes.create_key, name="auth_keys_create")
    router.add_get("/v1/auth/keys", auth_routes.list_keys, name="auth_keys_list")
    router.add_delete("/v1/auth/keys/{key_id}", auth_routes.revoke_key, name="auth_keys_revoke")
    router.add_get("/v1/auth/user", auth_routes.current_user, name="auth_user")
    router.add_post("/v1/convert", conversion_routes.create_job, name="convert_create")
    router.add_get("/v1/convert", conversion_routes.list_jobs, name="convert_list")
    router.add_get("/v1/convert/{job_id}", conversion_routes.get_job, name="convert_get")
    router.add_post("/v1/convert/{job_id}/cancel", conversion_routes.cancel_job, name="convert_cancel")
    router.add_get("/health", health, name="health")
    router.add_get("/metrics", metrics_endpoint, name="metrics")
    router.add_get("/ws", websocket_endpoint, name="ws")
    router.add_get("/openapi.json", openapi_document, name="openapi")
    router.add_get("/docs", docs_page, name="docs")
    router.add_get("/docs/{path}", docs_asset, name="docs_asset")
    router.add_get("/dashboard", dashboard_page, name="dashboard")
    router.add_get("/dashboard/{path:.+}", dashboard_asset, name="dashboard_asset")
    return app


# The request headers the gateway forwards to the core as gRPC metadata (core_client._forwarded_metadata).
# x-api-key (Anthropic's) travels as Authorization: Bearer <key> when no Authorization is sent.
_FORWARDED_HEADERS = ("Authorization", COMMAND_METADATA, API_KEY_HEADER)


@web.middleware
async def _client_input(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every route's path parameters and forwarded headers are checked once, here, before its handler."""
    check_path_parameters(request)
    for name in _FORWARDED_HEADERS:
        value = request.headers.get(name)
        if value is not None:
            check_metadata_text(value, name)
    authorization = authorization_from_api_key(request.headers)
    if authorization is not None:
        request[AUTHORIZATION] = authorization
    return await handler(request)


def run_gateway(options: GatewayOptions) -> None:
    """Serve the app on options.host:port until SIGINT or SIGTERM, then drain and shut down cleanly.

    Raises StartupError (one line naming the port) when the port cannot be bound."""
    security = load_security_config(options.config_path, options.security.overrides())
    security.check_bind(options.host)
    asyncio.run(_serve(options, security))


async def _serve(options: GatewayOptions, security: SecurityConfig) -> None:
    core_address, host, port = options.core_address, options.host, options.port
    # handler_cancellation: a client that disconnects cancels its handler, which cancels its gRPC call.
    app = build_app(core_address, security)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=_SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    answer_protocol_errors_as_json(runner)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        tls = _server_tls(security)
        try:
            await web.TCPSite(runner, host, port, ssl_context=tls).start()
        except OSError as error:
            raise port_error(host, port, "HTTP", error) from None
        scheme = "https" if tls else "http"
        logger.info("gateway listening on %s://%s:%d, core at %s", scheme, host, port, core_address)
        relay = None
        if options.relay_port is not None:
            relay = await start_relay(app[CORE].channel, host, options.relay_port, security)
        await stop.wait()
        grace_s = shutdown_grace_s()
        logger.info("gateway shutting down (in-flight requests get %.0f s)", grace_s)
        drains = [app[DRAIN].drain(grace_s), *([relay.drain(grace_s)] if relay is not None else [])]
        ended, *_ = await asyncio.gather(*drains)
        if ended:
            logger.info("gateway ended %d stream(s) still running after %.0f s", ended, grace_s)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await runner.cleanup()


def _server_tls(security: SecurityConfig) -> ssl.SSLContext | None:
    if not security.tls_enabled:
        return None
    assert security.tls_cert is not None and security.tls_key is not None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(security.tls_cert, security.tls_key)
    return context


def _core_channel(address: str, security: SecurityConfig) -> Callable[[web.Application], AsyncIterator[None]]:
    async def open_and_close(app: web.Application) -> AsyncIterator[None]:
        client = CoreClient(address, security)
        app[CORE] = client
        yield
        await client.close()

    return open_and_close
