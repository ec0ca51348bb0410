"""The OpenAPI document (GET /openapi.json) against the gateway that serves it, and its page (GET /docs).

- Every route of the app's router is an operation of the document under the route's name, with its path
  parameters, and every operation is a route: the walk is over the router, so a route added anywhere fails
  here until it is documented.
- Real responses of the main routes, from the session server, validate against the document's schemas made
  closed (no property beyond those described), so a field a handler writes but the document omits fails.
- /docs loads nothing but its own files, and in headless Chromium (Debian's, driven by playwright) shows every
  operation with its parameters, request body and responses, and every schema.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from playwright.sync_api import Browser

from inferno.adapters.app import build_app
from tests.response_samples import (
    CHAT_REQUESTS,
    COMPLETION_REQUESTS,
    EMBEDDING_REQUESTS,
    error_requests,
    sse_events,
    streamed,
    with_model,
)
from tests.servers import RunningServer

ROOT = Path(__file__).resolve().parent.parent
WAIT_MS = 60_000
# The WebSocket endpoint, which OpenAPI cannot describe (adapters/openapi.py says so).
_NOT_DOCUMENTED = {"/ws"}
_JSON = "application/json"

Schema = dict[str, Any]


@pytest.fixture(scope="module")
def document(http: httpx.Client) -> Schema:
    served = http.get("/openapi.json")
    assert served.status_code == 200
    return dict(served.json())


def _served_routes() -> dict[tuple[str, str], tuple[str | None, set[str]]]:
    """(method, path) -> (route name, path parameter names) for every route of the app's router."""
    routes = {}
    for route in build_app("127.0.0.1:1").router.routes():
        if route.resource is None or route.method == "HEAD" or route.resource.canonical in _NOT_DOCUMENTED:
            continue
        path = route.resource.canonical
        routes[(route.method.lower(), path)] = (route.name, set(re.findall(r"{([^}]+)}", path)))
    return routes


def _documented_operations(document: Schema) -> dict[tuple[str, str], Schema]:
    return {(method, path): op for path, item in document["paths"].items() for method, op in item.items()}


def test_every_route_is_documented_under_its_name_with_its_path_parameters(document: Schema) -> None:
    served = _served_routes()
    documented = _documented_operations(document)
    assert not served.keys() - documented.keys(), "routes missing from the OpenAPI document"
    assert not documented.keys() - served.keys(), "documented operations no route serves"
    for key, (name, path_parameters) in served.items():
        operation = documented[key]
        assert operation["operationId"] == name, key
        declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        assert declared == path_parameters, key


def _closed(schema: Any) -> Any:
    """schema with "additionalProperties": false on every object schema that lists properties and says
    nothing of others."""
    if not isinstance(schema, dict):
        return schema
    closed: Schema = {}
    for key, value in schema.items():
        if key == "properties":
            closed[key] = {name: _closed(s) for name, s in value.items()}
        elif key in ("items", "additionalProperties", "propertyNames", "not"):
            closed[key] = _closed(value)
        elif key in ("oneOf", "anyOf", "allOf"):
            closed[key] = [_closed(s) for s in value]
        else:
            closed[key] = value
    if "properties" in schema and "additionalProperties" not in schema:
        closed["additionalProperties"] = False
    return closed


def assert_valid(document: Schema, schema: Schema, instance: Any) -> None:
    """instance validates against schema, closed, with $refs resolved in the document's components."""
    components = {name: _closed(s) for name, s in document["components"]["schemas"].items()}
    root = {**_closed(schema), "components": {"schemas": components}}
    jsonschema.Draft202012Validator(root).validate(instance)


def _response_schema(document: Schema, method: str, path: str, media: str = _JSON) -> Schema:
    content = document["paths"][path][method]["responses"]["200"]["content"]
    schema = content["text/event-stream"]["x-event-schema"] if media == "events" else content[media]["schema"]
    assert schema, f"{method} {path} documents no {media} schema"
    return dict(schema)


