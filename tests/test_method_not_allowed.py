"""A known route asked with another method answers 405 with Allow and the seed's error body; model ids that
contain "/" still reach the model routes."""

from __future__ import annotations

import httpx
import pytest


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/v1/models/{model}/load", "POST"),
        ("GET", "/v1/models/{model}/unload", "POST"),
        ("DELETE", "/v1/models/{model}/status", "GET, HEAD"),
        ("POST", "/v1/models/{model}", "GET, HEAD"),
        ("GET", "/v1/chat/completions", "POST"),
        ("PUT", "/v1/completions", "POST"),
        ("DELETE", "/health", "GET, HEAD"),
        ("POST", "/v1/auth/keys/key_none", "DELETE"),
        ("GET", "/v1/convert/conv_none/cancel", "POST"),
    ],
)
def test_a_wrong_method_is_a_405_naming_the_allowed_ones(
    http: httpx.Client, model_id: str, method: str, path: str, allowed: str
) -> None:
    reply = http.request(method, path.format(model=model_id))
    assert reply.status_code == 405, reply.text
    assert reply.headers["Allow"] == allowed
    error = reply.json()["error"]
    assert set(error) == {"type", "code", "message", "param", "details"}
    assert (error["code"], error["type"]) == ("method_not_allowed", "invalid_request_error")
    assert error["details"] == {"allowed_methods": allowed.split(", ")}
    assert method in error["message"]


def test_the_model_routes_still_answer_their_own_methods(http: httpx.Client, model_id: str) -> None:
    assert http.get(f"/v1/models/{model_id}").json()["id"] == model_id
    assert http.get(f"/v1/models/{model_id}/status").status_code == 200


def test_an_id_with_a_slash_is_looked_up_whole(http: httpx.Client) -> None:
    reply = http.get("/v1/models/no-such-org/no-such-model")
    assert reply.status_code == 404 and reply.json()["error"]["code"] == "model_not_found"
    assert "no-such-org/no-such-model" in reply.json()["error"]["message"]
