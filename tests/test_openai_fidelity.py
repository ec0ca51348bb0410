"""Fidelity to OpenAI's published schemas: what the session server returns validates, strictly, against the
official `openai` SDK's types, which are generated from OpenAI's OpenAPI document (openai/openai-openapi).

Three kinds of difference are found: a field the type does not have ("extra": the SDK keeps it, but OpenAI
does not send it), a value the type does not allow ("type"), and a field OpenAI's document requires that the
response leaves out ("missing"; the SDK's types make nullable fields optional, so REQUIRED_NULLABLE lists
them). Each one a response shows must be listed in the table of docs/openai-fidelity.md, with why; anything
else fails. Nothing is downloaded: the types ship with the installed SDK.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import pydantic
import pytest
from openai import BaseModel
from openai.types import Completion, CreateEmbeddingResponse, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.shared import ErrorObject

from tests.docs_blocks import generated_block
from tests.response_samples import (
    CHAT_REQUESTS,
    COMPLETION_REQUESTS,
    EMBEDDING_REQUESTS,
    error_requests,
    sse_events,
    streamed,
    with_model,
)

# Fields OpenAI's OpenAPI document (openai/openai-openapi) lists as required but allows to be null, which the
# SDK's types declare optional; by object, as paths ("[]": each item of an array). A field under an object
# that is null or absent is not looked for.
REQUIRED_NULLABLE: dict[str, tuple[str, ...]] = {
    "ChatCompletion": (
        "choices[].logprobs",
        "choices[].message.content",
        "choices[].message.refusal",
        "choices[].logprobs.content",
        "choices[].logprobs.refusal",
        "choices[].logprobs.content[].bytes",
        "choices[].logprobs.content[].top_logprobs[].bytes",
    ),
    "ChatCompletionChunk": (
        "choices[].finish_reason",
        "choices[].logprobs.content",
        "choices[].logprobs.refusal",
        "choices[].logprobs.content[].bytes",
        "choices[].logprobs.content[].top_logprobs[].bytes",
    ),
    "Completion": ("choices[].logprobs",),
    "Completion chunk": ("choices[].logprobs",),
    "ErrorObject": ("code", "param"),
}


class ListModelsResponse(BaseModel):
    """OpenAI's ListModelsResponse; the SDK reads the list as a page and has no type of its own for it."""

    object: Literal["list"]
    data: list[Model]


@dataclass(frozen=True, order=True)
class Difference:
    """One way a response differs from an SDK type: the object (the type, or "Completion chunk" for the
    streamed text_completion objects the SDK also reads as Completion), the field's path and the kind."""

    object: str
    field: str
    kind: Literal["extra", "type", "missing"]


def documented_differences() -> set[Difference]:
    """The rows of the table between the `differences` markers of docs/openai-fidelity.md."""
    rows = [line for line in generated_block("openai-fidelity.md", "differences").splitlines() if line]
    differences = set()
    for row in rows[2:]:  # the header and its separator
        cells = [cell.strip().strip("`") for cell in row.strip("|").split("|")]
        kind = cells[2]
        assert kind in ("extra", "type", "missing"), row
        differences.add(Difference(cells[0], cells[1], kind))  # type: ignore[arg-type]
    return differences


DOCUMENTED = documented_differences()


def differences(sdk_type: type[pydantic.BaseModel], value: Any, label: str | None = None) -> set[Difference]:
    """How value (a parsed JSON response) differs from sdk_type under strict validation of its JSON."""
    name = label or sdk_type.__name__
    found = {Difference(name, field, "extra") for field in _unknown_fields(value, sdk_type, "")}
    found |= {
        Difference(name, path, "missing")
        for path in REQUIRED_NULLABLE.get(name, ())
        if _lacks(value, path.split("."))
    }
    try:
        sdk_type.model_validate_json(json.dumps(value), strict=True)
    except pydantic.ValidationError as error:
        found |= {Difference(name, _field_path(e["loc"]), "type") for e in error.errors()}
    return found


def assert_faithful(sdk_type: type[pydantic.BaseModel], value: Any, label: str | None = None) -> None:
    undocumented = differences(sdk_type, value, label) - DOCUMENTED
    assert not undocumented, (
        f"not in docs/openai-fidelity.md: {sorted(undocumented)!r}\n{json.dumps(value)[:2000]}"
    )


def _field_path(loc: tuple[int | str, ...]) -> str:
    """("choices", 0, "logprobs", "token_logprobs", 1) -> "choices[].logprobs.token_logprobs[]"."""
    path = ""
    for part in loc:
        path += "[]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path


def _lacks(node: Any, keys: list[str]) -> bool:
    """Whether an object on the path of keys ("choices[]", "logprobs", ...) lacks the next key."""
    if not keys or not isinstance(node, dict):
        return False
    key = keys[0].removesuffix("[]")
    if key not in node:
        return True
    children = node[key] if keys[0].endswith("[]") and isinstance(node[key], list) else [node[key]]
    return any(_lacks(child, keys[1:]) for child in children)


