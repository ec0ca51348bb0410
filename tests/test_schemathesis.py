"""schemathesis against the live session server, driven by the OpenAPI document it serves at /openapi.json.

Every documented operation but the two that would change the session server for other tests (unloading a
model, revoking a key) gets CASES_PER_OPERATION generated requests, valid and invalid by the document, with a
fixed seed. No response may be a 5xx, and every other non-2xx must be the seed's error body; an
invalid_parameters error names its field in details.param.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.specs.openapi.schemas import OpenApiSchema

from inferno.adapters.app import build_app
from inferno.adapters.openapi import DOCUMENT
from tests.servers import RunningServer

CASES_PER_OPERATION = 25
_EXCLUDED = {("post", "/v1/models/{model_id}/unload"), ("delete", "/v1/auth/keys/{key_id}")}
OPERATIONS = [
    (method, path)
    for path, methods in DOCUMENT["paths"].items()
    for method in methods
    if (method, path) not in _EXCLUDED
]
# Generated bodies keep their shape, but what they ask the model to generate stays small: a request that
# leaves out max_tokens or asks for millions would run to the end of the context.
_SMALL = {"max_tokens": 4, "max_completion_tokens": 4, "max_output_tokens": 4, "n": 2, "best_of": 2}
_GENERATING = {"/v1/chat/completions", "/v1/completions", "/v1/batch", "/v1/messages", "/v1/responses"}
# Refusals on the server's configuration, not on a field: the session server has no [security] api_keys and
# no models directory. They carry no details.param (reported on the reliability issue: they want a code of
# their own naming the setting); any other invalid_parameters error must name its field.
_CONFIGURATION_REFUSALS = ("API keys are not enabled", "conversion needs a models directory")
CASES_RUN: Counter[str] = Counter()
STATUSES: Counter[tuple[str, int]] = Counter()


@pytest.fixture(scope="module")
def fuzz_schema(server: RunningServer) -> OpenApiSchema:
    served = httpx.get(server.base_url + "/openapi.json", timeout=30)
    assert served.status_code == 200
    document = served.json()
    assert document == json.loads(json.dumps(DOCUMENT))
    return schemathesis.openapi.from_dict(document)


@pytest.fixture(scope="module", autouse=True)
def _report_counts() -> Iterator[None]:
    yield
    print(f"\nschemathesis: {len(CASES_RUN)} operations, {sum(CASES_RUN.values())} cases")
    for (operation, status), count in sorted(STATUSES.items()):
        print(f"  {operation}: {count} x {status}")


def _bounded(body: Any, model: str | None, generating: bool) -> Any:
    if not isinstance(body, dict) or not generating:
        return body
    body = dict(body)
    if model is not None and isinstance(body.get("model"), str):
        body["model"] = model
    for name, cap in _SMALL.items():
        value = body.get(name)
        required = name in ("max_tokens", "max_output_tokens") and name not in body
        if required or (type(value) is int and value > cap):
            body[name] = cap
    if isinstance(body.get("requests"), list):
        body["requests"] = [_bounded(item, None, True) for item in body["requests"][:4]]
    return body


def _check(case: Case, status: int, text: str) -> None:
    where = f"{case.method} {case.formatted_path} body={case.body!r:.500} query={case.query!r}"
    assert status < 500, f"{status} for {where}: {text[:500]}"
    if status < 400:
        return
    body = json.loads(text)
    error = body["error"]
    assert {"type", "code", "message", "details"} <= error.keys(), where
    assert all(isinstance(error[key], str) for key in ("type", "code", "message")), where
    assert isinstance(error["details"], dict), where
    if error["code"] == "invalid_parameters" and not error["message"].startswith(_CONFIGURATION_REFUSALS):
        assert isinstance(error["details"].get("param"), str), f"no param named for {where}: {text[:500]}"
    if status == 429:
        assert error["code"] == "rate_limit_exceeded", where


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m.upper()} {p}" for m, p in OPERATIONS])
def test_no_server_errors_and_seed_error_bodies(
    fuzz_schema: OpenApiSchema, server: RunningServer, model_id: str, method: str, path: str
) -> None:
    operation = fuzz_schema[path][method.upper()]
    takes_input = (
        "requestBody" in DOCUMENT["paths"][path][method] or "parameters" in DOCUMENT["paths"][path][method]
    )
    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE] if takes_input else [GenerationMode.POSITIVE]
    cases = st.one_of(*(operation.as_strategy(generation_mode=mode) for mode in modes))

    @settings(
        max_examples=CASES_PER_OPERATION,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases, real_model=st.booleans())
    def run(case: Case, real_model: bool) -> None:
        case.body = _bounded(case.body, model_id if real_model else None, path in _GENERATING)
        response = case.call(base_url=server.base_url, timeout=60)
        CASES_RUN[f"{method} {path}"] += 1
        STATUSES[(f"{method} {path}", response.status_code)] += 1
        _check(case, response.status_code, response.text)

    run()


def test_the_document_describes_every_route_the_gateway_serves() -> None:
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in build_app("127.0.0.1:1").router.routes()
        if route.resource is not None and route.method != "HEAD" and route.resource.canonical != "/ws"
    }
    documented = {(method, path) for path, methods in DOCUMENT["paths"].items() for method in methods}
    assert served == documented
