"""How the gateway renders errors: extra headers (Retry-After, WWW-Authenticate) and numeric details."""

from __future__ import annotations

import json

from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from google.rpc import error_details_pb2

from inferno.adapters.errors import bearer_challenge, error_response
from inferno.errors import InfernoError, details_from_metadata


def test_model_not_ready_says_when_to_retry() -> None:
    response = error_response(InfernoError("model_not_ready", "Model not ready", {"retry_after_s": "7"}))
    assert response.status == 503
    assert response.headers["Retry-After"] == "7"
    plain = error_response(InfernoError("model_not_ready", "Model not ready"))
    assert plain.headers["Retry-After"] == "5"
    assert "Retry-After" not in error_response(InfernoError("model_not_found", "no")).headers


def _request(authorization: str | None = None) -> web.Request:
    headers = {"Authorization": authorization} if authorization else {}
    return make_mocked_request("GET", "/v1/models", headers=headers)


def test_a_401_without_credentials_challenges_without_an_error_code() -> None:
    refused = InfernoError("authentication_failed", "missing credentials")
    response = error_response(refused, _request())
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="inferno"'
    basic = error_response(refused, _request("Basic dXNlcjpwYXNz"))
    assert basic.headers["WWW-Authenticate"] == 'Bearer realm="inferno"'


def test_a_401_for_a_bearer_token_says_invalid_token() -> None:
    response = error_response(InfernoError("authentication_failed", "no"), _request("Bearer sk-inf-x"))
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="inferno", error="invalid_token", error_description="')
    assert "sk-inf-x" not in challenge


def test_a_403_names_the_missing_scope_and_other_errors_carry_no_challenge() -> None:
    denied = InfernoError("permission_denied", "no", {"required_permission": "admin"})
    assert bearer_challenge(denied, sent_token=True) == (
        'Bearer realm="inferno", error="insufficient_scope", scope="admin"'
    )
    assert bearer_challenge(InfernoError("model_not_found", "no"), sent_token=True) is None
    assert "WWW-Authenticate" not in error_response(InfernoError("rate_limit_exceeded", "no")).headers


def test_numeric_details_render_as_numbers_and_others_stay_strings() -> None:
    error = InfernoError(
        "rate_limit_exceeded",
        "slow down",
        {"limit": "5", "retry_after_s": "12", "param": "0", "model_id": "7", "allowed_methods": ["1"]},
    )
    details = json.loads(error_response(error).text)["error"]["details"]
    assert details == {
        "limit": 5,
        "retry_after_s": 12,
        "param": "0",
        "model_id": "7",
        "allowed_methods": ["1"],
    }
    assert isinstance(details["limit"], int)


def test_numbers_survive_the_grpc_round_trip_as_strings_then_render_as_numbers() -> None:
    sent = InfernoError("insufficient_memory", "no room", {"required_bytes": "123", "suggestion": "unload"})
    status = sent.to_grpc_status()
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    assert dict(info.metadata) == {"required_bytes": "123", "suggestion": "unload"}
    received = InfernoError(sent.code, status.message, details_from_metadata(info.metadata))
    assert received.to_body()["error"]["details"] == {"required_bytes": 123, "suggestion": "unload"}


def test_a_numeric_key_that_does_not_hold_a_number_stays_text() -> None:
    details = InfernoError("invalid_parameters", "x", {"index": "first", "tokens": "nan", "limit": "0.5"})
    assert details.to_body()["error"]["details"] == {"index": "first", "tokens": "nan", "limit": 0.5}
