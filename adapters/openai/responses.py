"""inferno.v1 replies to OpenAI's JSON objects: completions, streamed chunks and models."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from inferno.v1 import common_pb2, inference_service_pb2, model_service_pb2

_FINISH_REASONS: dict[int, str] = {
    common_pb2.FINISH_REASON_STOP: "stop",
    common_pb2.FINISH_REASON_LENGTH: "length",
    common_pb2.FINISH_REASON_TOOL_CALLS: "tool_calls",
}

JsonObject = dict[str, Any]


def finish_reason_name(value: int) -> str | None:
    """OpenAI's finish_reason string for a FinishReason; None while the choice is still going."""
    return _FINISH_REASONS.get(value)


def usage_json(usage: common_pb2.Usage) -> JsonObject:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_prompt_tokens},
    }


def chat_completion_json(reply: inference_service_pb2.CreateChatCompletionResponse) -> JsonObject:
    """A chat.completion object."""
    return {
        "id": reply.id,
        "object": "chat.completion",
        "created": reply.created,
        "model": reply.model,
        "choices": [
            {
                "index": choice.index,
                "message": _chat_message_json(choice.message),
                "logprobs": chat_logprobs_json(choice.logprobs),
                "finish_reason": finish_reason_name(choice.finish_reason),
            }
            for choice in reply.choices
        ],
        "usage": usage_json(reply.usage),
    }


def completion_json(reply: inference_service_pb2.CreateCompletionResponse) -> JsonObject:
    """A text_completion object."""
    return {
        "id": reply.id,
        "object": "text_completion",
        "created": reply.created,
        "model": reply.model,
        "choices": [
            {
                "text": choice.text,
                "index": choice.index,
                "logprobs": completion_logprobs_json(choice.logprobs, choice.prompt_logprobs),
                "finish_reason": finish_reason_name(choice.finish_reason),
            }
            for choice in reply.choices
        ],
        "usage": usage_json(reply.usage),
    }


def _chat_message_json(message: inference_service_pb2.ChatMessage) -> JsonObject:
    """An assistant message; with tool calls its content is null unless the model also wrote text.

    refusal is always null (no model here refuses in OpenAI's structured way), but OpenAI's document requires
    the field, and clients generated from it fail without it."""
    body: JsonObject = {"role": message.role or "assistant", "content": message.content, "refusal": None}
    if message.reasoning_content:
        body["reasoning_content"] = message.reasoning_content
    if message.tool_calls:
        body["content"] = message.content or None
        body["tool_calls"] = [
            {
                "id": call.id,
                "type": call.type or "function",
                "function": {"name": call.function.name, "arguments": call.function.arguments},
            }
            for call in message.tool_calls
        ]
    return body


def model_json(model: model_service_pb2.Model) -> JsonObject:
    """A model object."""
    return {
        "id": model.id,
        "object": "model",
        "created": model.created,
        "owned_by": model.owned_by,
        "permission": [],
        "root": model.root,
        "parent": model.parent if model.HasField("parent") else None,
    }


def model_list_json(reply: model_service_pb2.ListModelsResponse) -> JsonObject:
    return {"object": "list", "data": [model_json(model) for model in reply.models]}


_Message = TypeVar(
    "_Message",
    inference_service_pb2.StreamChatCompletionResponse,
    inference_service_pb2.StreamCompletionResponse,
)