@pytest.mark.parametrize("name", list(CHAT_REQUESTS))
def test_chat_completions_match_the_document(
    http: httpx.Client, document: Schema, model_id: str, name: str
) -> None:
    path = "/v1/chat/completions"
    body = with_model(CHAT_REQUESTS[name], model_id)
    reply = http.post(path, json=body)
    assert reply.status_code == 200, reply.text
    assert_valid(document, _response_schema(document, "post", path), reply.json())
    for event in sse_events(http, path, streamed(body)):
        assert_valid(document, _response_schema(document, "post", path, "events"), event)


@pytest.mark.parametrize("name", list(COMPLETION_REQUESTS))
def test_completions_match_the_document(
    http: httpx.Client, document: Schema, model_id: str, name: str
) -> None:
    path = "/v1/completions"
    body = with_model(COMPLETION_REQUESTS[name], model_id)
    reply = http.post(path, json=body)
    assert reply.status_code == 200, reply.text
    assert_valid(document, _response_schema(document, "post", path), reply.json())
    for event in sse_events(http, path, streamed(body)):
        assert_valid(document, _response_schema(document, "post", path, "events"), event)


@pytest.mark.parametrize("name", list(EMBEDDING_REQUESTS))
def test_embeddings_match_the_document(
    http: httpx.Client, document: Schema, model_id: str, name: str
) -> None:
    reply = http.post("/v1/embeddings", json=with_model(EMBEDDING_REQUESTS[name], model_id))
    assert reply.status_code == 200, reply.text
    assert_valid(document, _response_schema(document, "post", "/v1/embeddings"), reply.json())


def test_models_and_model_status_match_the_document(
    http: httpx.Client, document: Schema, model_id: str
) -> None:
    for served, path in (
        ("/v1/models", "/v1/models"),
        (f"/v1/models/{model_id}", "/v1/models/{model_id}"),
        (f"/v1/models/{model_id}/status", "/v1/models/{model_id}/status"),
    ):
        reply = http.get(served)
        assert reply.status_code == 200, reply.text
        assert_valid(document, _response_schema(document, "get", path), reply.json())


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": "héllo 🔥", "with_pieces": True},
        {"messages": [{"role": "user", "content": "Hi"}], "add_special": False},
    ],
    ids=["text with pieces", "chat messages"],
)
def test_tokenize_and_detokenize_match_the_document(
    http: httpx.Client, document: Schema, model_id: str, body: dict[str, Any]
) -> None:
    tokenized = http.post("/v1/tokenize", json=with_model(body, model_id))
    assert tokenized.status_code == 200, tokenized.text
    assert_valid(document, _response_schema(document, "post", "/v1/tokenize"), tokenized.json())
    detokenized = http.post("/v1/detokenize", json={"model": model_id, "tokens": tokenized.json()["tokens"]})
    assert detokenized.status_code == 200, detokenized.text
    assert_valid(document, _response_schema(document, "post", "/v1/detokenize"), detokenized.json())


@pytest.mark.parametrize("name", list(error_requests("m")))
def test_errors_match_the_document(http: httpx.Client, document: Schema, model_id: str, name: str) -> None:
    method, path, arguments = error_requests(model_id)[name]
    reply = http.request(method, path, **arguments)
    assert 400 <= reply.status_code < 500, reply.text
    assert_valid(document, {"$ref": "#/components/schemas/Error"}, reply.json())


