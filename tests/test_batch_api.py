"""POST /v1/batch: items run together through the continuous batcher, keep their ids, and fail alone."""

from __future__ import annotations

import grpc
import httpx
import pytest
from openai import OpenAI

from inferno.core.embedded import EMBEDDING_MODEL_ID
from inferno.errors import error_from_rpc
from inferno.v1 import inference_service_pb2 as pb
from inferno.v1 import inference_service_pb2_grpc
from tests.grpc_helpers import chat_params, engine_stats
from tests.servers import running_inferno

# The default [security] max_batch_items.
MAX_BATCH_ITEMS = 256

QUESTIONS = {"req1": "Hello", "req2": "Goodbye", "req3": "What is 2 + 2?"}


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
