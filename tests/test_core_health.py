"""The core's health verdict: what each server status reports, and GetServerStatus carrying it."""

from __future__ import annotations

import grpc
import pytest

from inferno.core.health import health_verdict
from inferno.v1 import admin_service_pb2 as pb
from inferno.v1 import admin_service_pb2_grpc


@pytest.mark.parametrize(
    ("fields", "verdict", "reason"),
    [
        ({"models_loaded": ["a"]}, pb.HEALTH_STATUS_HEALTHY, ""),
        ({"models_loaded": ["a"], "models_failed": ["b"]}, pb.HEALTH_STATUS_DEGRADED, "loading failed for b"),
        ({"models_loaded": ["a"], "models_loading": ["b"]}, pb.HEALTH_STATUS_DEGRADED, "loading b"),
        (
            {"models_loaded": ["a"], "models_failed": ["b"], "models_loading": ["c"]},
            pb.HEALTH_STATUS_DEGRADED,
            "loading failed for b; loading c",
        ),
        ({"models_loading": ["a"]}, pb.HEALTH_STATUS_UNHEALTHY, "no model is loaded yet; loading a"),
        ({}, pb.HEALTH_STATUS_UNHEALTHY, "no model is loaded"),
        (
            {"models_loaded": ["a"], "system": {"memory_used_bytes": 97, "memory_total_bytes": 100}},
            pb.HEALTH_STATUS_DEGRADED,
            "system memory is over 95% used",
        ),
        (
            {"models_loaded": ["a"], "system": {"memory_used_bytes": 95, "memory_total_bytes": 100}},
            pb.HEALTH_STATUS_HEALTHY,
            "",
        ),
    ],
)
def test_health_verdicts(fields: dict[str, object], verdict: pb.HealthStatus.ValueType, reason: str) -> None:
    status = pb.GetServerStatusResponse(**fields)  # type: ignore[arg-type]
    assert health_verdict(status) == (verdict, reason)


def test_server_status_over_grpc_carries_the_verdict(grpc_channel: grpc.Channel, model_id: str) -> None:
    status = admin_service_pb2_grpc.AdminServiceStub(grpc_channel).GetServerStatus(
        pb.GetServerStatusRequest()
    )
    assert model_id in status.models_loaded
    assert (status.health_status, status.health_reason) == health_verdict(status)
    assert status.health_status in (pb.HEALTH_STATUS_HEALTHY, pb.HEALTH_STATUS_DEGRADED)