class ChunkStream(ABC, Generic[_Message]):
    """Turns the core's stream messages into OpenAI chunks, one request at a time.

    Each choice gets an optional opening chunk, one chunk per non-empty piece of text and a closing chunk
    with its finish_reason. With include_usage every chunk has "usage": null and final_chunks() adds one
    chunk with no choices and the usage the core sent on its last message.
    """

    object_name: str

    def __init__(self, include_usage: bool) -> None:
        self._include_usage = include_usage
        self._head: JsonObject | None = None
        self._started: set[int] = set()
        self._usage: common_pb2.Usage | None = None

    def chunks(self, message: _Message) -> list[JsonObject]:
        """The chunks one core message becomes, in order."""
        if self._head is None:
            self._head = {
                "id": message.id,
                "object": self.object_name,
                "created": message.created,
                "model": message.model,
            }
        if message.HasField("usage"):
            self._usage = message.usage
        chunks: list[JsonObject] = []
        index = message.index
        if index not in self._started:
            self._started.add(index)
            opening = self._opening_choice(index)
            if opening is not None:
                chunks.append(self._chunk(opening))
        choice = self._choice(message)
        if choice is not None:
            chunks.append(self._chunk(choice))
        reason = finish_reason_name(message.finish_reason)
        if reason is not None:
            chunks.append(self._chunk(self._closing_choice(index, reason)))
        return chunks

    def final_chunks(self) -> list[JsonObject]:
        """What follows the last core message: the usage chunk, when asked for and sent by the core."""
        if not self._include_usage or self._usage is None or self._head is None:
            return []
        return [{**self._head, "choices": [], "usage": usage_json(self._usage)}]

    def _chunk(self, choice: JsonObject) -> JsonObject:
        assert self._head is not None
        chunk: JsonObject = {**self._head, "choices": [choice]}
        if self._include_usage:
            chunk["usage"] = None
        return chunk

    @abstractmethod
    def _opening_choice(self, index: int) -> JsonObject | None: ...

    @abstractmethod
    def _choice(self, message: _Message) -> JsonObject | None:
        """The choice for the message's new text, tool calls or log-probabilities; None when it has none."""

    @abstractmethod
    def _closing_choice(self, index: int, finish_reason: str) -> JsonObject: ...


class ChatChunkStream(ChunkStream[inference_service_pb2.StreamChatCompletionResponse]):
    """chat.completion.chunk objects: a role delta opens each choice and an empty delta closes it."""

    object_name = "chat.completion.chunk"

    def _opening_choice(self, index: int) -> JsonObject:
        return _chat_choice(index, {"role": "assistant", "content": ""}, None)

    def _choice(self, message: inference_service_pb2.StreamChatCompletionResponse) -> JsonObject | None:
        delta: JsonObject = {}
        if message.delta.reasoning_content:
            delta["reasoning_content"] = message.delta.reasoning_content
        if message.delta.content:
            delta["content"] = message.delta.content
        if message.delta.tool_calls:
            delta["tool_calls"] = [_tool_call_delta_json(d) for d in message.delta.tool_calls]
        if not delta and not message.logprobs:
            return None
        choice = _chat_choice(message.index, delta, None)
        if message.logprobs:
            choice["logprobs"] = chat_logprobs_json(message.logprobs)
        return choice

    def _closing_choice(self, index: int, finish_reason: str) -> JsonObject:
        return _chat_choice(index, {}, finish_reason)


class CompletionChunkStream(ChunkStream[inference_service_pb2.StreamCompletionResponse]):
    """text_completion chunks: pieces of text, then an empty text carrying the finish_reason."""

    object_name = "text_completion"

    def _opening_choice(self, index: int) -> None:
        return None

    def __init__(self, include_usage: bool) -> None:
        super().__init__(include_usage)
        self._text_offsets: dict[int, int] = {}

    def _choice(self, message: inference_service_pb2.StreamCompletionResponse) -> JsonObject | None:
        if not (message.text or message.logprobs or message.prompt_logprobs):
            return None
        choice = _completion_choice(message.index, message.text, None)
        if message.logprobs or message.prompt_logprobs:
            offset = self._text_offsets.get(message.index, 0)
            logprobs = completion_logprobs_json(message.logprobs, message.prompt_logprobs, offset)
            assert logprobs is not None
            choice["logprobs"] = logprobs
            self._text_offsets[message.index] = offset + sum(len(t) for t in logprobs["tokens"])
        return choice

    def _closing_choice(self, index: int, finish_reason: str) -> JsonObject:
        return _completion_choice(index, "", finish_reason)


def _completion_choice(index: int, text: str, finish_reason: str | None) -> JsonObject:
    return {"text": text, "index": index, "logprobs": None, "finish_reason": finish_reason}


