"""The WebSocket's dashboard subscriptions: live system metrics and model status, as the seed shows them.

subscribe_metrics: {"interval": ms (100 to 60000, default 1000), "metrics": any of cpu, memory, gpu,
inference_rate (default all)} -> "metrics_update" frames every interval. subscribe_models -> "model_status"
frames: every model's state first, then each change, and a load's progress as the core coalesces it (about ten
a second per model, every change of state kept).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from inferno.errors import invalid_param
from inferno.model_names import phase_name, state_name
from inferno.v1 import admin_service_pb2, model_service_pb2

from .core_client import CORE

METRIC_NAMES = ("cpu", "memory", "gpu", "inference_rate")
_DEFAULT_INTERVAL_MS = 1000
_MIN_INTERVAL_MS, _MAX_INTERVAL_MS = 100, 60_000


@dataclass(frozen=True)
class MetricsSubscription:
    interval_s: float
    metrics: tuple[str, ...]


def parse_metrics_subscription(data: Any) -> MetricsSubscription:
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise invalid_param("data", '\'data\' must be an object like {"interval": 1000, "metrics": [...]}')
    interval = data.get("interval", _DEFAULT_INTERVAL_MS)
    if not isinstance(interval, int | float) or isinstance(interval, bool):
        raise invalid_param("data.interval", "'data.interval' must be a number of milliseconds")
    if not _MIN_INTERVAL_MS <= interval <= _MAX_INTERVAL_MS:
        raise invalid_param(
            "data.interval", f"'data.interval' must be from {_MIN_INTERVAL_MS} to {_MAX_INTERVAL_MS} ms"
        )
    metrics = data.get("metrics", list(METRIC_NAMES))
    if not isinstance(metrics, list) or not metrics or any(m not in METRIC_NAMES for m in metrics):
        raise invalid_param("data.metrics", f"'data.metrics' must list some of {', '.join(METRIC_NAMES)}")
    return MetricsSubscription(interval / 1000, tuple(dict.fromkeys(metrics)))


async def metrics_updates(
    request: web.Request, subscription: MetricsSubscription
) -> AsyncIterator[dict[str, Any]]:
    """One update per interval, read from the core; inference_rate is generated tokens per second over the
    interval."""
    core = request.app[CORE]
    previous: tuple[float, int] | None = None
    while True:
        started = time.monotonic()
        status = await core.unary(
            request, core.admin.GetServerStatus, admin_service_pb2.GetServerStatusRequest()
        )
        now = time.monotonic()
        rate = 0.0
        if previous is not None and now > previous[0]:
            rate = max(status.generated_tokens_total - previous[1], 0) / (now - previous[0])
        previous = (now, status.generated_tokens_total)
        yield _metrics_data(status, rate, subscription.metrics)
        await _sleep_until(started + subscription.interval_s)


def _metrics_data(
    status: admin_service_pb2.GetServerStatusResponse, rate: float, metrics: tuple[str, ...]
) -> dict[str, Any]:
    system = status.system
    values: dict[str, Any] = {
        "cpu": round(system.cpu_percent, 1),
        "memory": round(100 * system.memory_used_bytes / system.memory_total_bytes, 1)
        if system.memory_total_bytes
        else None,
        "gpu": round(system.gpu_percent, 1) if system.HasField("gpu_percent") else None,
        "inference_rate": round(rate, 1),
    }
    data: dict[str, Any] = {"timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    data.update({name: values[name] for name in metrics})
    if "gpu" in metrics and values["gpu"] is None:
        data["gpu_unavailable_reason"] = system.gpu_unavailable_reason or None
    return data


async def model_status_updates(request: web.Request) -> AsyncIterator[dict[str, Any]]:
    core = request.app[CORE]
    async with core.stream(
        request, core.models.WatchModels, model_service_pb2.WatchModelsRequest()
    ) as changes:
        async for change in changes:
            yield {
                "model_id": change.model_id,
                "status": state_name(change.state),
                "phase": phase_name(change.phase),
                "progress": round(change.progress, 1),
                "eta": f"{round(change.eta_seconds)}s" if change.HasField("eta_seconds") else None,
                "error": change.error or None,
            }


async def _sleep_until(deadline: float) -> None:
    await asyncio.sleep(max(deadline - time.monotonic(), 0))
