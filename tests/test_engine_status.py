"""Model status names the engine and where it runs, from the engine's own measurements."""

from __future__ import annotations

import httpx


def test_a_loaded_gguf_model_reports_llama_cpp_on_the_cpu_and_its_cpu_path(
    http: httpx.Client, model_id: str
) -> None:
    engine = http.get(f"/v1/models/{model_id}/status").json()["engine"]
    assert (engine["name"], engine["gpu_memory_used"]) == ("llama.cpp", None)
    # This machine runs the fast path; the forced fallback is tests/test_cpu_path.py's. llama.cpp has no
    # repacked kernel for the embedded model's weight types (Q4_1, Q8_0 embeddings), so none are repacked.
    assert engine["device"] == "cpu, weight repacking on (probe passed); 0.0 of 92.1 MiB of weights repacked"
    health = http.get("/health").json()
    assert health["cpu_path"] == "cpu, weight repacking on (probe passed)" and health["gpu"] is None
