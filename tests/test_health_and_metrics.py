"""GET /health with the fields of both seed documents, the status route, and the Prometheus page."""

from __future__ import annotations

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families


def test_health_has_the_fields_of_both_seed_documents(http: httpx.Client, model_id: str) -> None:
    response = http.get("/health")
    assert response.status_code == 200
    health = response.json()
    assert health["status"] == "healthy"
    assert health["version"] == "0.1.0"
    assert model_id in health["models_loaded"]
    assert health["model"] == model_id
    system = health["system"]
    assert 0.0 <= system["cpu_usage"] <= 100.0
    assert system["memory_usage"].endswith("GB") or system["memory_usage"].endswith("MB")
    assert system["gpu_usage"] is None
    assert health["gpu_memory_used"] is None
    assert health["gpu_unavailable_reason"]
    assert isinstance(health["uptime_seconds"], int) and health["uptime_seconds"] >= 0
    assert system["uptime"].endswith("s")


def test_health_memory_is_read_from_the_system(http: httpx.Client) -> None:
    reported = http.get("/health").json()["system"]["memory_usage"]
    value = float(reported[:-2]) * (1e9 if reported.endswith("GB") else 1e6)
    memory = psutil.virtual_memory()
    assert abs(value - (memory.total - memory.available)) < 0.5 * memory.total


def test_model_status_counts_requests(http: httpx.Client, model_id: str) -> None:
    before = http.get(f"/v1/models/{model_id}/status").json()
    http.post("/v1/completions", json={"model": model_id, "prompt": "Hi", "max_tokens": 4})
    after = http.get(f"/v1/models/{model_id}/status").json()
    assert after["status"] == "loaded" and after["backend"] == "gguf"
    assert after["metrics"]["total_requests"] == before["metrics"]["total_requests"] + 1
    assert after["engine"]["generated_tokens_total"] >= before["engine"]["generated_tokens_total"] + 4
    assert after["metrics"]["tokens_per_second"] > 0


def _samples(text: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = sample.name + "{" + ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items())) + "}"
            values[key] = sample.value
    return values


def test_metrics_parse_and_move_when_requests_run(http: httpx.Client, model_id: str) -> None:
    before = _samples(http.get("/metrics").text)
    http.post(
        "/v1/chat/completions",
        json={"model": model_id, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
    )
    after = _samples(http.get("/metrics").text)
    requests_key = f"inferno_requests_total{{endpoint=chat,model={model_id}}}"
    assert after[requests_key] == before.get(requests_key, 0) + 1
    generated_key = f"inferno_engine_generated_tokens_total{{model={model_id}}}"
    assert after[generated_key] >= before.get(generated_key, 0) + 4
    assert f"inferno_engine_batch_sequences_count{{model={model_id}}}" in after
    assert f"inferno_engine_running_sequences{{model={model_id}}}" in after
