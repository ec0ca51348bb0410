"""Helpers for tests against the model-management server (the managed_server fixture)."""

from __future__ import annotations

import httpx


def model_state(http: httpx.Client, model_id: str) -> str:
    return str(http.get(f"/v1/models/{model_id}/status").json()["status"])


def unloaded(http: httpx.Client, model_id: str) -> None:
    """Unloads the model if it is loaded, so a test can watch it load."""
    if model_state(http, model_id) == "loaded":
        assert http.post(f"/v1/models/{model_id}/unload").status_code == 200
