"""Reasoning output: the splitter that takes a reply's <think> block apart from its answer as it streams, and
the same split end to end through the gateway (chat completions whole and as SSE, and /v1/responses)
against scripted models whose replies think in tags."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openai import OpenAI

from inferno.core.text.reasoning import (
    ReasoningPiece,
    ReasoningPolicy,
    ReasoningSplitter,
    resolve_reasoning,
    template_thinks_in_tags,
)
from inferno.v1 import inference_service_pb2 as pb
from tests.contract.conftest import running_scripted_inferno
from tests.servers import RunningServer

THOUGHTS = "The user greets me. A greeting back fits."
ANSWER = "Hello! How can I help?"
REPLY = f"<think>\n{THOUGHTS}\n</think>\n\n{ANSWER}"
# Like Qwen3's: earlier assistant turns lose their think block, which is how a template shows it thinks.
THINKING_TEMPLATE = (
    "{% for m in messages %}{{ m.role }}: {{ m.content.split('</think>')[-1] }}\n{% endfor %}assistant:"
)
PLAIN_TEMPLATE = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}assistant:"
THINKING_MODELS = ["thinking-batch", "thinking-self"]


# The splitter


def _split_in_chunks(text: str, size: int, opened_in_prompt: bool = False) -> ReasoningPiece:
    splitter = ReasoningSplitter(opened_in_prompt)
    piece = ReasoningPiece()
    for start in range(0, len(text), size):
        piece += splitter.feed(text[start : start + size])
    return piece + splitter.flush()


def test_a_leading_think_block_is_reasoning_and_the_rest_content() -> None:
    assert ReasoningPolicy().split(REPLY) == ReasoningPiece(THOUGHTS, ANSWER)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13])
def test_any_chunking_splits_as_the_whole_reply_does(size: int) -> None:
    reply = f"  <think> {THOUGHTS} </thi </think>\n{ANSWER} <think>x</think>"
    assert _split_in_chunks(reply, size) == ReasoningPolicy().split(reply)
    assert ReasoningPolicy().split(reply) == ReasoningPiece(f"{THOUGHTS} </thi", f"{ANSWER} <think>x</think>")


def test_a_partial_closing_tag_is_held_back_until_it_is_known() -> None:
    splitter = ReasoningSplitter()
    assert splitter.feed("<think>Hmm</th") == ReasoningPiece("Hmm", "")
    assert splitter.feed("ink>Yes") == ReasoningPiece("", "Yes")


def test_think_tags_after_the_answer_began_stay_content() -> None:
    reply = f"{ANSWER} <think>{THOUGHTS}</think>"
    assert ReasoningPolicy().split(reply) == ReasoningPiece("", reply)


def test_an_unclosed_think_block_is_all_reasoning() -> None:
    assert ReasoningPolicy().split(f"<think>{THOUGHTS}  ") == ReasoningPiece(THOUGHTS, "")


def test_text_that_only_began_like_a_tag_is_content() -> None:
    assert _split_in_chunks("<thi", 1) == ReasoningPiece("", "<thi")


def test_a_prompt_that_opens_the_block_makes_the_reply_start_inside_it() -> None:
    assert _split_in_chunks(f"{THOUGHTS}</think>{ANSWER}", 4, True) == ReasoningPiece(THOUGHTS, ANSWER)


def test_auto_separates_only_for_templates_that_think_in_tags() -> None:
    auto = pb.REASONING_FORMAT_UNSPECIFIED
    assert template_thinks_in_tags(THINKING_TEMPLATE) and not template_thinks_in_tags(PLAIN_TEMPLATE)
    assert resolve_reasoning(auto, THINKING_TEMPLATE, "user: hi\nassistant:", False) == ReasoningPolicy()
    assert resolve_reasoning(auto, PLAIN_TEMPLATE, "user: hi\nassistant:", False) is None
    opened = resolve_reasoning(auto, THINKING_TEMPLATE, "assistant: <think>\n", False)
    assert opened == ReasoningPolicy(opened_in_prompt=True)


def test_none_and_grammar_constrained_replies_stay_inline_and_deepseek_always_separates() -> None:
    assert resolve_reasoning(pb.REASONING_FORMAT_NONE, THINKING_TEMPLATE, "", False) is None
    assert resolve_reasoning(pb.REASONING_FORMAT_AUTO, THINKING_TEMPLATE, "", True) is None
    assert resolve_reasoning(pb.REASONING_FORMAT_SEPARATED, PLAIN_TEMPLATE, "", False) == ReasoningPolicy()


# End to end


@pytest.fixture(scope="module")
def thinking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Scripted models replying REPLY: with a template that thinks in tags (both engine shapes), and with
    a plain template ("plain")."""
    root = tmp_path_factory.mktemp("thinking")
    models = root / "models"
    models.mkdir()
    for name, template in (("thinking", THINKING_TEMPLATE), ("plain", PLAIN_TEMPLATE)):
        script = {"default": REPLY, "delay_s": 0.002, "chat_template": template}
        (models / f"{name}.script.json").write_text(json.dumps(script))
    served = [
        ("thinking-batch", "thinking", "scripted-batch"),
        ("thinking-self", "thinking", "scripted-self"),
        ("plain", "plain", "scripted-batch"),
    ]
    with running_scripted_inferno(root, served) as running:
        yield running


