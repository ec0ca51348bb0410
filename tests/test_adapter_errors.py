"""How the gateway renders errors that carry extra headers."""

from __future__ import annotations

from inferno.adapters.errors import error_response
from inferno.errors import InfernoError


def test_model_not_ready_says_when_to_retry() -> None:
    response = error_response(InfernoError("model_not_ready", "Model not ready", {"retry_after_s": "7"}))
    assert response.status == 503
    assert response.headers["Retry-After"] == "7"
    plain = error_response(InfernoError("model_not_ready", "Model not ready"))
    assert plain.headers["Retry-After"] == "5"
    assert "Retry-After" not in error_response(InfernoError("model_not_found", "no")).headers