def _tool_call_delta_json(delta: inference_service_pb2.ToolCallDelta) -> JsonObject:
    """OpenAI's streamed tool call piece: id, type and name on the first piece of a call only."""
    function: JsonObject = {"arguments": delta.arguments}
    body: JsonObject = {"index": delta.index}
    if delta.id:
        body["id"] = delta.id
        body["type"] = delta.type or "function"
        function = {"name": delta.name, **function}
    body["function"] = function
    return body


def _chat_choice(index: int, delta: JsonObject, finish_reason: str | None) -> JsonObject:
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}


def tokenize_json(reply: inference_service_pb2.TokenizeResponse) -> JsonObject:
    """llama.cpp's and vLLM's /tokenize answer in one: tokens, count, max_model_len and, if asked, each
    token's text (llama.cpp's pieces and vLLM's token_strs)."""
    body: JsonObject = {
        "tokens": list(reply.tokens),
        "count": reply.count,
        "max_model_len": reply.context_length,
    }
    if reply.pieces:
        body["pieces"] = [{"id": p.id, "piece": _piece_json(p.piece)} for p in reply.pieces]
        body["token_strs"] = [p.piece.decode("utf-8", errors="replace") for p in reply.pieces]
    return body


def detokenize_json(reply: inference_service_pb2.DetokenizeResponse) -> JsonObject:
    """llama.cpp names the text "content", vLLM "prompt"."""
    return {"content": reply.text, "prompt": reply.text}


def _piece_json(piece: bytes) -> str | list[int]:
    """A token's text, or its byte values where it holds part of a UTF-8 character (as llama.cpp does)."""
    try:
        return piece.decode("utf-8")
    except UnicodeDecodeError:
        return list(piece)


def chat_logprobs_json(logprobs: Sequence[common_pb2.TokenLogprob]) -> JsonObject | None:
    """OpenAI's chat shape: {"content": [{token, logprob, bytes, top_logprobs: [{token, ...}]}], "refusal":
    null} (OpenAI's document requires refusal, the log-probabilities of a refusal's tokens)."""
    if not logprobs:
        return None

    def entry(token: bytes, logprob: float) -> JsonObject:
        return {"token": _token_text(token), "logprob": logprob, "bytes": list(token)}

    return {
        "content": [
            {
                **entry(lp.token, lp.logprob),
                "top_logprobs": [entry(t.token, t.logprob) for t in lp.top_logprobs],
            }
            for lp in logprobs
        ],
        "refusal": None,
    }


def completion_logprobs_json(
    logprobs: Sequence[common_pb2.TokenLogprob],
    prompt_logprobs: Sequence[inference_service_pb2.PromptTokenLogprob] = (),
    text_offset: int = 0,
) -> JsonObject | None:
    """OpenAI's legacy completions shape: tokens, token_logprobs, top_logprobs (token -> logprob) and each
    token's character offset in the returned text. Under echo the prompt's tokens come first; the first of
    them has null for its logprob and its top_logprobs."""
    if not logprobs and not prompt_logprobs:
        return None
    tokens: list[str] = []
    token_logprobs: list[float | None] = []
    top_logprobs: list[dict[str, float] | None] = []
    entries: tuple[inference_service_pb2.PromptTokenLogprob | common_pb2.TokenLogprob, ...] = (
        *prompt_logprobs,
        *logprobs,
    )
    for entry in entries:
        tokens.append(_token_text(entry.token))
        scored = not isinstance(entry, inference_service_pb2.PromptTokenLogprob) or entry.HasField("logprob")
        token_logprobs.append(entry.logprob if scored else None)
        top_logprobs.append({_token_text(t.token): t.logprob for t in entry.top_logprobs} if scored else None)
    offsets: list[int] = []
    for token in tokens:
        offsets.append(text_offset)
        text_offset += len(token)
    return {
        "tokens": tokens,
        "token_logprobs": token_logprobs,
        "top_logprobs": top_logprobs,
        "text_offset": offsets,
    }


def _token_text(token: bytes) -> str:
    return token.decode("utf-8", errors="replace")