@pytest.fixture(scope="module")
def thinking_http(thinking_server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=thinking_server.base_url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def thinking_openai(thinking_server: RunningServer) -> OpenAI:
    return OpenAI(base_url=thinking_server.base_url + "/v1", api_key="none", max_retries=0, timeout=60)


def _chat(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "Hi"}], **extra}


def _sse_data(reply: httpx.Response) -> list[dict[str, Any]]:
    events = []
    for line in reply.text.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            events.append(json.loads(line.removeprefix("data: ")))
    return events


@pytest.mark.parametrize("model", THINKING_MODELS)
def test_a_chat_reply_carries_reasoning_content_apart_from_content(
    thinking_http: httpx.Client, model: str
) -> None:
    reply = thinking_http.post("/v1/chat/completions", json=_chat(model))
    assert reply.status_code == 200, reply.text
    message = reply.json()["choices"][0]["message"]
    assert message["reasoning_content"] == THOUGHTS and message["content"] == ANSWER


@pytest.mark.parametrize("model", THINKING_MODELS)
def test_a_streamed_chat_reply_sends_reasoning_content_deltas(
    thinking_http: httpx.Client, model: str
) -> None:
    reply = thinking_http.post("/v1/chat/completions", json=_chat(model, stream=True))
    deltas = [chunk["choices"][0]["delta"] for chunk in _sse_data(reply) if chunk["choices"]]
    reasoning = "".join(d.get("reasoning_content", "") for d in deltas)
    content = "".join(d.get("content") or "" for d in deltas)
    assert reasoning == THOUGHTS and content == ANSWER
    # Thoughts stream as they come, not at the end in one piece.
    assert sum(1 for d in deltas if d.get("reasoning_content")) > 1


def test_reasoning_format_none_leaves_the_thinking_inline(thinking_http: httpx.Client) -> None:
    reply = thinking_http.post("/v1/chat/completions", json=_chat("thinking-batch", reasoning_format="none"))
    message = reply.json()["choices"][0]["message"]
    assert message["content"] == REPLY and "reasoning_content" not in message


def test_a_model_whose_template_does_not_think_keeps_tags_inline_unless_asked(
    thinking_http: httpx.Client,
) -> None:
    auto = thinking_http.post("/v1/chat/completions", json=_chat("plain")).json()["choices"][0]["message"]
    assert auto["content"] == REPLY
    asked = thinking_http.post("/v1/chat/completions", json=_chat("plain", reasoning_format="deepseek"))
    message = asked.json()["choices"][0]["message"]
    assert message["reasoning_content"] == THOUGHTS and message["content"] == ANSWER


def test_an_unknown_reasoning_format_is_a_400(thinking_http: httpx.Client) -> None:
    reply = thinking_http.post("/v1/chat/completions", json=_chat("plain", reasoning_format="hidden"))
    assert reply.status_code == 400 and reply.json()["error"]["details"]["param"] == "reasoning_format"


def test_earlier_thoughts_are_not_sent_back_to_the_model(thinking_http: httpx.Client) -> None:
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": REPLY},
        {"role": "user", "content": "Again"},
    ]
    reply = thinking_http.post(
        "/v1/chat/completions", json={"model": "thinking-batch", "messages": messages}
    ).json()
    prompt = f"user: Hi\nassistant: \n\n{ANSWER}\nuser: Again\nassistant:"
    assert reply["usage"]["prompt_tokens"] == len(prompt.encode())


@pytest.mark.parametrize("model", THINKING_MODELS)
def test_a_response_has_a_reasoning_item_before_its_message(thinking_openai: OpenAI, model: str) -> None:
    response = thinking_openai.responses.create(model=model, input="Hi")
    assert [item.type for item in response.output] == ["reasoning", "message"]
    reasoning = response.output[0]
    assert reasoning.type == "reasoning" and reasoning.id.startswith("rs_")
    assert reasoning.content is not None and reasoning.content[0].text == THOUGHTS
    assert response.output_text == ANSWER


def test_a_streamed_response_streams_reasoning_text_then_output_text(thinking_openai: OpenAI) -> None:
    events = list(thinking_openai.responses.create(model="thinking-self", input="Hi", stream=True))
    types = [event.type for event in events]
    thoughts = "".join(e.delta for e in events if e.type == "response.reasoning_text.delta")
    answer = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert thoughts == THOUGHTS and answer == ANSWER
    assert types.index("response.reasoning_text.delta") < types.index("response.output_text.delta")
    added = [e.item.type for e in events if e.type == "response.output_item.added"]
    done = [e.item.type for e in events if e.type == "response.output_item.done"]
    assert added == done == ["reasoning", "message"]
    assert types[-1] == "response.completed"
    final = events[-1]
    assert final.type == "response.completed" and final.response.output_text == ANSWER


def test_an_anthropic_message_keeps_the_thinking_in_its_text(thinking_server: RunningServer) -> None:
    """Extended thinking is not offered on /v1/messages, so the reasoning stays inline, as with
    reasoning_format none, instead of being split off and lost."""
    from anthropic import Anthropic

    client = Anthropic(base_url=thinking_server.base_url, api_key="none", max_retries=0, timeout=60)
    message = client.messages.create(
        model=THINKING_MODELS[0], max_tokens=1024, messages=[{"role": "user", "content": "Hi"}]
    )
    text = "".join(block.text for block in message.content if block.type == "text")
    assert text == REPLY
