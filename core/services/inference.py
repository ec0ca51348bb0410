"""InferenceService: chat and text completions, unary and streamed, batches and the tokenizer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc

from inferno.core.model_manager import ModelManager
from inferno.core.runtime.served_model import ServedModel
from inferno.core.services.capability_check import require_generation
from inferno.core.services.chat import complete_chat, message_chars, plan_chat, stream_chat
from inferno.core.services.completions import complete, plan_completion, stream_completion
from inferno.core.services.embeddings import create_embeddings
from inferno.core.services.request_work import off_loop
from inferno.core.services.tokenizer_info import tokenizer_info
from inferno.core.tools.prompt import messages_for_template
from inferno.core.validation import (
    DEFAULT_LIMITS,
    RequestLimits,
    check_messages,
    check_model,
    check_token_ids,
)
from inferno.errors import InfernoError, invalid_param
from inferno.v1 import inference_service_pb2 as pb
from inferno.v1 import inference_service_pb2_grpc

log = logging.getLogger(__name__)


class InferenceServicer(inference_service_pb2_grpc.InferenceServiceServicer):
    def __init__(self, manager: ModelManager, limits: RequestLimits = DEFAULT_LIMITS) -> None:
        self._manager = manager
        self._limits = limits

    async def CreateChatCompletion(
        self, request: pb.CreateChatCompletionRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateChatCompletionResponse:
        return await complete_chat(await plan_chat(self._manager.engine_for, request.params, self._limits))

    async def StreamChatCompletion(
        self, request: pb.StreamChatCompletionRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.StreamChatCompletionResponse]:
        async for message in stream_chat(
            await plan_chat(self._manager.engine_for, request.params, self._limits)
        ):
            yield message

    async def CreateCompletion(
        self, request: pb.CreateCompletionRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateCompletionResponse:
        return await complete(
            await plan_completion(self._manager.engine_for, request.params, False, self._limits)
        )

    async def StreamCompletion(
        self, request: pb.StreamCompletionRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.StreamCompletionResponse]:
        async for message in stream_completion(
            await plan_completion(self._manager.engine_for, request.params, True, self._limits)
        ):
            yield message

    async def CreateBatch(
        self, request: pb.CreateBatchRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateBatchResponse:
        """All items go to the engines at once, so the continuous batcher decodes them together. What is
        wrong with the batch as a whole (too many items, no model, a model that cannot serve) fails it before
        any item runs; what is wrong with one item is that item's result."""
        self._limits.check_batch_size(len(request.items))
        self._limits.check_batch_sequences(sum(_item_sequences(item) for item in request.items))
        model = check_model(request.model)
        require_generation(await self._manager.engine_for(model))
        results = await asyncio.gather(*(self._batch_item(item, model) for item in request.items))
        return pb.CreateBatchResponse(results=results)

    async def _batch_item(self, item: pb.BatchItem, model: str) -> pb.BatchItemResult:
        try:
            return await self._run_batch_item(item, model)
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

    async def _run_batch_item(self, item: pb.BatchItem, model: str) -> pb.BatchItemResult:
        if item.HasField("params") == item.HasField("completion_params"):
            raise invalid_param(
                "requests", "a batch item is either a chat request ('messages') or a completion ('prompt')"
            )
        if item.HasField("completion_params"):
            completion_params = pb.CompletionParams()
            completion_params.CopyFrom(item.completion_params)
            completion_params.model = completion_params.model or model
            job = await plan_completion(self._manager.engine_for, completion_params, False, self._limits)
            return pb.BatchItemResult(id=item.id, text_completion=await complete(job))
        chat_params = pb.ChatCompletionParams()
        chat_params.CopyFrom(item.params)
        chat_params.model = chat_params.model or model
        chat = await plan_chat(self._manager.engine_for, chat_params, self._limits)
        return pb.BatchItemResult(id=item.id, completion=await complete_chat(chat))

    async def Tokenize(
        self, request: pb.TokenizeRequest, context: grpc.aio.ServicerContext
    ) -> pb.TokenizeResponse:
        engine = await self._manager.engine_for(
            check_model(request.model) if request.model else self._manager.default_model_id
        )
        if bool(request.text) == bool(request.messages):
            raise invalid_param("text", "give exactly one of 'text' and 'messages'")
        context_length = engine.description.context_length
        if request.messages:
            self._limits.check_message_count(len(request.messages))
            self._limits.check_text_size(message_chars(request.messages), context_length, "messages")
        else:
            self._limits.check_text_size(len(request.text), context_length, "text")
        return await off_loop(_tokenize, engine, request)

    async def CreateEmbeddings(
        self, request: pb.CreateEmbeddingsRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateEmbeddingsResponse:
        return await create_embeddings(self._manager.engine_for, request)

    async def Detokenize(
        self, request: pb.DetokenizeRequest, context: grpc.aio.ServicerContext
    ) -> pb.DetokenizeResponse:
        engine = await self._manager.engine_for(
            check_model(request.model) if request.model else self._manager.default_model_id
        )
        tokens = list(request.tokens)
        check_token_ids(tokens, engine.description.vocab_size, "tokens")
        return pb.DetokenizeResponse(text=await off_loop(engine.detokenize, tokens))

    async def GetTokenizerInfo(
        self, request: pb.GetTokenizerInfoRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetTokenizerInfoResponse:
        engine = await self._manager.engine_for(
            check_model(request.model) if request.model else self._manager.default_model_id
        )
        return await off_loop(tokenizer_info, engine)


def _tokenize(engine: ServedModel, request: pb.TokenizeRequest) -> pb.TokenizeResponse:
    """Renders and tokenizes a checked Tokenize request; CPU-heavy, so run off the event loop."""
    add_special = request.add_special if request.HasField("add_special") else True
    add_generation_prompt = (
        request.add_generation_prompt if request.HasField("add_generation_prompt") else True
    )
    text = (
        engine.render_chat(
            messages_for_template(check_messages(list(request.messages)), None), add_generation_prompt
        )
        if request.messages
        else request.text
    )
    tokens = engine.tokenize(text, add_special=add_special)
    reply = pb.TokenizeResponse(
        tokens=tokens, count=len(tokens), context_length=engine.description.context_length
    )
    if request.with_pieces:
        reply.pieces.extend(pb.TokenPiece(id=t, piece=engine.token_bytes(t)) for t in tokens)
    return reply


def _item_sequences(item: pb.BatchItem) -> int:
    """The sequences an item asks for: chat n, or completion prompts x max(n, best_of)."""
    if item.HasField("completion_params"):
        params = item.completion_params
        per_prompt = max(
            params.n if params.HasField("n") else 1, params.best_of if params.HasField("best_of") else 1
        )
        return max(len(params.prompts), 1) * per_prompt
    return item.params.n if item.params.HasField("n") else 1
