"""No request can stall or flood the core: the message and text-size limits apply to Tokenize too, one request
creates at most max_sequences_per_request sequences, and rendering and tokenizing run off the event loop."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import httpx
import pytest

from inferno.core.validation import RequestLimits
from inferno.errors import InfernoError, error_from_rpc
from inferno.security_config import SecurityConfig, load_security_config
from inferno.v1 import inference_service_pb2 as pb
from inferno.v1 import inference_service_pb2_grpc


def test_sequences_per_request_are_capped_and_the_error_names_the_cause() -> None:
    limits = RequestLimits(max_sequences_per_request=64)
    limits.check_sequences(1, 64, "n")
    limits.check_sequences(8, 8, "n")
    with pytest.raises(InfernoError) as caught:
        limits.check_sequences(1000, 128, "n")
    assert caught.value.details["param"] == "prompt"
    with pytest.raises(InfernoError) as caught:
        limits.check_sequences(2, 40, "best_of")
    assert caught.value.details["param"] == "best_of"
    RequestLimits(max_sequences_per_request=0).check_sequences(1000, 128, "n")  # 0: no cap


def test_the_cap_is_a_security_setting(tmp_path: Path) -> None:
    assert RequestLimits.from_security(SecurityConfig()).max_sequences_per_request == 64
    config = tmp_path / "inferno.toml"
    config.write_text("[security]\nmax_sequences_per_request = 8\n")
    limits = RequestLimits.from_security(load_security_config(config))
    assert limits.max_sequences_per_request == 8


def test_text_that_cannot_fit_is_refused_before_tokenizing() -> None:
    limits = RequestLimits()
    limits.check_text_size(2048 * 64, 2048, "text")
    with pytest.raises(InfernoError) as caught:
        limits.check_text_size(2048 * 64 + 1, 2048, "text")
    assert caught.value.code == "request_too_large" and caught.value.details["param"] == "text"
    with pytest.raises(InfernoError):  # the operator's prompt cap, when lower, sets the bound
        RequestLimits(max_prompt_tokens=100).check_text_size(100 * 64 + 1, 2048, "messages")


def _messages(count: int, content: str = "hi") -> list[dict[str, str]]:
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": content} for i in range(count)]


def test_a_20000_message_tokenize_is_refused_at_once(http: httpx.Client, grpc_channel: grpc.Channel) -> None:
    started = time.monotonic()
    reply = http.post("/v1/tokenize", json={"messages": _messages(20_000)})
    rest_s = time.monotonic() - started
    assert reply.status_code in (400, 413), reply.text
    assert reply.json()["error"]["details"]["param"] == "messages"  # the seed's shape for /v1/tokenize
    stub = inference_service_pb2_grpc.InferenceServiceStub(grpc_channel)
    request = pb.TokenizeRequest(messages=[pb.ChatMessage(**m) for m in _messages(20_000)])
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        stub.Tokenize(request, timeout=30)
    grpc_s = time.monotonic() - started
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_from_rpc(caught.value).details["param"] == "messages"
    print(f"20,000-message tokenize refused in {rest_s:.2f} s (REST), {grpc_s:.2f} s (gRPC)")
    assert rest_s < 5 and grpc_s < 5


def test_a_flood_of_sequences_is_refused_over_rest_and_grpc(
    http: httpx.Client, grpc_channel: grpc.Channel, model_id: str
) -> None:
    reply = http.post(
        "/v1/completions", json={"model": model_id, "prompt": ["a"] * 1000, "n": 128, "max_tokens": 1}
    )
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["details"]["param"] == "prompt"
    chat = http.post(
        "/v1/chat/completions",
        json={"model": model_id, "messages": _messages(1), "n": 65, "max_tokens": 1},
    )
    assert chat.status_code == 400 and chat.json()["error"]["details"]["param"] == "n", chat.text
    stub = inference_service_pb2_grpc.InferenceServiceStub(grpc_channel)
    params = pb.CompletionParams(model=model_id, prompts=[pb.Prompt(text="a")] * 1000, n=128)
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateCompletion(pb.CreateCompletionRequest(params=params), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_from_rpc(caught.value).details["param"] == "prompt"
    allowed = http.post(
        "/v1/completions", json={"model": model_id, "prompt": ["a", "b"], "n": 2, "max_tokens": 1}
    )
    assert allowed.status_code == 200 and len(allowed.json()["choices"]) == 4


def test_large_tokenizes_do_not_hold_up_health_or_a_short_chat(http: httpx.Client, model_id: str) -> None:
    """Four 1,000-message tokenizes with pieces at once keep the request pool busy; /health and a one-token
    chat sent meanwhile are answered before the last of them."""
    text = "the quick brown fox jumps over the lazy dog " * 2
    body = {"messages": _messages(1000, text), "with_pieces": True}
    finished: list[float] = []

    def tokenize() -> None:
        with httpx.Client(base_url=str(http.base_url), timeout=120) as client:
            assert client.post("/v1/tokenize", json=body).status_code == 200
        finished.append(time.monotonic())

    started = time.monotonic()
    threads = [threading.Thread(target=tokenize) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)
    health = http.get("/health")
    health_at = time.monotonic()
    chat = http.post(
        "/v1/chat/completions", json={"model": model_id, "messages": _messages(1), "max_tokens": 1}
    )
    chat_at = time.monotonic()
    for thread in threads:
        thread.join()
    assert health.status_code == 200 and chat.status_code == 200
    assert len(finished) == 4
    print(
        f"tokenizes finished at {', '.join(f'{t - started:.2f}' for t in sorted(finished))} s; "
        f"/health answered at {health_at - started:.2f} s, the chat at {chat_at - started:.2f} s"
    )
    assert health_at < max(finished)
