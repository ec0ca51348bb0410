"""POST /v1/batch: chat and completion items run together through the continuous batcher, keep their ids and
fail alone; what is wrong with the batch itself (its model, its size, its shape) fails it whole."""

from __future__ import annotations

from typing import Any

import grpc
import httpx
import pytest
from openai import OpenAI

from inferno.core.embedded import EMBEDDING_MODEL_ID
from inferno.errors import error_from_rpc
from inferno.v1 import common_pb2, inference_service_pb2_grpc
from inferno.v1 import inference_service_pb2 as pb
from tests.grpc_helpers import chat_params, engine_stats
from tests.servers import running_inferno

# The default [security] max_batch_items.
MAX_BATCH_ITEMS = 256

QUESTIONS = {"req1": "Hello", "req2": "Goodbye", "req3": "What is 2 + 2?"}
HELLO = [{"role": "user", "content": "Hello"}]


def test_batch_answers_match_single_requests_and_keep_their_ids(
    http: httpx.Client, openai_client: OpenAI, model_id: str
) -> None:
    body = {
        "model": model_id,
        "max_tokens": 16,
        "temperature": 0,
        "requests": [{"id": i, "messages": [{"role": "user", "content": q}]} for i, q in QUESTIONS.items()],
    }
    reply = http.post("/v1/batch", json=body)
    assert reply.status_code == 200, reply.text
    batch = reply.json()
    assert batch["object"] == "batch_completion"
    assert [r["id"] for r in batch["responses"]] == list(QUESTIONS)
    for entry in batch["responses"]:
        single = openai_client.chat.completions.create(
            model=model_id, messages=[{"role": "user", "content": QUESTIONS[entry["id"]]}], max_tokens=16,
            temperature=0,
        )  # fmt: skip
        assert entry["choices"][0]["message"]["content"] == single.choices[0].message.content
        assert single.usage is not None
        assert entry["usage"]["total_tokens"] == single.usage.total_tokens


def test_batch_items_decode_together(http: httpx.Client, grpc_channel: grpc.Channel, model_id: str) -> None:
    before = engine_stats(grpc_channel, model_id).decode_steps
    body = {
        "model": model_id,
        "max_tokens": 12,
        "ignore_eos": True,
        "requests": [
            {"id": str(i), "messages": [{"role": "user", "content": f"Count to {i}"}]} for i in range(4)
        ],
    }
    reply = http.post("/v1/batch", json=body).json()
    generated = sum(r["usage"]["completion_tokens"] for r in reply["responses"])
    assert generated == 48
    steps = engine_stats(grpc_channel, model_id).decode_steps - before
    assert steps < generated, f"{steps} decode steps for {generated} tokens: the items ran one after another"


def test_one_bad_item_fails_alone(http: httpx.Client, model_id: str) -> None:
    body = {
        "model": model_id,
        "max_tokens": 4,
        "requests": [
            {"id": "good", "messages": [{"role": "user", "content": "Hi"}]},
            {"id": "too-hot", "messages": [{"role": "user", "content": "Hi"}], "temperature": 5},
            {"id": "no-messages"},
            {"id": "unknown-model", "model": "nope", "messages": [{"role": "user", "content": "Hi"}]},
        ],
    }
    responses = {r["id"]: r for r in http.post("/v1/batch", json=body).json()["responses"]}
    assert responses["good"]["choices"][0]["message"]["content"]
    assert responses["too-hot"]["error"]["code"] == "invalid_parameters"
    assert responses["too-hot"]["error"]["details"]["param"] == "temperature"
    assert responses["no-messages"]["error"]["details"]["param"] == "messages"
    assert responses["unknown-model"]["error"]["code"] == "model_not_found"
    assert responses["unknown-model"]["error"]["details"]["available_models"] == [
        model_id,
        EMBEDDING_MODEL_ID,
    ]


def test_batch_without_requests_is_a_400(http: httpx.Client, model_id: str) -> None:
    reply = http.post("/v1/batch", json={"model": model_id, "requests": []})
    assert reply.status_code == 400
    assert reply.json()["error"]["details"]["param"] == "requests"