def _unknown_fields(value: Any, annotation: Any, path: str) -> set[str]:
    """The paths of the object keys in value that annotation (an SDK type, or a list, dict, union or
    Optional of them) does not declare; within a union, the first member that accepts the value is used."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unknown_fields(value, typing.get_args(annotation)[0], path)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _unknown_fields(value, _accepting_member(members, value), path)
    if origin is list and isinstance(value, list):
        (item,) = typing.get_args(annotation)
        return {field for entry in value for field in _unknown_fields(entry, item, path + "[]")}
    if origin is dict and isinstance(value, dict):
        _, item = typing.get_args(annotation)
        return {field for entry in value.values() for field in _unknown_fields(entry, item, path + "{}")}
    if (
        isinstance(annotation, type)
        and issubclass(annotation, pydantic.BaseModel)
        and isinstance(value, dict)
    ):
        fields = {info.alias or name: info.annotation for name, info in annotation.model_fields.items()}
        unknown = set()
        for key, entry in value.items():
            inner = f"{path}.{key}" if path else key
            if key not in fields:
                unknown.add(inner)
            else:
                unknown |= _unknown_fields(entry, fields[key], inner)
        return unknown
    return set()


def _accepting_member(members: list[Any], value: Any) -> Any:
    for member in members:
        try:
            pydantic.TypeAdapter(member).validate_python(value)
        except pydantic.ValidationError:
            continue
        return member
    return members[0]


@pytest.mark.parametrize("name", list(CHAT_REQUESTS))
def test_chat_completions_are_openais_chat_completion(http: httpx.Client, model_id: str, name: str) -> None:
    reply = http.post("/v1/chat/completions", json=with_model(CHAT_REQUESTS[name], model_id))
    assert reply.status_code == 200, reply.text
    assert_faithful(ChatCompletion, reply.json())


@pytest.mark.parametrize("name", list(CHAT_REQUESTS))
def test_chat_stream_chunks_are_openais_chat_completion_chunk(
    http: httpx.Client, model_id: str, name: str
) -> None:
    chunks = sse_events(http, "/v1/chat/completions", streamed(with_model(CHAT_REQUESTS[name], model_id)))
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] is not None
    for chunk in chunks:
        assert_faithful(ChatCompletionChunk, chunk)


@pytest.mark.parametrize("name", list(COMPLETION_REQUESTS))
def test_completions_are_openais_completion(http: httpx.Client, model_id: str, name: str) -> None:
    reply = http.post("/v1/completions", json=with_model(COMPLETION_REQUESTS[name], model_id))
    assert reply.status_code == 200, reply.text
    assert_faithful(Completion, reply.json())


@pytest.mark.parametrize("name", list(COMPLETION_REQUESTS))
def test_completion_stream_chunks_are_openais_completion(
    http: httpx.Client, model_id: str, name: str
) -> None:
    chunks = sse_events(http, "/v1/completions", streamed(with_model(COMPLETION_REQUESTS[name], model_id)))
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] is not None
    for chunk in chunks:
        assert_faithful(Completion, chunk, label="Completion chunk")


@pytest.mark.parametrize("name", list(EMBEDDING_REQUESTS))
def test_embeddings_are_openais_create_embedding_response(
    http: httpx.Client, model_id: str, name: str
) -> None:
    reply = http.post("/v1/embeddings", json=with_model(EMBEDDING_REQUESTS[name], model_id))
    assert reply.status_code == 200, reply.text
    assert_faithful(CreateEmbeddingResponse, reply.json())


def test_the_model_list_and_a_model_are_openais(http: httpx.Client, model_id: str) -> None:
    listed = http.get("/v1/models").json()
    assert_faithful(ListModelsResponse, listed)
    assert_faithful(Model, http.get(f"/v1/models/{model_id}").json())


@pytest.mark.parametrize("name", list(error_requests("m")))
def test_errors_are_openais_error_response(http: httpx.Client, model_id: str, name: str) -> None:
    method, path, arguments = error_requests(model_id)[name]
    reply = http.request(method, path, **arguments)
    assert 400 <= reply.status_code < 500, reply.text
    body = reply.json()
    assert list(body) == ["error"]
    assert_faithful(ErrorObject, body["error"])


def test_every_documented_difference_names_a_field_of_a_checked_type() -> None:
    """The table stays about these types: each row's object is one this file checks."""
    checked = {
        "ChatCompletion",
        "ChatCompletionChunk",
        "Completion",
        "Completion chunk",
        "CreateEmbeddingResponse",
        "ListModelsResponse",
        "Model",
        "ErrorObject",
    }
    assert {difference.object for difference in DOCUMENTED} <= checked
    assert set(REQUIRED_NULLABLE) <= checked
