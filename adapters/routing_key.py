"""The gRPC metadata that lets Envoy keep a fleet's KV caches warm (inferno/envoy_config.py routes on it):
x-inferno-model names the model a call is for, and x-inferno-route-key hashes the model with the start of
the conversation, so every turn of a conversation (and every call sharing its opening) reaches the same core.
"""

from __future__ import annotations

import hashlib

from inferno.envoy_config import MODEL_HEADER, ROUTE_KEY_HEADER
from inferno.model_names import MAX_MODEL_ID_CHARS
from inferno.v1 import inference_service_pb2 as pb
from inferno.v1 import response_service_pb2

# Characters of each opening message (and of a completion's prompt) that go into the key: enough to tell
# conversations apart, few enough that later turns, which only append messages, keep the same key.
ROUTE_KEY_CHARS = 256
_OPENING_ROLES = ("system", "developer")

Metadata = tuple[tuple[str, str], ...]


def routing_metadata(message: object) -> Metadata:
    """x-inferno-model and x-inferno-route-key for a request message with a model (directly or in its
    `params`); nothing for a message without one."""
    params = getattr(message, "params", message)
    if isinstance(params, response_service_pb2.ResponseParams):
        params = _as_chat(params)
    model = getattr(params, "model", "")
    # A model id no core can serve (over the longest id the core accepts) travels without routing headers, so
    # the core answers it with its own error rather than gRPC refusing oversized metadata.
    if not isinstance(model, str) or not model or len(model) > MAX_MODEL_ID_CHARS or not _header_safe(model):
        return ()
    metadata = [(MODEL_HEADER, model)]
    opening = _opening(params)
    if opening is not None:
        digest = hashlib.sha256(f"{model}\0{opening}".encode()).hexdigest()
        metadata.append((ROUTE_KEY_HEADER, digest[:16]))
    return tuple(metadata)


def _opening(params: object) -> str | None:
    """The system/developer messages and the first other message, each cut to ROUTE_KEY_CHARS; or the first
    prompt's start. None when the request has neither."""
    if isinstance(params, pb.ChatCompletionParams | pb.TokenizeRequest) and params.messages:
        parts = []
        for chat_message in params.messages:
            parts.append(f"{chat_message.role}\n{chat_message.content[:ROUTE_KEY_CHARS]}")
            if chat_message.role not in _OPENING_ROLES:
                break
        return "\n".join(parts)
    if isinstance(params, pb.CompletionParams) and params.prompts:
        prompt = params.prompts[0]
        if prompt.WhichOneof("kind") == "tokens":
            return " ".join(str(token) for token in prompt.tokens.ids[:ROUTE_KEY_CHARS])
        return prompt.text[:ROUTE_KEY_CHARS]
    return None


def _as_chat(params: response_service_pb2.ResponseParams) -> pb.ChatCompletionParams:
    """A response's model and the opening of its conversation as chat params, so it lands where the same
    chat would. A response continuing another has no opening here (the core holds it): the model alone."""
    chat = pb.ChatCompletionParams(model=params.chat.model)
    if params.previous_response_id:
        return chat
    if params.instructions:
        chat.messages.add(role="system", content=params.instructions)
    for item in params.input:
        if item.WhichOneof("item") == "message":
            content = "\n".join(part.text for part in item.message.content)
            chat.messages.add(role=item.message.role, content=content)
    return chat


def _header_safe(value: str) -> bool:
    # gRPC metadata values are printable ASCII; a model id that is not goes to any core serving its model.
    return value.isascii() and value.isprintable()
