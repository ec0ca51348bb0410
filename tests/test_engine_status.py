"""Model status names the engine and where it runs, from the engine's own measurements."""

from __future__ import annotations

import httpx


def test_a_loaded_gguf_model_reports_llama_cpp_on_the_cpu(http: httpx.Client, model_id: str) -> None:
    engine = http.get(f"/v1/models/{model_id}/status").json()["engine"]
    assert (engine["name"], engine["device"], engine["gpu_memory_used"]) == ("llama.cpp", "cpu", None)
