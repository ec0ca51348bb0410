"""response_format: the 135M model's replies parse as JSON, and as the schema's shape, because a grammar
constrains sampling."""

from __future__ import annotations

import json

import httpx
import jsonschema
from openai import OpenAI

PERSON_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0},
        "hobbies": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
    },
    "required": ["name", "age", "hobbies"],
    "additionalProperties": False,
}
PERSON_FORMAT = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON_SCHEMA}}


def _check_person(value: object) -> None:
    jsonschema.validate(value, PERSON_SCHEMA)
    assert isinstance(value, dict) and not isinstance(value["age"], bool)


def test_json_object_replies_parse_whenever_they_stop(openai_client: OpenAI, model_id: str) -> None:
    """As OpenAI documents: a reply cut by max_tokens may be unfinished JSON; one that stops always parses.

    The 135M model sometimes loops inside a string under greedy decoding, so not every reply stops.
    """
    stopped = 0
    for subject in (
        "a person with a name and an age",
        "a book with a title",
        "a city with a country",
        "a cat",
    ):
        reply = openai_client.chat.completions.create(
            model=model_id,
            messages=[{"role": "user", "content": f"Give a short JSON object for {subject}."}],
            response_format={"type": "json_object"},
            max_tokens=200, temperature=0,
        )  # fmt: skip
        choice = reply.choices[0]
        content = choice.message.content or ""
        assert content.startswith("{")
        if choice.finish_reason == "stop":
            stopped += 1
            assert isinstance(json.loads(content), dict), content
    assert stopped >= 2


def test_json_schema_replies_match_the_schema(openai_client: OpenAI, model_id: str) -> None:
    for seed in (4, 5, 6):
        reply = openai_client.chat.completions.create(
            model=model_id,
            messages=[{"role": "user", "content": "Invent a person."}],
            response_format=PERSON_FORMAT,
            max_tokens=200, temperature=0.8, seed=seed,
        )  # fmt: skip
        choice = reply.choices[0]
        assert choice.finish_reason == "stop", choice.message.content
        _check_person(json.loads(choice.message.content or ""))


def test_streamed_json_schema_reply_parses(openai_client: OpenAI, model_id: str) -> None:
    chunks = openai_client.chat.completions.create(
        model=model_id,
        messages=[{"role": "user", "content": "Invent a person."}],
        response_format=PERSON_FORMAT,
        max_tokens=200, temperature=0, stream=True,
    )  # fmt: skip
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    _check_person(json.loads(text))


def test_unconvertible_schema_is_a_400_naming_it(http: httpx.Client, model_id: str) -> None:
    body = {
        "model": model_id,
        "messages": [{"role": "user", "content": "hi"}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": {"$ref": "#/nowhere"}},
        },
    }
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["details"]["param"] == "response_format.json_schema"
