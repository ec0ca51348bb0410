"""The gateway's own Prometheus metrics, and GET /metrics: the core's text followed by ours.

The core prefixes its metrics inferno_engine_ and inferno_core_; the gateway owns the seed's request metrics
and inferno_gateway_*, so the two texts never define the same family.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from inferno.errors import InfernoError
from inferno.v1 import admin_service_pb2

from .core_client import CORE

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_CORE_METRICS_TIMEOUT_S = 5.0
# Generations run for seconds to minutes, past prometheus_client's default top bucket of 10 s.
_DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

# The model that served a request; set by handlers. The label takes it only from a request that succeeded
# (the core found the model), so ids a client makes up never become label values.
SERVED_MODEL = web.RequestKey("served_model", str)


@dataclass(frozen=True)
class GatewayMetrics:
    registry: CollectorRegistry
    requests: Counter
    duration: Histogram
    core_up: Gauge

    @classmethod
    def create(cls) -> GatewayMetrics:
        """Fresh metrics in their own registry (never prometheus_client's global one)."""
        registry = CollectorRegistry()
        return cls(
            registry=registry,
            requests=Counter(
                "inferno_requests_total",
                "Total number of requests",
                ["model", "endpoint"],
                registry=registry,
            ),
            duration=Histogram(
                "inferno_request_duration_seconds",
                "Request duration",
                ["endpoint", "status"],
                buckets=_DURATION_BUCKETS,
                registry=registry,
            ),
            core_up=Gauge(
                "inferno_gateway_core_up",
                "1 if the core answered the last metrics scrape, else 0",
                registry=registry,
            ),
        )

    def observe(self, endpoint: str, model: str, status: int, seconds: float) -> None:
        self.requests.labels(model=model, endpoint=endpoint).inc()
        self.duration.labels(endpoint=endpoint, status=str(status)).observe(seconds)


METRICS = web.AppKey("metrics", GatewayMetrics)

# WebSocket connections live for minutes or hours; their chats are counted one by one instead.
_NOT_TIMED_ROUTES = frozenset({"ws"})
# nginx's "client closed request": the client left before the response was complete.
_CLIENT_CLOSED = 499


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count and time each request, labelled by route name (the endpoint) and final status."""
    endpoint = request.match_info.route.name or "unmatched"
    if endpoint in _NOT_TIMED_ROUTES:
        return await handler(request)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as refusal:
        status = refusal.status
        raise
    except (asyncio.CancelledError, ConnectionResetError):
        status = _CLIENT_CLOSED
        raise
    finally:
        model = request.get(SERVED_MODEL, "") if status < 400 else ""
        request.app[METRICS].observe(endpoint, model, status, time.perf_counter() - started)


async def metrics_endpoint(request: web.Request) -> web.Response:
    """GET /metrics: the core's exposition text, then the gateway's.

    If the core is unreachable the gateway's part is still served, with inferno_gateway_core_up 0.
    """
    core = request.app[CORE]
    metrics = request.app[METRICS]
    try:
        message = admin_service_pb2.GetMetricsRequest()
        reply = await core.unary(request, core.admin.GetMetrics, message, timeout=_CORE_METRICS_TIMEOUT_S)
    except InfernoError as error:
        if error.code != "core_unavailable":
            raise
        core_text = ""
        metrics.core_up.set(0)
    else:
        core_text = reply.text if reply.text.endswith("\n") or not reply.text else reply.text + "\n"
        metrics.core_up.set(1)
    body = core_text.encode() + generate_latest(metrics.registry)
    return web.Response(body=body, headers={"Content-Type": PROMETHEUS_CONTENT_TYPE})
