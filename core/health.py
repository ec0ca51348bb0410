"""The core's health verdict: healthy, degraded (serving, with a reason worth a look) or unhealthy (cannot
serve a request now). GetServerStatus carries it: /health, Envoy and direct gRPC callers read one answer."""

from __future__ import annotations

from inferno.v1 import admin_service_pb2 as pb

# System memory in use above which the server reports itself degraded.
DEGRADED_MEMORY_RATIO = 0.95


def health_verdict(status: pb.GetServerStatusResponse) -> tuple[pb.HealthStatus.ValueType, str]:
    """The verdict on a server status and its reason ("" when healthy)."""
    if not status.models_loaded:
        if status.models_loading:
            return (
                pb.HEALTH_STATUS_UNHEALTHY,
                f"no model is loaded yet; loading {', '.join(status.models_loading)}",
            )
        return pb.HEALTH_STATUS_UNHEALTHY, "no model is loaded"
    reasons = []
    if status.models_failed:
        reasons.append(f"loading failed for {', '.join(status.models_failed)}")
    if status.models_loading:
        reasons.append(f"loading {', '.join(status.models_loading)}")
    system = status.system
    if (
        system.memory_total_bytes
        and system.memory_used_bytes / system.memory_total_bytes > DEGRADED_MEMORY_RATIO
    ):
        reasons.append(f"system memory is over {DEGRADED_MEMORY_RATIO:.0%} used")
    if reasons:
        return pb.HEALTH_STATUS_DEGRADED, "; ".join(reasons)
    return pb.HEALTH_STATUS_HEALTHY, ""
