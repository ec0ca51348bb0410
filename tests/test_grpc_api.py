"""The gRPC API with the committed stubs: completions, health, reflection, error statuses."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from inferno.core.embedded import EMBEDDING_MODEL_ID
from inferno.errors import error_from_rpc
from inferno.v1 import common_pb2, inference_service_pb2_grpc, model_service_pb2, model_service_pb2_grpc
from inferno.v1 import inference_service_pb2 as pb
from tests.grpc_helpers import assert_same_usage_but_the_cache, chat_params


@pytest.fixture(scope="module")
def inference(grpc_channel: grpc.Channel) -> inference_service_pb2_grpc.InferenceServiceStub:
    return inference_service_pb2_grpc.InferenceServiceStub(grpc_channel)


def test_unary_chat_returns_text_and_real_usage(inference, model_id: str) -> None:
    reply = inference.CreateChatCompletion(
        pb.CreateChatCompletionRequest(params=chat_params(model_id, "Say hi"))
    )
    assert reply.id.startswith("chatcmpl-")
    assert reply.model == model_id
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.message.content.strip()
    assert choice.finish_reason in (common_pb2.FINISH_REASON_STOP, common_pb2.FINISH_REASON_LENGTH)
    assert reply.usage.prompt_tokens > 5
    assert 1 <= reply.usage.completion_tokens <= 16
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_streamed_chat_matches_unary_under_greedy_decoding(inference, model_id: str) -> None:
    params = chat_params(model_id, "Name a colour.", max_tokens=12)
    unary = inference.CreateChatCompletion(pb.CreateChatCompletionRequest(params=params))
    messages = list(inference.StreamChatCompletion(pb.StreamChatCompletionRequest(params=params)))
    assert messages[0].delta.role == "assistant"
    assert "".join(m.delta.content for m in messages) == unary.choices[0].message.content
    assert messages[-1].finish_reason == unary.choices[0].finish_reason
    assert_same_usage_but_the_cache(unary.usage, messages[-1].usage)
    assert all(not m.HasField("usage") for m in messages[:-1])


def test_text_completion_stops_at_length(inference, model_id: str) -> None:
    params = pb.CompletionParams(
        model=model_id,
        prompts=[pb.Prompt(text="One, two, three, four,")],
        sampling=common_pb2.SamplingParams(temperature=0),
        limits=common_pb2.GenerationLimits(max_tokens=5),
    )
    reply = inference.CreateCompletion(pb.CreateCompletionRequest(params=params))
    assert reply.choices[0].finish_reason == common_pb2.FINISH_REASON_LENGTH
    assert reply.usage.completion_tokens == 5


def test_stop_string_ends_generation_and_is_not_returned(inference, model_id: str) -> None:
    base = pb.CompletionParams(
        model=model_id,
        prompts=[pb.Prompt(text="Count: 1, 2, 3, 4, 5,")],
        sampling=common_pb2.SamplingParams(temperature=0),
        limits=common_pb2.GenerationLimits(max_tokens=12),
    )
    free = inference.CreateCompletion(pb.CreateCompletionRequest(params=base)).choices[0].text
    assert " 7" in free, free
    base.limits.stop.append(" 7")
    stopped = inference.CreateCompletion(pb.CreateCompletionRequest(params=base)).choices[0]
    assert stopped.finish_reason == common_pb2.FINISH_REASON_STOP
    assert stopped.text == free[: free.index(" 7")]


def test_list_and_get_model(grpc_channel: grpc.Channel, model_id: str) -> None:
    stub = model_service_pb2_grpc.ModelServiceStub(grpc_channel)
    models = stub.ListModels(model_service_pb2.ListModelsRequest()).models
    assert [m.id for m in models] == [model_id, EMBEDDING_MODEL_ID]
    model = stub.GetModel(model_service_pb2.GetModelRequest(model_id=model_id)).model
    assert model.format == "gguf" and model.engine == "llama.cpp"
    assert model.context_length == 8192 and model.file_size_bytes > 50_000_000


def test_health_reports_serving_for_every_service(grpc_channel: grpc.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(grpc_channel)
    for service in ("", "inferno.v1.InferenceService", "inferno.v1.ModelService", "inferno.v1.AdminService"):
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, service


def test_reflection_lists_the_services(grpc_channel: grpc.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(grpc_channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    reply = next(iter(stub.ServerReflectionInfo(iter([request]))))
    names = {s.name for s in reply.list_services_response.service}
    assert {"inferno.v1.InferenceService", "inferno.v1.ModelService", "grpc.health.v1.Health"} <= names


@pytest.mark.parametrize(
    ("mutate", "status", "code", "param"),
    [
        (lambda p: setattr(p, "model", "no-such-model"), grpc.StatusCode.NOT_FOUND, "model_not_found", None),
        (
            lambda p: setattr(p.sampling, "temperature", 2.5),
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid_parameters",
            "temperature",
        ),
        (
            lambda p: setattr(p.sampling, "top_p", 1.5),
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid_parameters",
            "top_p",
        ),
        (
            lambda p: setattr(p.limits, "max_tokens", 100_000),
            grpc.StatusCode.INVALID_ARGUMENT,
            "context_length_exceeded",
            "max_tokens",
        ),
        (
            lambda p: p.messages[0].__setattr__("role", "wizard"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid_parameters",
            "messages[0].role",
        ),
    ],
)
def test_errors_carry_status_and_error_info_reason(
    inference, model_id: str, mutate, status, code, param
) -> None:
    params = chat_params(model_id, "hello")
    mutate(params)
    for call in (
        lambda: inference.CreateChatCompletion(pb.CreateChatCompletionRequest(params=params)),
        lambda: list(inference.StreamChatCompletion(pb.StreamChatCompletionRequest(params=params))),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() == status
        error = error_from_rpc(caught.value)
        assert error.code == code
        assert error.details.get("param") == param


def test_frequency_penalty_changes_greedy_output(inference, model_id: str) -> None:
    def complete(penalty: float) -> str:
        params = pb.CompletionParams(
            model=model_id,
            prompts=[pb.Prompt(text="Repeat after me: red red red red red red red red")],
            sampling=common_pb2.SamplingParams(temperature=0, frequency_penalty=penalty),
            limits=common_pb2.GenerationLimits(max_tokens=16),
        )
        return inference.CreateCompletion(pb.CreateCompletionRequest(params=params)).choices[0].text

    plain, penalised = complete(0.0), complete(2.0)
    assert plain != penalised
    assert penalised.count("red") < plain.count("red")


def test_prompt_given_as_token_ids_matches_the_same_text(inference, model_id: str) -> None:
    def complete(prompt: pb.Prompt) -> pb.CreateCompletionResponse:
        params = pb.CompletionParams(
            model=model_id,
            prompts=[prompt],
            sampling=common_pb2.SamplingParams(temperature=0),
            limits=common_pb2.GenerationLimits(max_tokens=6),
        )
        return inference.CreateCompletion(pb.CreateCompletionRequest(params=params))

    by_text = complete(pb.Prompt(text="Hello"))
    assert by_text.usage.prompt_tokens == 1
    hello_id = 19556  # "Hello" in SmolLM2's vocabulary
    by_ids = complete(pb.Prompt(tokens=pb.TokenIds(ids=[hello_id])))
    assert by_ids.choices[0].text == by_text.choices[0].text
