"""/health and /v1/models/{id}/status documents, and the human units they use."""

from __future__ import annotations

import pytest

from inferno.adapters.health import health_json
from inferno.adapters.humanize import human_bytes, human_duration, iso_utc
from inferno.adapters.model_status import model_status_json
from inferno.v1 import admin_service_pb2, model_service_pb2


@pytest.mark.parametrize(
    ("count", "text"),
    [(0, "0B"), (1023, "1023B"), (1024, "1.0KB"), (126353408, "120.5MB"), (9126805504, "8.5GB")],
)
def test_human_bytes(count: int, text: str) -> None:
    assert human_bytes(count) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (45.9, "45s"), (185, "3m 5s"), (8130, "2h 15m 30s"), (86405, "1d 0h 0m 5s")],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_iso_utc_and_never() -> None:
    assert iso_utc(1705314600) == "2024-01-15T10:30:00Z"
    assert iso_utc(0) is None


def test_health_carries_the_fields_of_both_seed_documents() -> None:
    status = admin_service_pb2.GetServerStatusResponse(
        version="0.1.0",
        health_status=admin_service_pb2.HEALTH_STATUS_HEALTHY,
        uptime_seconds=8130.7,
        models_loaded=["tiny"],
        default_model="tiny",
        system=admin_service_pb2.SystemResources(
            cpu_percent=45.23, memory_used_bytes=9126805504, gpu_unavailable_reason="no CUDA device"
        ),
    )
    assert health_json(status) == {
        "status": "healthy",
        "reason": None,
        "version": "0.1.0",
        "models_loaded": ["tiny"],
        "system": {"cpu_usage": 45.2, "memory_usage": "8.5GB", "gpu_usage": None, "uptime": "2h 15m 30s"},
        "model": "tiny",
        "gpu_memory_used": None,
        "gpu": None,
        "cpu_path": None,
        "uptime_seconds": 8130,
        "gpu_unavailable_reason": "no CUDA device",
    }


def test_health_names_the_gpu_and_its_memory_when_a_model_uses_one() -> None:
    status = admin_service_pb2.GetServerStatusResponse(
        health_status=admin_service_pb2.HEALTH_STATUS_HEALTHY,
        models_loaded=["big"],
        system=admin_service_pb2.SystemResources(gpu_name="NVIDIA H200", gpu_memory_used_bytes=3 << 30),
    )
    rendered = health_json(status)
    assert (rendered["gpu"], rendered["gpu_memory_used"], rendered["gpu_unavailable_reason"]) == (
        "NVIDIA H200",
        "3.0GB",
        None,
    )


@pytest.mark.parametrize(
    ("health_status", "reason", "rendered"),
    [
        (admin_service_pb2.HEALTH_STATUS_HEALTHY, "", ("healthy", None)),
        (admin_service_pb2.HEALTH_STATUS_DEGRADED, "loading b", ("degraded", "loading b")),
        (
            admin_service_pb2.HEALTH_STATUS_UNHEALTHY,
            "no model is loaded",
            ("unhealthy", "no model is loaded"),
        ),
        (
            admin_service_pb2.HEALTH_STATUS_UNSPECIFIED,
            "",
            ("unhealthy", "the inference core gave no health verdict"),
        ),
    ],
)
def test_health_renders_the_cores_verdict(
    health_status: admin_service_pb2.HealthStatus.ValueType, reason: str, rendered: tuple[str, str | None]
) -> None:
    # models_loaded and memory would give another verdict: the gateway renders the core's, never its own.
    status = admin_service_pb2.GetServerStatusResponse(
        health_status=health_status,
        health_reason=reason,
        models_loaded=[] if health_status == admin_service_pb2.HEALTH_STATUS_HEALTHY else ["a"],
    )
    body = health_json(status)
    assert (body["status"], body["reason"]) == rendered


def test_health_reports_gpu_figures_when_the_core_has_them() -> None:
    system = admin_service_pb2.SystemResources(gpu_percent=78.1, gpu_memory_used_bytes=120 * 2**30)
    rendered = health_json(admin_service_pb2.GetServerStatusResponse(system=system))
    assert rendered["system"]["gpu_usage"] == 78.1
    assert rendered["gpu_memory_used"] == "120.0GB"
    assert rendered["gpu_unavailable_reason"] is None


def test_model_status_has_the_seed_shape_plus_engine_figures() -> None:
    status = model_service_pb2.GetModelStatusResponse(
        model_id="tiny",
        state=model_service_pb2.MODEL_STATE_LOADED,
        memory_bytes=126353408,
        stats=model_service_pb2.EngineStats(
            requests_total=1234,
            avg_latency_ms=125.3,
            tokens_per_second=45.2,
            last_used=1705314600,
            running_sequences=2,
            kv_cache_usage=0.25,
            max_parallel_sequences=8,
        ),
    )
    rendered = model_status_json(status, model_service_pb2.Model(id="tiny", format="gguf"))
    assert {k: rendered[k] for k in ("model_id", "status", "backend", "memory_usage")} == {
        "model_id": "tiny",
        "status": "loaded",
        "backend": "gguf",
        "memory_usage": "120.5MB",
    }
    assert rendered["metrics"] == {
        "total_requests": 1234,
        "avg_latency_ms": 125.3,
        "tokens_per_second": 45.2,
        "last_used": "2024-01-15T10:30:00Z",
        "memory_usage": "120.5MB",
        "queue_depth": 0,
        "running_sequences": 2,
    }
    assert rendered["progress"] is None and rendered["error"] is None
    assert rendered["engine"]["running_sequences"] == 2
    assert rendered["engine"]["kv_cache_usage"] == 0.25
    assert set(rendered["engine"]) == {
        "name",
        "device",
        "gpu_memory_used",
        "running_sequences",
        "waiting_sequences",
        "decode_steps",
        "max_sequences_per_step",
        "last_step_sequences",
        "kv_cache_usage",
        "max_parallel_sequences",
        "prompt_tokens_total",
        "generated_tokens_total",
    }


def test_model_status_names_the_engine_device_and_gpu_memory() -> None:
    status = model_service_pb2.GetModelStatusResponse(
        model_id="big",
        state=model_service_pb2.MODEL_STATE_LOADED,
        engine="exllamav2",
        device="NVIDIA H200",
        gpu_memory_bytes=5 << 29,  # 2.5 GiB
    )
    engine = model_status_json(status, model_service_pb2.Model(id="big", format="exl2"))["engine"]
    assert (engine["name"], engine["device"], engine["gpu_memory_used"]) == (
        "exllamav2",
        "NVIDIA H200",
        "2.5GB",
    )
