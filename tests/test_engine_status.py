"""Model status names the engine and where it runs, from the engine's own measurements."""

from __future__ import annotations

import httpx


def test_a_loaded_gguf_model_reports_llama_cpp_on_the_cpu_and_its_cpu_path(
    http: httpx.Client, model_id: str
) -> None:
    engine = http.get(f"/v1/models/{model_id}/status").json()["engine"]
    assert (engine["name"], engine["gpu_memory_used"]) == ("llama.cpp", None)
    # This machine runs the fast path; the forced fallback is tests/test_cpu_path.py's.
    assert engine["device"] == "cpu, weight repacking on (probe passed)"
    health = http.get("/health").json()
    assert health["cpu_path"] == engine["device"] and health["gpu"] is None
