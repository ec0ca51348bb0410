"""The runtime's behaviours, the same for every engine, over gRPC: stop strings across token boundaries, n and
best_of, echo, cancellation, usage counts, finish reasons, tool-call finishing, one set of statistics."""

from __future__ import annotations

import json
import re
import time

import grpc
import pytest

from inferno.v1 import (
    admin_service_pb2,
    admin_service_pb2_grpc,
    common_pb2,
    inference_service_pb2_grpc,
    model_service_pb2,
    model_service_pb2_grpc,
)
from inferno.v1 import inference_service_pb2 as pb
from tests.contract.conftest import ContractTarget

PROMPT = "The three primary colors are"
TIMEOUT_S = 120


def _inference(channel: grpc.Channel) -> inference_service_pb2_grpc.InferenceServiceStub:
    return inference_service_pb2_grpc.InferenceServiceStub(channel)


def _completion(
    target: ContractTarget,
    prompt: str = PROMPT,
    max_tokens: int = 16,
    temperature: float = 0.0,
    seed: int | None = None,
    **fields: object,
) -> pb.CompletionParams:
    sampling = common_pb2.SamplingParams(temperature=temperature)
    if seed is not None:
        sampling.seed = seed
    stop = fields.pop("stop", ())
    return pb.CompletionParams(
        model=target.model_id,
        prompts=[pb.Prompt(text=prompt)],
        sampling=sampling,
        limits=common_pb2.GenerationLimits(max_tokens=max_tokens, stop=stop),  # type: ignore[arg-type]
        **fields,  # type: ignore[arg-type]
    )


def _complete(channel: grpc.Channel, params: pb.CompletionParams) -> pb.CreateCompletionResponse:
    request = pb.CreateCompletionRequest(params=params)
    return _inference(channel).CreateCompletion(request, timeout=TIMEOUT_S)


def _chat(target: ContractTarget, content: str, max_tokens: int = 24) -> pb.ChatCompletionParams:
    return pb.ChatCompletionParams(
        model=target.model_id,
        messages=[pb.ChatMessage(role="user", content=content)],
        sampling=common_pb2.SamplingParams(temperature=0.0),
        limits=common_pb2.GenerationLimits(max_tokens=max_tokens),
    )


