"""Chat completions: messages to sequences, and their events to chat choices, with tool calls."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, replace

from inferno.core.engines.base import SequenceRequest
from inferno.core.guided_output import guided_grammar
from inferno.core.runtime.served_model import ServedModel
from inferno.core.services.capability_check import require_capabilities, require_generation
from inferno.core.services.generation import EngineLookup, Generation, add_event_outcome, logprob_messages
from inferno.core.services.request_work import off_loop
from inferno.core.structured_output import grammar_for
from inferno.core.text.reasoning import ReasoningPolicy, ReasoningSplitter, resolve_reasoning
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
    resolve_min_tokens,
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
    # Set when the replies' thinking is returned apart from their content.
    reasoning: ReasoningPolicy | None = None


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
    grammar, grammar_param = _grammar(params, tools)
    sampling = replace(sampling, grammar=grammar, grammar_param=grammar_param)
    top_logprobs = resolve_chat_logprobs(
        params.logprobs, params.top_logprobs if params.HasField("top_logprobs") else None
    )
    stop = check_stop(params.limits)
    # The template output carries its special tokens; tokenize() adds BOS only if the model wants one.
    prompt_text = engine.render_chat(messages)
    reasoning = resolve_reasoning(
        params.reasoning_format, engine.chat_template_source, prompt_text, sampling.grammar is not None
    )
    prompt = tuple(engine.tokenize(prompt_text))
    request_limits.check_prompt_length(len(prompt), "messages")
    limits = request_limits.cap(params.limits)
    max_tokens = resolve_max_tokens(limits, len(prompt), engine.description.context_length, "messages")
    sampling = replace(sampling, min_tokens=resolve_min_tokens(params.limits, max_tokens))
    sequences = [
        SequenceRequest(
            prompt, max_tokens, stop, for_choice(sampling, j), params.limits.ignore_eos, top_logprobs
        )
        for j in range(n)
    ]
    require_capabilities(engine, sequences, sampling.grammar_param, "top_logprobs")
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
    return ChatJob(generation, tools, reasoning)


def _grammar(params: pb.ChatCompletionParams, tools: ToolPolicy | None) -> tuple[str | None, str]:
    """The grammar the reply must match, and the field it came from."""
    response_grammar = grammar_for(params.response_format)
    guided = guided_grammar(params.guided)
    if guided is not None:
        if response_grammar is not None or tools is not None:
            other = "tools" if tools is not None else "response_format"
            raise invalid_param(guided.param, f"'{guided.param}' cannot be combined with '{other}'")
        return guided.gbnf, guided.param
    if tools is None:
        return response_grammar, "response_format"
    if response_grammar is not None:
        raise invalid_param(
            "response_format",
            "a JSON 'response_format' cannot be combined with tools unless tool_choice is none",
        )
    return tool_call_grammar(tools), "tools"


async def complete_chat(job: ChatJob) -> pb.CreateChatCompletionResponse:
    generation = job.generation
    results, usage = await generation.collect()
    choices: list[pb.ChatCompletionChoice] = []
    for i, result in enumerate(results):
        message = pb.ChatMessage(role="assistant", content=result.text)
        if job.reasoning is not None:
            split = job.reasoning.split(result.text)
            message.reasoning_content, message.content = split.reasoning, split.content
        finish_reason = result.finish_reason
        if job.tools is not None:
            parser = ToolCallParser()
            parser.feed(message.content)
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
    splitters: dict[int, ReasoningSplitter] = {}
    async for item in generation.stream():
        first_of_stream = not started
        delta = pb.ChatCompletionDelta(content=item.event.text)
        if item.index not in started:
            started.add(item.index)
            delta.role = "assistant"
        if job.reasoning is not None:
            splitter = splitters.setdefault(item.index, job.reasoning.splitter())
            piece = splitter.feed(item.event.text)
            if item.event.finish_reason is not None:
                piece += splitter.flush()
            delta.reasoning_content, delta.content = piece.reasoning, piece.content
        if job.tools is not None:
            parser = parsers.setdefault(item.index, ToolCallParser())
            parsed = parser.feed(delta.content)
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
        if first_of_stream:
            message.prompt_usage.CopyFrom(generation.prompt_usage(item.event.cached_prompt_tokens))
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
