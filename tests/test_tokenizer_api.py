"""/v1/tokenize and /v1/detokenize (llama.cpp's and vLLM's shapes) and the gRPC Tokenize/Detokenize."""

from __future__ import annotations

import grpc
import httpx

from inferno.v1 import inference_service_pb2 as pb
from inferno.v1 import inference_service_pb2_grpc

TEXT = "Grüße aus Köln! 東京 🙂 costs $5."


def test_tokenize_text_in_llama_cpp_shape(http: httpx.Client) -> None:
    body = http.post("/v1/tokenize", json={"content": "Hello"}).json()
    assert body == {"tokens": [19556], "count": 1, "max_model_len": 8192}


def test_pieces_put_back_together_give_the_text(http: httpx.Client) -> None:
    body = http.post("/v1/tokenize", json={"content": TEXT, "with_pieces": True}).json()
    assert [p["id"] for p in body["pieces"]] == body["tokens"]
    raw = b"".join(
        p["piece"].encode() if isinstance(p["piece"], str) else bytes(p["piece"]) for p in body["pieces"]
    )
    assert raw.decode() == TEXT


def test_detokenize_inverts_tokenize(http: httpx.Client, model_id: str) -> None:
    tokens = http.post("/v1/tokenize", json={"model": model_id, "prompt": TEXT}).json()["tokens"]
    body = http.post("/v1/detokenize", json={"model": model_id, "tokens": tokens}).json()
    assert body["content"] == body["prompt"] == TEXT


def test_chat_message_count_equals_the_prompt_tokens_a_chat_completion_uses(
    http: httpx.Client, model_id: str
) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is a cat?"}]
    counted = http.post("/v1/tokenize", json={"model": model_id, "messages": messages}).json()["count"]
    reply = http.post("/v1/chat/completions", json={"model": model_id, "messages": messages, "max_tokens": 1})
    assert counted == reply.json()["usage"]["prompt_tokens"]


def test_prompt_tokens_of_a_completion_match_the_tokenizer(http: httpx.Client, model_id: str) -> None:
    counted = http.post("/v1/tokenize", json={"prompt": TEXT}).json()["count"]
    reply = http.post("/v1/completions", json={"model": model_id, "prompt": TEXT, "max_tokens": 1})
    assert counted == reply.json()["usage"]["prompt_tokens"]


def test_bad_tokenizer_requests_name_the_field(http: httpx.Client) -> None:
    both = http.post("/v1/tokenize", json={"content": "a", "messages": [{"role": "user", "content": "b"}]})
    assert both.status_code == 400 and both.json()["error"]["details"]["param"] == "text"
    too_big = http.post("/v1/detokenize", json={"tokens": [1, 10_000_000]})
    assert too_big.status_code == 400 and too_big.json()["error"]["details"]["param"] == "tokens"
    not_ids = http.post("/v1/detokenize", json={"tokens": "hello"})
    assert not_ids.status_code == 400 and not_ids.json()["error"]["details"]["param"] == "tokens"
    unknown = http.post("/v1/tokenize", json={"model": "nope", "content": "a"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"


def test_grpc_tokenize_and_detokenize(grpc_channel: grpc.Channel, model_id: str) -> None:
    stub = inference_service_pb2_grpc.InferenceServiceStub(grpc_channel)
    tokens = stub.Tokenize(pb.TokenizeRequest(model=model_id, text=TEXT, with_pieces=True))
    assert tokens.count == len(tokens.tokens) == len(tokens.pieces)
    assert b"".join(p.piece for p in tokens.pieces).decode() == TEXT
    assert stub.Detokenize(pb.DetokenizeRequest(model=model_id, tokens=tokens.tokens)).text == TEXT