def test_core_refuses_a_batch_over_the_cap_over_grpc(grpc_channel: grpc.Channel, model_id: str) -> None:
    before = engine_stats(grpc_channel, model_id).requests_total
    items = [
        pb.BatchItem(id=str(i), params=chat_params(model_id, "Hi", 1)) for i in range(MAX_BATCH_ITEMS + 1)
    ]
    stub = inference_service_pb2_grpc.InferenceServiceStub(grpc_channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateBatch(pb.CreateBatchRequest(items=items))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    error = error_from_rpc(caught.value)
    assert error.code == "invalid_parameters" and error.details["param"] == "requests"
    assert f"at most {MAX_BATCH_ITEMS} items, got {MAX_BATCH_ITEMS + 1}" in error.message
    assert engine_stats(grpc_channel, model_id).requests_total == before, "a refused batch ran items"


def test_batch_over_the_cap_is_the_cores_400(http: httpx.Client, model_id: str) -> None:
    message = [{"role": "user", "content": "Hi"}]
    requests = [{"id": i, "messages": message} for i in range(MAX_BATCH_ITEMS + 1)]
    reply = http.post("/v1/batch", json={"model": model_id, "max_tokens": 1, "requests": requests})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["code"] == "invalid_parameters" and error["details"]["param"] == "requests"
    assert f"at most {MAX_BATCH_ITEMS} items" in error["message"]


def test_the_batch_cap_is_the_cores_setting(model_id: str) -> None:
    with running_inferno(env={"INFERNO_MAX_BATCH_ITEMS": "2"}) as small:
        message = [{"role": "user", "content": "Hi"}]
        body = {
            "model": model_id,
            "max_tokens": 1,
            "requests": [{"id": i, "messages": message} for i in range(3)],
        }
        reply = httpx.post(small.base_url + "/v1/batch", json=body, timeout=60)
    assert reply.status_code == 400
    assert "at most 2 items, got 3" in reply.json()["error"]["message"]


def _error(reply: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The seed's error body (with OpenAI's param), alone."""
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert list(body) == ["error"]
    assert set(body["error"]) == {"type", "code", "message", "param", "details"}
    assert body["error"]["code"] == code
    return dict(body["error"])


def test_an_unknown_batch_model_is_the_same_404_as_a_single_request(http: httpx.Client) -> None:
    body = {"model": "gpt-5", "requests": [{"id": "req1", "messages": HELLO}], "max_tokens": 50}
    batch = _error(http.post("/v1/batch", json=body), 404, "model_not_found")
    single = http.post("/v1/chat/completions", json={"model": "gpt-5", "messages": HELLO})
    assert batch == _error(single, 404, "model_not_found")


def test_an_unknown_batch_model_fails_it_even_when_every_item_is_malformed(http: httpx.Client) -> None:
    body = {"model": "gpt-5", "requests": [{"id": "no-messages"}, 7]}
    _error(http.post("/v1/batch", json=body), 404, "model_not_found")


@pytest.mark.parametrize("model", [None, ""])
def test_a_batch_without_a_model_is_a_400_naming_model(http: httpx.Client, model: str | None) -> None:
    body: dict[str, Any] = {"requests": [{"id": "req1", "messages": HELLO}]}
    if model is not None:
        body["model"] = model
    error = _error(http.post("/v1/batch", json=body), 400, "invalid_parameters")
    assert error["details"]["param"] == "model"


def test_a_batch_model_of_the_wrong_type_is_a_400(http: httpx.Client) -> None:
    body = {"model": 7, "requests": [{"id": "req1", "messages": HELLO}]}
    assert _error(http.post("/v1/batch", json=body), 400, "invalid_parameters")["details"]["param"] == "model"


@pytest.mark.parametrize("raw", [b"{not json", b"[]", b'{"model": "x", "requests": {"id": "a"}}'])
def test_a_malformed_batch_body_is_a_400(http: httpx.Client, raw: bytes) -> None:
    reply = http.post("/v1/batch", content=raw, headers={"Content-Type": "application/json"})
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] in ("invalid_json", "invalid_parameters")


def test_an_embedding_model_cannot_run_a_batch(http: httpx.Client) -> None:
    body = {"model": EMBEDDING_MODEL_ID, "requests": [{"id": "req1", "messages": HELLO}]}
    assert _error(http.post("/v1/batch", json=body), 400, "invalid_parameters")["details"]["param"] == "model"


def test_chat_and_completion_items_mix_and_are_answered_in_order(
    http: httpx.Client, openai_client: OpenAI, model_id: str
) -> None:
    body = {
        "model": model_id,
        "max_tokens": 8,
        "temperature": 0,
        "requests": [
            {"id": "chat", "messages": HELLO},
            {"id": "text", "prompt": "The capital of France is"},
            {"id": 3, "prompt": ["One, two,", "Red, green,"], "max_tokens": 4},
            {"id": "chat-again", "messages": [{"role": "user", "content": "Goodbye"}]},
        ],
    }
    reply = http.post("/v1/batch", json=body)
    assert reply.status_code == 200, reply.text
    chat, text, two_prompts, chat_again = reply.json()["responses"]
    assert [chat["id"], text["id"], two_prompts["id"], chat_again["id"]] == ["chat", "text", 3, "chat-again"]
    assert chat["object"] == chat_again["object"] == "chat.completion"
    assert text["object"] == two_prompts["object"] == "text_completion"
    single_chat = openai_client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": "Hello"}], max_tokens=8, temperature=0
    )
    assert chat["choices"][0]["message"]["content"] == single_chat.choices[0].message.content
    single_text = openai_client.completions.create(
        model=model_id, prompt="The capital of France is", max_tokens=8, temperature=0
    )
    assert text["choices"][0]["text"] == single_text.choices[0].text
    assert single_text.usage is not None and text["usage"]["total_tokens"] == single_text.usage.total_tokens
    assert [c["index"] for c in two_prompts["choices"]] == [0, 1]
    assert all(c["text"] and c["finish_reason"] for c in two_prompts["choices"])
    assert two_prompts["usage"]["completion_tokens"] <= 8


def test_an_item_with_both_messages_and_prompt_fails_alone(http: httpx.Client, model_id: str) -> None:
    body = {
        "model": model_id,
        "max_tokens": 2,
        "requests": [
            {"id": "both", "messages": HELLO, "prompt": "Hello"},
            {"id": "text", "prompt": "Hello"},
        ],
    }
    reply = http.post("/v1/batch", json=body)
    assert reply.status_code == 200, reply.text
    both, text = reply.json()["responses"]
    assert (
        both["error"]["code"] == "invalid_parameters" and both["error"]["details"]["param"] == "requests[0]"
    )
    assert text["object"] == "text_completion" and text["choices"][0]["text"]


def test_core_checks_the_batch_model_over_grpc(grpc_channel: grpc.Channel, model_id: str) -> None:
    stub = inference_service_pb2_grpc.InferenceServiceStub(grpc_channel)
    item = pb.BatchItem(id="a", params=chat_params(model_id, "Hi", 1))
    for model, status, code in (
        ("nope", grpc.StatusCode.NOT_FOUND, "model_not_found"),
        ("", grpc.StatusCode.INVALID_ARGUMENT, "invalid_parameters"),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            stub.CreateBatch(pb.CreateBatchRequest(model=model, items=[item]))
        assert caught.value.code() == status
        assert error_from_rpc(caught.value).code == code


def test_grpc_batch_items_may_be_completions_and_default_to_the_batch_model(
    grpc_channel: grpc.Channel, model_id: str
) -> None:
    stub = inference_service_pb2_grpc.InferenceServiceStub(grpc_channel)
    completion = pb.CompletionParams(
        prompts=[pb.Prompt(text="Hello")], limits=common_pb2.GenerationLimits(max_tokens=2)
    )
    chat = chat_params("", "Hi", 2)
    request = pb.CreateBatchRequest(
        model=model_id,
        items=[
            pb.BatchItem(id="text", completion_params=completion),
            pb.BatchItem(id="chat", params=chat),
            pb.BatchItem(id="neither"),
        ],
    )
    text, chat_result, neither = stub.CreateBatch(request).results
    assert text.id == "text" and text.WhichOneof("outcome") == "text_completion"
    assert text.text_completion.model == model_id and text.text_completion.choices[0].text
    assert chat_result.WhichOneof("outcome") == "completion" and chat_result.completion.model == model_id
    assert neither.WhichOneof("outcome") == "error" and neither.error.code == "invalid_parameters"


def test_a_batch_cannot_queue_more_sequences_than_items_it_may_hold(
    http: httpx.Client, model_id: str
) -> None:
    """256 items are allowed, but not 256 items of n=64: n and best_of count against the batch."""
    item = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1, "n": 64}
    items = [{"id": str(i), **item} for i in range(5)]
    reply = http.post("/v1/batch", json={"model": model_id, "requests": items})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["code"] == "invalid_parameters" and error["details"]["param"] == "requests"
    assert "320 sequences" in error["message"]
