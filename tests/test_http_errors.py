"""Every error case answers with the seed's body and the right status, over raw HTTP."""

from __future__ import annotations

import httpx
import pytest

from inferno.core.embedded import EMBEDDING_MODEL_ID

CHAT = "/v1/chat/completions"


def _assert_error(response: httpx.Response, status: int, code: str, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"type", "code", "message", "param", "details"}
    assert error["code"] == code
    assert error["message"]
    assert error["param"] == error["details"].get("param")
    if param is not None:
        assert error["details"]["param"] == param
    return error


def test_malformed_json_is_a_400(http: httpx.Client) -> None:
    response = http.post(CHAT, content=b'{"model": ', headers={"Content-Type": "application/json"})
    _assert_error(response, 400, "invalid_json")


def test_body_that_is_not_an_object_is_a_400(http: httpx.Client) -> None:
    _assert_error(http.post(CHAT, json=[1, 2]), 400, "invalid_json")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": "M"}, "messages"),
        ({"model": "M", "messages": "hi"}, "messages"),
        ({"model": 7, "messages": [{"role": "user", "content": "hi"}]}, "model"),
        (
            {"model": "M", "messages": [{"role": "user", "content": "hi"}], "temperature": "hot"},
            "temperature",
        ),
        ({"model": "M", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1.5}, "max_tokens"),
        ({"model": "M", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}, "stream"),
    ],
)
def test_missing_or_wrong_typed_fields_name_the_field(
    http: httpx.Client, model_id: str, body: dict, param: str
) -> None:
    if body.get("model") == "M":
        body = {**body, "model": model_id}
    _assert_error(http.post(CHAT, json=body), 400, "invalid_parameters", param)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", 2.5),
        ("temperature", -0.1),
        ("top_p", 1.5),
        ("presence_penalty", 3),
        ("frequency_penalty", -2.5),
        ("max_tokens", 0),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_out_of_range_parameters_name_the_field(
    http: httpx.Client, model_id: str, field: str, value: float, stream: bool
) -> None:
    body = {
        "model": model_id,
        "messages": [{"role": "user", "content": "hi"}],
        field: value,
        "stream": stream,
    }
    _assert_error(http.post(CHAT, json=body), 400, "invalid_parameters", field)


def test_unknown_model_is_a_404_with_suggestion(http: httpx.Client, model_id: str) -> None:
    response = http.post(CHAT, json={"model": "gpt-5", "messages": [{"role": "user", "content": "hi"}]})
    error = _assert_error(response, 404, "model_not_found")
    assert error["type"] == "invalid_request_error"
    assert error["details"]["available_models"] == [model_id, EMBEDDING_MODEL_ID]
    assert error["details"]["suggestion"]


@pytest.mark.parametrize("stream", [False, True])
def test_context_overflow_fails_before_any_token(http: httpx.Client, model_id: str, stream: bool) -> None:
    long_prompt = "word " * 9000
    body = {"model": model_id, "messages": [{"role": "user", "content": long_prompt}], "stream": stream}
    error = _assert_error(http.post(CHAT, json=body), 400, "context_length_exceeded")
    assert int(error["details"]["prompt_tokens"]) > 8192


def test_prompt_plus_max_tokens_over_context_names_max_tokens(http: httpx.Client, model_id: str) -> None:
    body = {"model": model_id, "prompt": "Hello", "max_tokens": 8192}
    _assert_error(http.post("/v1/completions", json=body), 400, "context_length_exceeded", "max_tokens")


def test_unknown_route_is_a_404_in_the_seed_body(http: httpx.Client) -> None:
    _assert_error(http.get("/v1/nothing-here"), 404, "not_found")


def test_wrong_method_is_a_405(http: httpx.Client) -> None:
    _assert_error(http.get(CHAT), 405, "method_not_allowed")


def test_a_failing_request_leaves_the_server_serving(http: httpx.Client, model_id: str) -> None:
    http.post(CHAT, content=b"\xff\xfe garbage")
    ok = http.post(
        CHAT, json={"model": model_id, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    )
    assert ok.status_code == 200


HUGE_INTEGER = 10**400
MANY_DIGITS = "1" * 5000


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", HUGE_INTEGER),
        ("top_p", HUGE_INTEGER),
        ("presence_penalty", -HUGE_INTEGER),
        ("logit_bias", {"5": HUGE_INTEGER}),
    ],
)
def test_integers_too_large_for_a_float_are_a_400(
    http: httpx.Client, model_id: str, field: str, value: object
) -> None:
    body = {"model": model_id, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, field: value}
    error = _assert_error(http.post(CHAT, json=body), 400, "invalid_parameters")
    assert error["details"]["param"].startswith(field)


def test_digit_strings_too_long_for_int_are_a_400(http: httpx.Client, model_id: str) -> None:
    body = {
        "model": model_id,
        "messages": [{"role": "user", "content": "hi"}],
        "logit_bias": {MANY_DIGITS: 1},
    }
    _assert_error(http.post(CHAT, json=body), 400, "invalid_parameters", "logit_bias")
    listing = http.get(f"/v1/responses/resp_x/input_items?limit={MANY_DIGITS}")
    _assert_error(listing, 400, "invalid_parameters", "limit")
