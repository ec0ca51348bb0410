"""Chat completions: messages to sequences, and their events to chat choices, with tool calls."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, replace

from inferno.core.engines.base import SequenceRequest
from inferno.core.runtime.served_model import ServedModel
from inferno.core.services.capability_check import require_capabilities, require_generation
from inferno.core.services.generation import EngineLookup, Generation, add_event_outcome, logprob_messages
from inferno.core.services.request_work import off_loop
from inferno.core.structured_output import grammar_for
from inferno.core.tools.grammar import tool_call_grammar
from inferno.core.tools.parser import ParsedCall, ToolCallParser
from inferno.core.tools.policy import ToolPolicy, resolve_tool_policy
from inferno.core.tools.prompt import messages_for_template
from inferno.core.validation import (
    CHAT_DEFAULTS,
    DEFAULT_LIMITS,
    RequestLimits,
    check_messages,
    check_model,
    check_stop,
    for_choice,
    resolve_chat_logprobs,
    resolve_max_tokens,
    resolve_n,
    resolve_sampling,
)
from inferno.errors import invalid_param
from inferno.v1 import common_pb2
from inferno.v1 import inference_service_pb2 as pb

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChatJob:
    generation: Generation
    # Set when the model may call tools: its replies are then parsed for calls.
    tools: ToolPolicy | None


async def plan_chat(
    engine_for: EngineLookup, params: pb.ChatCompletionParams, request_limits: RequestLimits = DEFAULT_LIMITS
) -> ChatJob:
    request_limits.check_message_count(len(params.messages))
    engine = await engine_for(check_model(params.model))
    require_generation(engine)
    n = resolve_n(params.n if params.HasField("n") else None)
    request_limits.check_sequences(1, n, "n")
    request_limits.check_text_size(
        message_chars(params.messages), engine.description.context_length, "messages"
    )
    return await off_loop(_plan, engine, params, n, request_limits)


def message_chars(messages: Iterable[pb.ChatMessage]) -> int:
    """The text a template renders from messages, in characters: what the size limit weighs."""
    return sum(
        len(m.content) + len(m.name) + sum(len(c.function.arguments) for c in m.tool_calls) for m in messages
    )


def _plan(
    engine: ServedModel, params: pb.ChatCompletionParams, n: int, request_limits: RequestLimits
) -> ChatJob:
    """The CPU-heavy part (grammar building, templating, tokenizing), run off the event loop."""
    tools = resolve_tool_policy(params)
    messages = messages_for_template(check_messages(list(params.messages)), tools)
    sampling = resolve_sampling(params.sampling, CHAT_DEFAULTS, engine.description.vocab_size)
    sampling = replace(sampling, grammar=_grammar(params, tools))
    top_logprobs = resolve_chat_logprobs(
        params.logprobs, params.top_logprobs if params.HasField("top_logprobs") else None
    )
    stop = check_stop(params.limits)
    # The template output carries its special tokens; tokenize() adds BOS only if the model wants one.
    prompt = tuple(engine.tokenize(engine.render_chat(messages)))
    request_limits.check_prompt_length(len(prompt), "messages")
    limits = request_limits.cap(params.limits)
    max_tokens = resolve_max_tokens(limits, len(prompt), engine.description.context_length, "messages")
    sequences = [
        SequenceRequest(
            prompt, max_tokens, stop, for_choice(sampling, j), params.limits.ignore_eos, top_logprobs
        )
        for j in range(n)
    ]
    require_capabilities(engine, sequences, "tools" if tools else "response_format", "top_logprobs")
    generation = Generation(engine, engine.description.id, "chatcmpl", sequences, len(prompt))
    log.info(
        "chat completion %s model=%s user=%r n=%d tools=%d prompt_tokens=%d",
        generation.id,
        generation.model_id,
        params.user,
        n,
        len(tools.tools) if tools else 0,
        len(prompt),
    )
    return ChatJob(generation, tools)


def _grammar(params: pb.ChatCompletionParams, tools: ToolPolicy | None) -> str | None:
    response_grammar = grammar_for(params.response_format)
    if tools is None:
        return response_grammar
    if response_grammar is not None:
        raise invalid_param(
            "response_format",
            "a JSON 'response_format' cannot be combined with tools unless tool_choice is none",
        )
    return tool_call_grammar(tools)


async def complete_chat(job: ChatJob) -> pb.CreateChatCompletionResponse:
    generation = job.generation
    results, usage = await generation.collect()
    choices: list[pb.ChatCompletionChoice] = []
    for i, result in enumerate(results):
        message = pb.ChatMessage(role="assistant", content=result.text)
        finish_reason = result.finish_reason
        if job.tools is not None:
            parser = ToolCallParser()
            parser.feed(result.text)
            message.content = parser.content
            message.tool_calls.extend(_tool_call_message(call) for call in parser.calls)
            finish_reason = _with_tool_calls(finish_reason, bool(parser.calls))
        choices.append(
            pb.ChatCompletionChoice(
                index=i,
                message=message,
                finish_reason=finish_reason,
                logprobs=logprob_messages(generation.engine, result.logprobs),
            )
        )
    return pb.CreateChatCompletionResponse(
        id=generation.id, created=generation.created, model=generation.model_id, choices=choices, usage=usage
    )


async def stream_chat(job: ChatJob) -> AsyncIterator[pb.StreamChatCompletionResponse]:
    generation = job.generation
    started: set[int] = set()
    parsers: dict[int, ToolCallParser] = {}
    async for item in generation.stream():
        delta = pb.ChatCompletionDelta(content=item.event.text)
        if item.index not in started:
            started.add(item.index)
            delta.role = "assistant"
        if job.tools is not None:
            parser = parsers.setdefault(item.index, ToolCallParser())
            parsed = parser.feed(item.event.text)
            delta.content = parsed.content
            delta.tool_calls.extend(
                pb.ToolCallDelta(
                    index=d.index,
                    id=d.id,
                    type="function" if d.id else "",
                    name=d.name,
                    arguments=d.arguments,
                )
                for d in parsed.calls
            )
        message = pb.StreamChatCompletionResponse(
            id=generation.id,
            created=generation.created,
            model=generation.model_id,
            index=item.index,
            delta=delta,
        )
        add_event_outcome(message, generation, item)
        if job.tools is not None:
            message.finish_reason = _with_tool_calls(message.finish_reason, bool(parsers[item.index].calls))
        yield message


def _with_tool_calls(
    finish_reason: common_pb2.FinishReason.ValueType, called: bool
) -> common_pb2.FinishReason.ValueType:
    """A reply that stopped after calling tools finishes with tool_calls, as OpenAI's do."""
    if called and finish_reason == common_pb2.FINISH_REASON_STOP:
        return common_pb2.FINISH_REASON_TOOL_CALLS
    return finish_reason


def _tool_call_message(call: ParsedCall) -> pb.ToolCall:
    return pb.ToolCall(
        id=call.id, type="function", function=pb.FunctionCall(name=call.name, arguments=call.arguments)
    )
