"""OpenAI's Responses API end to end, with the official `openai` SDK as the client: string and item input,
instructions, streamed semantic events, a two-turn conversation by previous_response_id, a function tool
round trip, structured output, store, retrieve, delete, input items, background and cancel, and stored
responses that belong to the key that made them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI
from openai.types.responses import Response, ResponseFunctionToolCall

from inferno.adapters.openai.requests import parse_chat_request
from inferno.adapters.responses.requests import parse_responses_request
from inferno.adapters.routing_key import routing_metadata
from inferno.core.database.base import Database
from inferno.core.database.heartbeat import ABANDONED_AFTER_S, beat
from inferno.core.database.open import open_database, open_sqlite
from inferno.core.responses.store import ResponseStore
from inferno.v1 import response_service_pb2 as pb
from tests.postgres_redis import running_postgres
from tests.security_fixtures import SecuredServer

GREEDY: dict[str, Any] = {"temperature": 0}
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "description": "The current weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "minLength": 1, "maxLength": 40}},
        "required": ["city"],
        "additionalProperties": False,
    },
}


SHORT_JSON: Any = {
    "format": {
        "type": "json_schema",
        "name": "reply",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"answer": {"enum": ["yes", "no"]}},
            "required": ["answer"],
            "additionalProperties": False,
        },
    }
}


def _output_types(response: Response) -> list[str]:
    return [item.type for item in response.output]


def test_a_string_input_gets_a_stored_response_with_output_text(openai_client: OpenAI, model_id: str) -> None:
    response = openai_client.responses.create(
        model=model_id, input="Say hello.", max_output_tokens=8, **GREEDY
    )
    assert response.object == "response" and response.id.startswith("resp_")
    assert response.status in ("completed", "incomplete") and response.model == model_id
    assert _output_types(response) == ["message"] and response.output_text
    assert response.usage is not None and 0 < response.usage.output_tokens <= 8
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert response.store is True and response.max_output_tokens == 8


def test_max_output_tokens_cuts_a_response_short_as_incomplete(openai_client: OpenAI, model_id: str) -> None:
    response = openai_client.responses.create(
        model=model_id,
        input="Count from one to one hundred in words.",
        max_output_tokens=3,
        extra_body={"ignore_eos": True},
    )
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"


def test_message_items_and_instructions_are_the_prompt(
    openai_client: OpenAI, http: httpx.Client, model_id: str
) -> None:
    instructions = "You answer in one word."
    items: Any = [
        {"role": "user", "content": [{"type": "input_text", "text": "Name a colour."}]},
        {"role": "assistant", "content": "Blue."},
        {"type": "message", "role": "user", "content": "Another one?"},
    ]
    response = openai_client.responses.create(
        model=model_id, input=items, instructions=instructions, max_output_tokens=4, **GREEDY
    )
    messages = [
        {"role": "system", "content": instructions},
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "Another one?"},
    ]
    prompt = http.post("/v1/tokenize", json={"model": model_id, "messages": messages}).json()
    assert response.usage is not None and response.usage.input_tokens == prompt["count"]
    assert response.instructions == instructions


def test_a_streamed_response_sends_the_semantic_events_in_order(openai_client: OpenAI, model_id: str) -> None:
    with openai_client.responses.create(
        model=model_id, input="Say hello.", max_output_tokens=12, stream=True, **GREEDY
    ) as stream:
        events = list(stream)
    types = [event.type for event in events]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        types[-1],
    ]
    assert types[-1] in ("response.completed", "response.incomplete")
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    final = events[-1]
    assert final.type in ("response.completed", "response.incomplete")
    assert deltas and deltas == final.response.output_text
    item_ids = {getattr(event, "item_id", None) for event in events} - {None}
    assert item_ids == {final.response.output[0].id}


def test_the_sdks_stream_helper_accumulates_the_same_text(openai_client: OpenAI, model_id: str) -> None:
    # A short schema makes the reply end well within max_output_tokens: the helper wants response.completed.
    with openai_client.responses.stream(
        model=model_id, input="Reply in JSON.", text=SHORT_JSON, max_output_tokens=60, **GREEDY
    ) as stream:
        text = "".join(event.delta for event in stream if event.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == final.output_text and set(json.loads(text)) == {"answer"}


def test_previous_response_id_continues_the_conversation(
    openai_client: OpenAI, http: httpx.Client, model_id: str
) -> None:
    first = openai_client.responses.create(
        model=model_id, input="My name is Ada.", instructions="Be brief.", max_output_tokens=8, **GREEDY
    )
    second = openai_client.responses.create(
        model=model_id, input="What is my name?", previous_response_id=first.id, max_output_tokens=8, **GREEDY
    )
    assert second.previous_response_id == first.id and second.instructions is None
    # The earlier turn's instructions are not carried over; its input and output are.
    messages = [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": first.output_text},
        {"role": "user", "content": "What is my name?"},
    ]
    prompt = http.post("/v1/tokenize", json={"model": model_id, "messages": messages}).json()
    assert second.usage is not None and second.usage.input_tokens == prompt["count"]


def test_a_forced_function_call_round_trip(openai_client: OpenAI, model_id: str) -> None:
    call_response = openai_client.responses.create(
        model=model_id,
        input="What is the weather in Paris?",
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice={"type": "function", "name": "get_weather"},
        max_output_tokens=60,
        **GREEDY,
    )
    calls = [item for item in call_response.output if item.type == "function_call"]
    assert len(calls) >= 1 and call_response.status == "completed"
    call = calls[0]
    assert isinstance(call, ResponseFunctionToolCall) and call.name == "get_weather"
    assert call.call_id.startswith("call_") and call.id and call.id.startswith("fc_")
    assert isinstance(json.loads(call.arguments)["city"], str)
    assert call_response.tool_choice.type == "function"  # type: ignore[union-attr]
    answer = openai_client.responses.create(
        model=model_id,
        previous_response_id=call_response.id,
        input=[
            {"type": "function_call_output", "call_id": c.call_id, "output": '{"sky": "sunny"}'}
            for c in calls
        ],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice="none",
        max_output_tokens=16,
        **GREEDY,
    )
    assert _output_types(answer) == ["message"] and answer.output_text
    items = openai_client.responses.input_items.list(answer.id, order="asc")
    assert [item.type for item in items.data] == ["function_call_output"] * len(calls)


def test_a_streamed_function_call_sends_argument_deltas(openai_client: OpenAI, model_id: str) -> None:
    stream = openai_client.responses.create(
        model=model_id,
        input="What is the weather in Rome?",
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice="required",
        max_output_tokens=60,
        stream=True,
        **GREEDY,
    )
    events = list(stream)
    deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert done and done[0].name == "get_weather"  # type: ignore[attr-defined]
    assert deltas.startswith(done[0].arguments)  # the first call's arguments come first
    assert json.loads(done[0].arguments)["city"]


def test_text_format_json_schema_constrains_the_output(openai_client: OpenAI, model_id: str) -> None:
    response = openai_client.responses.create(
        model=model_id, input="Reply in JSON.", text=SHORT_JSON, max_output_tokens=60, **GREEDY
    )
    assert set(json.loads(response.output_text)) == {"answer"}
    assert response.text.format.type == "json_schema"  # type: ignore[union-attr]


def test_retrieve_returns_the_stored_response_and_delete_removes_it(
    openai_client: OpenAI, model_id: str
) -> None:
    created = openai_client.responses.create(model=model_id, input="Hi", max_output_tokens=4, **GREEDY)
    fetched = openai_client.responses.retrieve(created.id)
    assert fetched.id == created.id and fetched.output_text == created.output_text
    assert fetched.status == created.status
    openai_client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        openai_client.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        openai_client.responses.delete(created.id)


def test_a_response_with_store_false_is_not_kept(openai_client: OpenAI, model_id: str) -> None:
    created = openai_client.responses.create(
        model=model_id, input="Hi", max_output_tokens=2, store=False, **GREEDY
    )
    assert created.store is False
    with pytest.raises(openai.NotFoundError):
        openai_client.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError) as caught:
        openai_client.responses.create(model=model_id, input="Hi", previous_response_id=created.id)
    assert caught.value.body["details"]["param"] == "previous_response_id"  # type: ignore[index]


def test_input_items_are_listed_newest_first_and_paged(openai_client: OpenAI, model_id: str) -> None:
    items: Any = [{"role": "user", "content": f"Message {i}"} for i in range(3)]
    created = openai_client.responses.create(model=model_id, input=items, max_output_tokens=1)
    newest_first = openai_client.responses.input_items.list(created.id)
    texts = [item.content[0].text for item in newest_first.data]  # type: ignore[union-attr]
    assert texts == ["Message 2", "Message 1", "Message 0"]
    assert all(item.id.startswith("msg_") for item in newest_first.data)  # type: ignore[union-attr]
    first_page = openai_client.responses.input_items.list(created.id, order="asc", limit=2)
    assert first_page.has_more and first_page.last_id == newest_first.data[1].id  # type: ignore[union-attr]
    rest = openai_client.responses.input_items.list(created.id, order="asc", after=first_page.last_id)
    assert [item.id for item in rest.data] == [newest_first.data[0].id]  # type: ignore[union-attr]


def test_a_background_response_can_be_fetched_when_done(openai_client: OpenAI, model_id: str) -> None:
    created = openai_client.responses.create(
        model=model_id, input="Hi", max_output_tokens=4, background=True, **GREEDY
    )
    assert created.background is True and created.status in ("queued", "in_progress")
    deadline = time.monotonic() + 60
    fetched = openai_client.responses.retrieve(created.id)
    while fetched.status in ("queued", "in_progress") and time.monotonic() < deadline:
        time.sleep(0.2)
        fetched = openai_client.responses.retrieve(created.id)
    assert fetched.status in ("completed", "incomplete") and fetched.output_text


def test_cancel_stops_a_background_response(openai_client: OpenAI, model_id: str) -> None:
    created = openai_client.responses.create(
        model=model_id,
        input="Count to a thousand.",
        max_output_tokens=1500,
        background=True,
        extra_body={"ignore_eos": True},
    )
    cancelled = openai_client.responses.cancel(created.id)
    assert cancelled.status == "cancelled"
    time.sleep(0.5)
    assert openai_client.responses.retrieve(created.id).status == "cancelled"


def test_a_stream_whose_client_goes_away_is_stored_as_cancelled(
    openai_client: OpenAI, http: httpx.Client, model_id: str
) -> None:
    body = {
        "model": model_id,
        "input": "Count to a thousand.",
        "max_output_tokens": 1500,
        "ignore_eos": True,
        "stream": True,
    }
    with http.stream("POST", "/v1/responses", json=body) as reply:
        lines = reply.iter_lines()
        created = next(json.loads(line[len("data: ") :]) for line in lines if line.startswith("data: "))
    response_id = created["response"]["id"]
    deadline = time.monotonic() + 30
    status = openai_client.responses.retrieve(response_id).status
    while status == "in_progress" and time.monotonic() < deadline:
        time.sleep(0.2)
        status = openai_client.responses.retrieve(response_id).status
    assert status == "cancelled"


def test_cancel_refuses_a_response_that_was_not_in_the_background(
    openai_client: OpenAI, model_id: str
) -> None:
    created = openai_client.responses.create(model=model_id, input="Hi", max_output_tokens=1)
    with pytest.raises(openai.BadRequestError):
        openai_client.responses.cancel(created.id)
    with pytest.raises(openai.NotFoundError):
        openai_client.responses.cancel("resp_does_not_exist")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "Hi"}, "model"),
        ({"model": "m"}, "input"),
        ({"model": "m", "input": []}, "input"),
        ({"model": "m", "input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
        ({"model": "m", "input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
        ({"model": "m", "input": "Hi", "tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"model": "m", "input": "Hi", "text": {"format": {"type": "xml"}}}, "text.format.type"),
        ({"model": "m", "input": "Hi", "max_output_tokens": -1}, "max_output_tokens"),
        ({"model": "m", "input": "Hi", "background": True, "store": False}, "background"),
    ],
)
def test_malformed_requests_get_a_400_naming_the_field(
    http: httpx.Client, model_id: str, body: dict[str, Any], param: str
) -> None:
    body = {**body, "model": model_id} if "model" in body else body
    reply = http.post("/v1/responses", json=body)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["details"]["param"] == param


def test_an_unknown_model_is_a_404_before_any_event(http: httpx.Client) -> None:
    reply = http.post("/v1/responses", json={"model": "no-such-model", "input": "Hi", "stream": True})
    assert reply.status_code == 404 and reply.json()["error"]["code"] == "model_not_found"


def test_a_stored_response_belongs_to_the_key_that_made_it(secured: SecuredServer) -> None:
    _, owner_secret = secured.create_key(["inference"])
    _, other_secret = secured.create_key(["inference"])
    with secured.client(owner_secret) as owner:
        model = owner.get("/v1/models").json()["data"][0]["id"]
        created = owner.post("/v1/responses", json={"model": model, "input": "Hi", "max_output_tokens": 1})
        assert created.status_code == 200, created.text
        response_id = created.json()["id"]
        assert owner.get(f"/v1/responses/{response_id}").status_code == 200
    with secured.client(other_secret) as other:
        for method, path in [
            ("GET", f"/v1/responses/{response_id}"),
            ("GET", f"/v1/responses/{response_id}/input_items"),
            ("DELETE", f"/v1/responses/{response_id}"),
            ("POST", f"/v1/responses/{response_id}/cancel"),
        ]:
            reply = other.request(method, path)
            assert reply.status_code == 404 and reply.json()["error"]["code"] == "not_found", (method, path)
        follow_up = {"model": model, "input": "Hi", "previous_response_id": response_id}
        assert other.post("/v1/responses", json=follow_up).status_code == 404
    with secured.client(owner_secret) as owner:
        assert owner.get(f"/v1/responses/{response_id}").status_code == 200


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with running_postgres() as url:
        yield url


def test_the_store_is_the_same_code_on_sqlite_and_postgresql(postgres_url: str, tmp_path: Path) -> None:
    history = [pb.ResponseItem(id="msg_1", message=pb.ResponseMessage(role="user"))]
    for database in (open_sqlite(tmp_path / "inferno.db"), open_database(postgres_url, tmp_path)):
        store = ResponseStore(database)
        response = pb.Response(id="resp_1", status=pb.RESPONSE_STATUS_IN_PROGRESS)
        store.add("api_key:key_a", response, history)
        assert store.get("api_key:key_b", "resp_1") is None
        stored = store.get("api_key:key_a", "resp_1")
        assert stored is not None and stored.history == history and stored.response == response
        response.status = pb.RESPONSE_STATUS_CANCELLED
        assert store.update("api_key:key_a", response)
        # A cancelled response keeps its status: a generation that ends later does not overwrite it.
        response.status = pb.RESPONSE_STATUS_COMPLETED
        assert not store.update("api_key:key_a", response)
        assert not store.delete("api_key:key_b", "resp_1")
        assert store.delete("api_key:key_a", "resp_1") and store.get("api_key:key_a", "resp_1") is None
        database.close()


def test_a_restart_fails_the_responses_its_core_left_unfinished_and_only_those(
    postgres_url: str, tmp_path: Path
) -> None:
    for database in (open_sqlite(tmp_path / "inferno.db"), open_database(postgres_url, tmp_path)):
        queued = pb.RESPONSE_STATUS_QUEUED
        ResponseStore(database, runner="host:/a").add("key_a", pb.Response(id="resp_a", status=queued), [])
        ResponseStore(database, runner="host:/b").add("key_b", pb.Response(id="resp_b", status=queued), [])
        ResponseStore(database, runner="host:/a")  # core a starts again
        left_by_a = _stored(database, "key_a", "resp_a")
        assert left_by_a.status == pb.RESPONSE_STATUS_FAILED and left_by_a.error.code == "core_unavailable"
        assert _stored(database, "key_b", "resp_b").status == queued, "core b's response is core b's"
        database.close()


def test_the_responses_of_a_core_that_stopped_beating_are_failed_by_another(
    postgres_url: str, tmp_path: Path
) -> None:
    """A core that never comes back (a pod replaced under a new name) leaves no response in progress: once
    its heartbeat is ABANDONED_AFTER_S old, the next beat of any other core fails its unfinished ones (and
    its conversion jobs, in test_conversion_jobs.py)."""
    for database in (open_sqlite(tmp_path / "inferno.db"), open_database(postgres_url, tmp_path)):
        running = pb.RESPONSE_STATUS_IN_PROGRESS
        gone, alive = ResponseStore(database, runner="pod-1:/d"), ResponseStore(database, runner="pod-2:/d")
        gone.add("key_a", pb.Response(id="resp_gone", status=running), [])
        alive.add("key_b", pb.Response(id="resp_alive", status=running), [])
        done = pb.Response(id="resp_done", status=pb.RESPONSE_STATUS_COMPLETED)
        gone.add("key_a", done, [])
        # A runner that never beat (an older release) is not judged by heartbeats.
        ResponseStore(database, runner="old:/d").add("key_c", pb.Response(id="resp_old", status=running), [])
        start = 1_000_000.0
        beat(database, "pod-1:/d", now=start)
        assert alive.fail_abandoned(beat(database, "pod-2:/d", now=start)) == 0
        later = beat(database, "pod-2:/d", now=start + ABANDONED_AFTER_S - 1)
        assert alive.fail_abandoned(later) == 0, "silent, but not for long enough"
        assert alive.fail_abandoned(beat(database, "pod-2:/d", now=start + ABANDONED_AFTER_S + 1)) == 1
        failed = _stored(database, "key_a", "resp_gone")
        assert failed.status == pb.RESPONSE_STATUS_FAILED and failed.error.code == "core_unavailable"
        assert _stored(database, "key_a", "resp_done") == done
        assert _stored(database, "key_b", "resp_alive").status == running
        assert _stored(database, "key_c", "resp_old").status == running
        database.close()


def _stored(database: Database, owner: str, response_id: str) -> pb.Response:
    stored = ResponseStore(database, runner="host:/reader").get(owner, response_id)
    assert stored is not None
    return stored.response


def test_a_response_is_routed_to_the_core_the_same_chat_would_reach() -> None:
    """Envoy's ring hash keeps a conversation on one core's KV cache; a response and the chat it becomes
    share the key, and a follow-up (whose opening only the core knows) is routed by its model alone."""
    first = parse_responses_request({"model": "m", "instructions": "Be brief.", "input": "Hi"}).params
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    chat = parse_chat_request({"model": "m", "messages": messages}).params
    assert routing_metadata(pb.CreateResponseRequest(params=first)) == routing_metadata(chat)
    follow_up = parse_responses_request({"model": "m", "input": "Hi", "previous_response_id": "resp_1"})
    assert routing_metadata(pb.StreamResponseRequest(params=follow_up.params)) == (("x-inferno-model", "m"),)