def test_the_docs_files_are_package_data() -> None:
    """A non-editable install serves the page: pyproject's package-data globs cover every file of static/."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "inferno.adapters.docs_page" in config["packages"]
    package = ROOT / "adapters" / "docs_page"
    patterns = config["package-data"]["inferno.adapters.docs_page"]
    covered = {path for pattern in patterns for path in package.glob(pattern) if path.is_file()}
    assert {path for path in (package / "static").rglob("*") if path.is_file()} == covered


def test_the_docs_page_loads_only_its_own_files(http: httpx.Client) -> None:
    page = http.get("/docs")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "connect-src 'self'" in policy
    linked = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert linked and all(re.match(r"/docs/|/openapi\.json$|#|data:,$", url) for url in linked), linked
    assets = [url for url in linked if url.startswith("/docs/")]
    assert sorted(assets) == ["/docs/docs.css", "/docs/docs.js"]
    for url in assets:
        reply = http.get(url)
        assert reply.status_code == 200, url
        assert reply.headers["Content-Type"].startswith(("text/javascript", "text/css")), url
        # No address of another origin, so nothing can be fetched from one (no CDN, no fonts).
        assert not re.search(r"https?://|@import|url\(", reply.text), url
    for missing in ("/docs/nope.js", "/docs/index.html", "/docs/..%2Fpyproject.toml"):
        reply = http.get(missing)
        assert reply.status_code == 404 and reply.json()["error"]["code"] == "not_found", missing


# What the page rendered, read from its DOM: each operation's section and each schema's.
_RENDERED = """() => ({
  operations: [...document.querySelectorAll("section.operation")].map((section) => ({
    method: section.dataset.method,
    path: section.dataset.path,
    parameters: [...section.querySelectorAll("[data-parameter]")].map((row) => row.dataset.parameter),
    body: [...section.querySelectorAll(".request-body > .media > .schema > table > tbody > tr")]
      .map((row) => row.dataset.property),
    statuses: [...section.querySelectorAll("[data-status]")].map((node) => node.dataset.status),
    media: [...section.querySelectorAll(".response [data-media-type]")].map((node) => node.dataset.mediaType),
    refs: [...section.querySelectorAll("a.ref")].map((link) => link.textContent),
  })),
  schemas: [...document.querySelectorAll("section.component")].map((section) => section.dataset.schema),
  brokenLinks: [...document.querySelectorAll("a[href^='#']")]
    .map((link) => link.getAttribute("href"))
    .filter((href) => !document.getElementById(href.slice(1))),
})"""


def _refs(value: Any) -> set[str]:
    """The component names a part of the document refers to."""
    if isinstance(value, dict):
        found = {value["$ref"].rsplit("/", 1)[1]} if "$ref" in value else set()
        return found.union(*(_refs(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_refs(v) for v in value))
    return set()


def test_the_docs_page_shows_every_operation_and_schema(
    browser: Browser, server: RunningServer, document: Schema
) -> None:
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.set_default_timeout(WAIT_MS)
    requested: list[str] = []
    problems: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    try:
        page.goto(server.base_url + "/docs")
        page.wait_for_function("() => window.docs && window.docs.ready")
        assert page.evaluate("() => window.docs.error") is None
        rendered = page.evaluate(_RENDERED)

        operations = _documented_operations(document)
        shown = {(o["method"], o["path"]): o for o in rendered["operations"]}
        assert shown.keys() == operations.keys()
        assert len(rendered["operations"]) == len(operations)
        for key, operation in operations.items():
            view = shown[key]
            assert view["parameters"] == [p["name"] for p in operation.get("parameters", [])], key
            request_schema = (
                operation.get("requestBody", {}).get("content", {}).get(_JSON, {}).get("schema", {})
            )
            assert view["body"] == list(request_schema.get("properties", {})), key
            assert view["statuses"] == list(operation["responses"]), key
            media = [m for response in operation["responses"].values() for m in response.get("content", {})]
            assert view["media"] == media, key
            assert set(view["refs"]) == _refs(operation), key
        assert rendered["schemas"] == list(document["components"]["schemas"])
        assert rendered["brokenLinks"] == []

        page.fill("#filter", "/v1/models")
        visible = page.evaluate(
            "() => [...document.querySelectorAll('section.operation')].filter((s) => !s.hidden)"
            ".map((s) => s.dataset.path)"
        )
        assert visible and all("/v1/models" in path for path in visible)
        assert len(visible) == sum("/v1/models" in path for _, path in operations)

        assert not problems, problems
        assert requested and all(url.startswith((server.base_url + "/", "data:")) for url in requested), (
            requested
        )
    finally:
        page.context.close()
