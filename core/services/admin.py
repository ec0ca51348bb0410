"""AdminService: server facts with the health verdict (/health) and the core's Prometheus page (/metrics)."""

from __future__ import annotations

import time

import grpc
import psutil
from prometheus_client import CollectorRegistry, generate_latest

from inferno import __version__
from inferno.core.health import health_verdict
from inferno.core.model_manager import ModelManager, ModelState
from inferno.core.security.rate_limiter import DEFAULT_WS_MESSAGE_RATE, WebSocketMessageRate
from inferno.v1 import admin_service_pb2 as pb
from inferno.v1 import admin_service_pb2_grpc


class AdminServicer(admin_service_pb2_grpc.AdminServiceServicer):
    def __init__(
        self,
        manager: ModelManager,
        metrics_registry: CollectorRegistry,
        ws_message_rate: WebSocketMessageRate = DEFAULT_WS_MESSAGE_RATE,
    ) -> None:
        self._manager = manager
        self._metrics_registry = metrics_registry
        self._websocket_limits = pb.WebSocketLimits(
            messages_per_second=ws_message_rate.per_second, message_burst=ws_message_rate.burst
        )
        self._started = time.monotonic()
        self._process = psutil.Process()
        psutil.cpu_percent(interval=None)  # primes the counter: later calls measure since the previous one

    async def GetServerStatus(
        self, request: pb.GetServerStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetServerStatusResponse:
        memory = psutil.virtual_memory()
        system = pb.SystemResources(
            cpu_percent=psutil.cpu_percent(interval=None),
            memory_used_bytes=memory.total - memory.available,
            memory_total_bytes=memory.total,
            process_rss_bytes=self._process.memory_info().rss,
        )
        memories = [e.memory() for e in self._manager.loaded_engines()]
        system.cpu_path = next((m.cpu_path for m in memories if m.cpu_path), "")
        on_gpu = [m for m in memories if m.device_name]
        if on_gpu:
            system.gpu_memory_used_bytes = sum(m.device_bytes for m in on_gpu)
            system.gpu_name = on_gpu[0].device_name
        else:
            system.gpu_unavailable_reason = "no loaded model runs on a GPU; GGUF models run on the CPU"
        stats = [engine.stats() for engine in self._manager.loaded_engines()]
        status = pb.GetServerStatusResponse(
            generated_tokens_total=sum(s.generated_tokens_total for s in stats),
            requests_total=sum(s.requests_total for s in stats),
            models_loading=[m.entry.id for m in self._manager.models() if m.state is ModelState.LOADING],
            models_failed=[m.entry.id for m in self._manager.models() if m.state is ModelState.FAILED],
            version=__version__,
            uptime_seconds=time.monotonic() - self._started,
            models_loaded=[e.description.id for e in self._manager.loaded_engines()],
            default_model=self._manager.default_model_id,
            system=system,
            websocket_limits=self._websocket_limits,
        )
        status.health_status, status.health_reason = health_verdict(status)
        return status

    async def GetMetrics(
        self, request: pb.GetMetricsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetMetricsResponse:
        return pb.GetMetricsResponse(text=generate_latest(self._metrics_registry).decode())
