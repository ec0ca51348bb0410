"""The routing metadata the gateway puts on its calls to the cores: x-inferno-model, and a route key that a
conversation keeps from turn to turn and that tells conversations apart."""

from __future__ import annotations

from inferno.adapters.routing_key import ROUTE_KEY_CHARS, routing_metadata
from inferno.envoy_config import MODEL_HEADER, ROUTE_KEY_HEADER
from inferno.v1 import inference_service_pb2 as pb
from inferno.v1 import model_service_pb2


def _chat(model: str, *messages: tuple[str, str]) -> pb.StreamChatCompletionRequest:
    chat = [pb.ChatMessage(role=role, content=content) for role, content in messages]
    return pb.StreamChatCompletionRequest(params=pb.ChatCompletionParams(model=model, messages=chat))


def _key(message: object) -> str:
    return dict(routing_metadata(message))[ROUTE_KEY_HEADER]


SYSTEM = ("system", "You are terse.")


def test_a_chat_call_names_its_model_and_a_route_key() -> None:
    metadata = dict(routing_metadata(_chat("smollm2", SYSTEM, ("user", "hi"))))
    assert metadata[MODEL_HEADER] == "smollm2"
    assert len(metadata[ROUTE_KEY_HEADER]) == 16


def test_later_turns_keep_the_first_turns_key() -> None:
    first = _chat("m", SYSTEM, ("user", "tell me about rivers"))
    later = _chat(
        "m", SYSTEM, ("user", "tell me about rivers"), ("assistant", "They flow."), ("user", "more")
    )
    assert _key(first) == _key(later)


def test_conversations_with_another_opening_or_model_get_another_key() -> None:
    rivers = _chat("m", SYSTEM, ("user", "tell me about rivers"))
    assert _key(rivers) != _key(_chat("m", SYSTEM, ("user", "tell me about comets")))
    assert _key(rivers) != _key(_chat("m", ("system", "Be verbose."), ("user", "tell me about rivers")))
    assert _key(rivers) != _key(_chat("other", SYSTEM, ("user", "tell me about rivers")))


def test_only_the_start_of_each_opening_message_counts() -> None:
    base = "x" * ROUTE_KEY_CHARS
    assert _key(_chat("m", ("user", base + "a"))) == _key(_chat("m", ("user", base + "b")))


def test_a_completion_is_keyed_on_its_prompts_start() -> None:
    def completion(text: str) -> pb.CreateCompletionRequest:
        return pb.CreateCompletionRequest(
            params=pb.CompletionParams(model="m", prompts=[pb.Prompt(text=text)])
        )

    assert _key(completion("Once upon a time")) != _key(completion("In a galaxy"))
    tokens = pb.CreateCompletionRequest(
        params=pb.CompletionParams(model="m", prompts=[pb.Prompt(tokens=pb.TokenIds(ids=[1, 2, 3]))])
    )
    assert _key(tokens)


def test_a_call_without_a_model_carries_nothing() -> None:
    assert routing_metadata(model_service_pb2.ListModelsRequest()) == ()
    assert routing_metadata(_chat("", ("user", "hi"))) == ()


def test_a_model_id_gRPC_metadata_cannot_carry_is_left_out() -> None:
    assert routing_metadata(_chat("modèle", ("user", "hi"))) == ()


def test_an_embeddings_call_names_its_model_only() -> None:
    request = pb.CreateEmbeddingsRequest(model="all-minilm-l6-v2")
    assert routing_metadata(request) == ((MODEL_HEADER, "all-minilm-l6-v2"),)