def _reason(error: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    """The status code and the error code string the core put in ErrorInfo."""
    from grpc_status import rpc_status

    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    code = ""
    if status is not None:
        from google.rpc import error_details_pb2

        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                code = info.reason
    return error.code(), code


def test_greedy_text_is_reproducible_and_usage_counts_tokens(
    target: ContractTarget, channel: grpc.Channel
) -> None:
    first = _complete(channel, _completion(target, logprobs=0))
    second = _complete(channel, _completion(target, logprobs=0))
    assert first.choices[0].text == second.choices[0].text
    tokens = _inference(channel).Tokenize(pb.TokenizeRequest(model=target.model_id, text=PROMPT))
    assert first.usage.prompt_tokens == tokens.count
    assert first.usage.completion_tokens == len(first.choices[0].logprobs) > 0
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens
    if target.scripted_reply is not None:
        # One token per byte: 16 tokens end inside "é", which the last event flushes as U+FFFD.
        assert first.choices[0].text == target.scripted_reply.encode()[:16].decode(errors="replace")


def test_max_tokens_ends_with_length(target: ContractTarget, channel: grpc.Channel) -> None:
    reply = _complete(channel, _completion(target, max_tokens=3, logprobs=0))
    choice = reply.choices[0]
    assert choice.finish_reason == common_pb2.FINISH_REASON_LENGTH
    assert reply.usage.completion_tokens == len(choice.logprobs) == 3


def test_a_stop_string_across_token_boundaries_cuts_the_text_and_ends_with_stop(
    target: ContractTarget, channel: grpc.Channel
) -> None:
    free = _complete(channel, _completion(target, max_tokens=24)).choices[0].text
    visible = free.strip()
    assert len(visible) >= 8, free
    start = free.index(visible) + 3
    stop = free[start : start + 4]
    cut = _complete(channel, _completion(target, max_tokens=24, stop=[stop])).choices[0]
    assert cut.text == free[: free.index(stop)]
    assert cut.finish_reason == common_pb2.FINISH_REASON_STOP
    streamed = _inference(channel).StreamCompletion(
        pb.StreamCompletionRequest(params=_completion(target, max_tokens=24, stop=[stop])), timeout=TIMEOUT_S
    )
    messages = list(streamed)
    assert "".join(m.text for m in messages) == cut.text
    assert stop not in "".join(m.text for m in messages)
    assert messages[-1].finish_reason == common_pb2.FINISH_REASON_STOP


def test_n_choices_sample_with_seed_plus_index(target: ContractTarget, channel: grpc.Channel) -> None:
    together = _complete(channel, _completion(target, temperature=0.9, seed=11, n=3))
    assert [c.index for c in together.choices] == [0, 1, 2]
    alone = [_complete(channel, _completion(target, temperature=0.9, seed=11 + i)) for i in range(3)]
    assert [c.text for c in together.choices] == [a.choices[0].text for a in alone]
    assert together.usage.prompt_tokens == _complete(channel, _completion(target)).usage.prompt_tokens


def test_best_of_returns_the_candidate_with_the_highest_mean_logprob(
    target: ContractTarget, channel: grpc.Channel
) -> None:
    best = _complete(channel, _completion(target, temperature=0.9, seed=5, best_of=3, n=1, max_tokens=8))
    candidates = []
    for i in range(3):
        params = _completion(target, temperature=0.9, seed=5 + i, logprobs=0, max_tokens=8)
        choice = _complete(channel, params)
        lps = [lp.logprob for lp in choice.choices[0].logprobs]
        candidates.append((sum(lps) / len(lps), choice.choices[0].text))
    assert len(best.choices) == 1
    assert best.choices[0].text == max(candidates)[1]
    assert best.usage.completion_tokens >= 3 * 1  # every candidate is billed


def test_echo_puts_the_prompt_first_and_scores_it_where_the_engine_can(
    target: ContractTarget, channel: grpc.Channel
) -> None:
    echoed = _complete(channel, _completion(target, max_tokens=4, echo=True)).choices[0]
    assert echoed.text.startswith(PROMPT) and len(echoed.text) > len(PROMPT)
    scored = _completion(target, max_tokens=0, echo=True, logprobs=1)
    if not target.capabilities.prompt_logprobs:
        with pytest.raises(grpc.RpcError) as refused:
            _complete(channel, scored)
        assert _reason(refused.value) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_parameters")
        return
    choice = _complete(channel, scored).choices[0]
    assert choice.text == PROMPT
    tokens = _inference(channel).Tokenize(pb.TokenizeRequest(model=target.model_id, text=PROMPT)).tokens
    assert [p.token_id for p in choice.prompt_logprobs] == list(tokens)
    assert not choice.prompt_logprobs[0].HasField("logprob")
    assert all(p.HasField("logprob") and p.logprob <= 0 for p in choice.prompt_logprobs[1:])


def test_streamed_chat_equals_the_unary_reply_and_ends_with_usage(
    target: ContractTarget, channel: grpc.Channel
) -> None:
    params = _chat(target, "Say hello to the world.", max_tokens=96)
    unary = _inference(channel).CreateChatCompletion(pb.CreateChatCompletionRequest(params=params))
    stream = pb.StreamChatCompletionRequest(params=params)
    messages = list(_inference(channel).StreamChatCompletion(stream, timeout=TIMEOUT_S))
    assert "".join(m.delta.content for m in messages) == unary.choices[0].message.content
    finish = unary.choices[0].finish_reason
    assert messages[-1].finish_reason == finish != common_pb2.FINISH_REASON_UNSPECIFIED
    assert messages[-1].usage.completion_tokens == unary.usage.completion_tokens
    if target.scripted_reply is not None:
        assert unary.choices[0].message.content == target.scripted_reply
        assert unary.choices[0].finish_reason == common_pb2.FINISH_REASON_STOP  # the script's EOS


def test_a_cancelled_stream_leaves_no_sequence_behind(target: ContractTarget, channel: grpc.Channel) -> None:
    params = _completion(target, max_tokens=400)
    params.limits.ignore_eos = True
    call = _inference(channel).StreamCompletion(pb.StreamCompletionRequest(params=params), timeout=TIMEOUT_S)
    next(call)
    next(call)
    call.cancel()
    models = model_service_pb2_grpc.ModelServiceStub(channel)
    deadline = time.monotonic() + 10
    stats = models.GetModelStatus(model_service_pb2.GetModelStatusRequest(model_id=target.model_id)).stats
    while stats.running_sequences + stats.waiting_sequences and time.monotonic() < deadline:
        time.sleep(0.05)
        stats = models.GetModelStatus(model_service_pb2.GetModelStatusRequest(model_id=target.model_id)).stats
    assert stats.running_sequences == stats.waiting_sequences == 0


def test_a_required_tool_call_finishes_with_tool_calls(target: ContractTarget, channel: grpc.Channel) -> None:
    params = _chat(target, "What is the weather in Paris?", max_tokens=128)
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    params.tools.append(
        pb.Tool(
            type="function",
            function=pb.FunctionDefinition(name="get_weather", parameters_json=json.dumps(schema)),
        )
    )
    params.tool_choice.mode = pb.TOOL_CHOICE_MODE_REQUIRED
    if not target.capabilities.constrained_output:
        with pytest.raises(grpc.RpcError) as refused:
            _inference(channel).CreateChatCompletion(pb.CreateChatCompletionRequest(params=params))
        assert _reason(refused.value) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_parameters")
        return
    reply = _inference(channel).CreateChatCompletion(
        pb.CreateChatCompletionRequest(params=params), timeout=TIMEOUT_S
    )
    choice = reply.choices[0]
    assert choice.finish_reason == common_pb2.FINISH_REASON_TOOL_CALLS
    (call,) = choice.message.tool_calls[:1]
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)


def test_model_status_and_prometheus_count_the_same_tokens(
    target: ContractTarget, channel: grpc.Channel
) -> None:
    _complete(channel, _completion(target, max_tokens=5))
    models = model_service_pb2_grpc.ModelServiceStub(channel)
    stats = models.GetModelStatus(model_service_pb2.GetModelStatusRequest(model_id=target.model_id)).stats
    admin = admin_service_pb2_grpc.AdminServiceStub(channel)
    text = admin.GetMetrics(admin_service_pb2.GetMetricsRequest()).text
    pattern = rf'^inferno_engine_generated_tokens_total{{model="{re.escape(target.model_id)}"}} (\S+)$'
    prometheus = re.search(pattern, text, re.MULTILINE)
    assert prometheus is not None, text[:2000]
    assert float(prometheus.group(1)) == stats.generated_tokens_total > 0
