"""InferenceService: chat and text completions, unary and streamed, over the model registry."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import replace

import grpc

from inferno.core.engines.base import SequenceRequest
from inferno.core.registry import ModelRegistry
from inferno.core.services.generation import FINISH_REASONS, Generation, IndexedEvent, logprob_messages
from inferno.core.structured_output import grammar_for
from inferno.core.validation import (
    CHAT_DEFAULTS,
    COMPLETION_DEFAULTS,
    check_messages,
    check_model,
    check_stop,
    check_token_ids,
    for_choice,
    resolve_chat_logprobs,
    resolve_completion_logprobs,
    resolve_max_tokens,
    resolve_n,
    resolve_sampling,
)
from inferno.errors import InfernoError, invalid_param
from inferno.v1 import inference_service_pb2 as pb
from inferno.v1 import inference_service_pb2_grpc

log = logging.getLogger(__name__)


class InferenceServicer(inference_service_pb2_grpc.InferenceServiceServicer):
    def __init__(self, registry: ModelRegistry) -> None:
        self._registry = registry

    async def CreateChatCompletion(
        self, request: pb.CreateChatCompletionRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateChatCompletionResponse:
        return await self._chat_completion(request.params)

    async def _chat_completion(self, params: pb.ChatCompletionParams) -> pb.CreateChatCompletionResponse:
        generation = self._chat_generation(params)
        choices, usage = await generation.collect()
        return pb.CreateChatCompletionResponse(
            id=generation.id,
            created=generation.created,
            model=generation.model_id,
            choices=[
                pb.ChatCompletionChoice(
                    index=i,
                    message=pb.ChatMessage(role="assistant", content=c.text),
                    finish_reason=c.finish_reason,
                    logprobs=logprob_messages(generation.engine, c.logprobs),
                )
                for i, c in enumerate(choices)
            ],
            usage=usage,
        )

    async def StreamChatCompletion(
        self, request: pb.StreamChatCompletionRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.StreamChatCompletionResponse]:
        generation = self._chat_generation(request.params)
        started: set[int] = set()
        async for item in generation.stream():
            delta = pb.ChatCompletionDelta(content=item.event.text)
            if item.index not in started:
                started.add(item.index)
                delta.role = "assistant"
            message = pb.StreamChatCompletionResponse(
                id=generation.id,
                created=generation.created,
                model=generation.model_id,
                index=item.index,
                delta=delta,
            )
            _add_event_outcome(message, generation, item)
            yield message

    async def CreateCompletion(
        self, request: pb.CreateCompletionRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateCompletionResponse:
        generation = self._completion_generation(request.params)
        choices, usage = await generation.collect()
        return pb.CreateCompletionResponse(
            id=generation.id,
            created=generation.created,
            model=generation.model_id,
            choices=[
                pb.CompletionChoice(
                    index=i,
                    text=c.text,
                    finish_reason=c.finish_reason,
                    logprobs=logprob_messages(generation.engine, c.logprobs),
                )
                for i, c in enumerate(choices)
            ],
            usage=usage,
        )

    async def StreamCompletion(
        self, request: pb.StreamCompletionRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.StreamCompletionResponse]:
        generation = self._completion_generation(request.params)
        async for item in generation.stream():
            message = pb.StreamCompletionResponse(
                id=generation.id,
                created=generation.created,
                model=generation.model_id,
                index=item.index,
                text=item.event.text,
            )
            _add_event_outcome(message, generation, item)
            yield message

    async def CreateBatch(
        self, request: pb.CreateBatchRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateBatchResponse:
        """All items go to the engines at once, so the continuous batcher decodes them together."""
        results = await asyncio.gather(*(self._batch_item(item) for item in request.items))
        return pb.CreateBatchResponse(results=results)

    async def _batch_item(self, item: pb.BatchItem) -> pb.BatchItemResult:
        try:
            completion = await self._chat_completion(item.params)
        except Exception as exc:  # one item's failure is its own result, never the batch's
            if not isinstance(exc, InfernoError):
                log.exception("batch item %r failed", item.id)
            error = (
                exc
                if isinstance(exc, InfernoError)
                else InfernoError("internal_error", "internal server error")
            )
            failure = pb.BatchItemError(
                code=error.code, message=error.message, details=error.details_as_metadata()
            )
            return pb.BatchItemResult(id=item.id, error=failure)
        return pb.BatchItemResult(id=item.id, completion=completion)

    async def Tokenize(
        self, request: pb.TokenizeRequest, context: grpc.aio.ServicerContext
    ) -> pb.TokenizeResponse:
        engine = self._registry.get(request.model or self._registry.default_model_id)
        if bool(request.text) == bool(request.messages):
            raise invalid_param("text", "give exactly one of 'text' and 'messages'")
        add_special = request.add_special if request.HasField("add_special") else True
        text = (
            engine.render_chat(check_messages(list(request.messages))) if request.messages else request.text
        )
        tokens = engine.tokenize(text, add_special=add_special)
        reply = pb.TokenizeResponse(
            tokens=tokens, count=len(tokens), context_length=engine.description.context_length
        )
        if request.with_pieces:
            reply.pieces.extend(pb.TokenPiece(id=t, piece=engine.token_bytes(t)) for t in tokens)
        return reply

    async def Detokenize(
        self, request: pb.DetokenizeRequest, context: grpc.aio.ServicerContext
    ) -> pb.DetokenizeResponse:
        engine = self._registry.get(request.model or self._registry.default_model_id)
        tokens = list(request.tokens)
        check_token_ids(tokens, engine.description.vocab_size, "tokens")
        return pb.DetokenizeResponse(text=engine.detokenize(tokens))

    def _chat_generation(self, params: pb.ChatCompletionParams) -> Generation:
        engine = self._registry.get(check_model(params.model))
        messages = check_messages(list(params.messages))
        sampling = resolve_sampling(params.sampling, CHAT_DEFAULTS, engine.description.vocab_size)
        sampling = replace(sampling, grammar=grammar_for(params.response_format))
        n = resolve_n(params.n if params.HasField("n") else None)
        top_logprobs = resolve_chat_logprobs(
            params.logprobs, params.top_logprobs if params.HasField("top_logprobs") else None
        )
        stop = check_stop(params.limits)
        # The template output carries its special tokens; tokenize() adds BOS only if the model wants one.
        prompt = tuple(engine.tokenize(engine.render_chat(messages)))
        max_tokens = resolve_max_tokens(params.limits, len(prompt), engine.description.context_length)
        sequences = [
            SequenceRequest(
                prompt, max_tokens, stop, for_choice(sampling, j), params.limits.ignore_eos, top_logprobs
            )
            for j in range(n)
        ]
        return Generation(engine, engine.description.id, "chatcmpl", sequences)

    def _completion_generation(self, params: pb.CompletionParams) -> Generation:
        engine = self._registry.get(check_model(params.model))
        if not params.prompts:
            raise invalid_param("prompt", "'prompt' is required")
        vocab_size = engine.description.vocab_size
        sampling = resolve_sampling(params.sampling, COMPLETION_DEFAULTS, vocab_size)
        n = resolve_n(params.n if params.HasField("n") else None)
        top_logprobs = resolve_completion_logprobs(params.logprobs if params.HasField("logprobs") else None)
        stop = check_stop(params.limits)
        sequences: list[SequenceRequest] = []
        for i, prompt in enumerate(params.prompts):
            if prompt.WhichOneof("kind") == "tokens":
                tokens = tuple(prompt.tokens.ids)
                check_token_ids(tokens, vocab_size, f"prompt[{i}]")
            else:
                tokens = tuple(engine.tokenize(prompt.text))
            if not tokens:
                raise invalid_param(f"prompt[{i}]", f"'prompt[{i}]' is empty")
            max_tokens = resolve_max_tokens(params.limits, len(tokens), engine.description.context_length)
            sequences.extend(
                SequenceRequest(
                    tokens, max_tokens, stop, for_choice(sampling, j), params.limits.ignore_eos, top_logprobs
                )
                for j in range(n)
            )
        return Generation(engine, engine.description.id, "cmpl", sequences)


def _add_event_outcome(
    message: pb.StreamChatCompletionResponse | pb.StreamCompletionResponse,
    generation: Generation,
    item: IndexedEvent,
) -> None:
    """What every stream message carries besides its text: finish reason, usage and log-probabilities."""
    if item.event.finish_reason is not None:
        message.finish_reason = FINISH_REASONS[item.event.finish_reason]
    if item.usage is not None:
        message.usage.CopyFrom(item.usage)
    message.logprobs.extend(logprob_messages(generation.engine, item.event.logprobs))
