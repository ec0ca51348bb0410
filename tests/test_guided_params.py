"""Request parameters other servers accept, on the real model: grammar, guided_json, guided_regex,
guided_choice, min_tokens, typical_p, suffix, and the warning header for fields nothing serves."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import pytest

from inferno.core.engines.exllamav2 import CAPABILITIES as EXLLAMAV2
from inferno.core.regex_grammar import regex_grammar
from tests.servers import RunningServer, running_inferno
from tests.tiny_llama import write_tiny_llama

QUESTION = [{"role": "user", "content": "Name a colour."}]


def _chat(http: httpx.Client, model_id: str, **fields: Any) -> httpx.Response:
    body = {"model": model_id, "messages": QUESTION, "max_tokens": 40, "temperature": 0.8, **fields}
    return http.post("/v1/chat/completions", json=body)


def _chat_text(http: httpx.Client, model_id: str, **fields: Any) -> str:
    reply = _chat(http, model_id, **fields)
    assert reply.status_code == 200, reply.text
    return str(reply.json()["choices"][0]["message"]["content"])


def _completion(http: httpx.Client, model_id: str, **fields: Any) -> httpx.Response:
    body = {"model": model_id, "prompt": "The sky is", "max_tokens": 20, **fields}
    return http.post("/v1/completions", json=body)


def _refused(reply: httpx.Response, param: str) -> str:
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["code"] == "invalid_parameters" and error["details"]["param"] == param, error
    return str(error["message"])


def test_guided_choice_output_is_one_of_the_choices(http: httpx.Client, model_id: str) -> None:
    choices = ["red", "green", "dark blue"]
    for seed in range(3):
        assert _chat_text(http, model_id, guided_choice=choices, seed=seed) in choices


def test_guided_choice_on_completions_streams_one_of_the_choices(http: httpx.Client, model_id: str) -> None:
    choices = ["yes", "no"]
    body = {"model": model_id, "prompt": "Is water wet?", "max_tokens": 5, "guided_choice": choices}
    with http.stream("POST", "/v1/completions", json={**body, "stream": True}) as reply:
        assert reply.status_code == 200
        events = [line[6:] for line in reply.iter_lines() if line.startswith("data: ")]
    text = "".join(json.loads(e)["choices"][0]["text"] for e in events[:-1] if json.loads(e)["choices"])
    assert text in choices


@pytest.mark.parametrize("pattern", [r"\d{3}-[A-Z]{2}", r"(cat|dog)s? [a-z]{1,8}!", r"[A-F0-9]{4}\.[xyz]"])
def test_guided_regex_output_matches_the_whole_regex(http: httpx.Client, model_id: str, pattern: str) -> None:
    text = _chat_text(http, model_id, guided_regex=pattern, seed=7)
    assert re.fullmatch(pattern, text), text


def test_guided_json_output_parses_and_validates(http: httpx.Client, model_id: str) -> None:
    schema = {
        "type": "object",
        "properties": {"colour": {"type": "string", "maxLength": 12}, "count": {"type": "integer"}},
        "required": ["colour", "count"],
        "additionalProperties": False,
    }
    for guided_json in (schema, json.dumps(schema)):
        reply = _completion(http, model_id, guided_json=guided_json, max_tokens=60, temperature=0)
        assert reply.status_code == 200, reply.text
        jsonschema.validate(json.loads(reply.json()["choices"][0]["text"]), schema)


def test_grammar_constrains_the_output(http: httpx.Client, model_id: str) -> None:
    grammar = 'root ::= "answer: " [0-9] [0-9]? " " ("apples" | "pears")\n'
    for seed in range(2):
        text = _chat_text(http, model_id, grammar=grammar, seed=seed)
        assert re.fullmatch(r"answer: [0-9]{1,2} (apples|pears)", text), text


def test_a_grammar_llama_cpp_cannot_parse_is_refused_naming_grammar(
    http: httpx.Client, model_id: str
) -> None:
    _refused(_chat(http, model_id, grammar='root ::= "unterminated'), "grammar")
    _refused(_chat(http, model_id, grammar="  "), "grammar")
    _refused(_chat(http, model_id, grammar='root ::= "a"\x00 | "b"'), "grammar")
    _refused(_chat(http, model_id, grammar="root ::= " + "(" * 100 + '"a"' + ")" * 100), "grammar")
    _refused(_chat(http, model_id, grammar='root ::= "a"{1,99999}'), "grammar")
    # llama.cpp allocated until the kernel killed the core.
    assert "m greater than n" in _refused(_chat(http, model_id, grammar='root ::= "a"{5,2}'), "grammar")


@pytest.mark.parametrize(
    ("field", "value"),
    [("guided_regex", "\x00"), ("grammar", 'root ::= "\\x00"'), ("guided_regex", "ab\x00")],
)
def test_a_grammar_no_token_can_follow_fails_the_request_and_the_server_serves_on(
    http: httpx.Client, model_id: str, field: str, value: str
) -> None:
    """llama.cpp's grammar code cannot match a NUL character in a token's text: every token is ruled out.
    Sampling one anyway made llama.cpp abort the core; now the request fails with a 400 naming the field."""
    body = {"model": model_id, "messages": QUESTION, "max_tokens": 8, field: value}
    assert "allows no token" in _refused(http.post("/v1/chat/completions", json=body), field)
    assert _chat_text(http, model_id, guided_choice=["red", "blue"]) in ("red", "blue")


def test_a_streamed_reply_whose_grammar_runs_out_of_tokens_ends_with_an_error_event(
    http: httpx.Client, model_id: str
) -> None:
    body = {
        "model": model_id,
        "messages": QUESTION,
        "max_tokens": 8,
        "guided_regex": "ab\x00",
        "stream": True,
    }
    with http.stream("POST", "/v1/chat/completions", json=body) as reply:
        assert reply.status_code == 200
        events = [json.loads(line[6:]) for line in reply.iter_lines() if line.startswith("data: {")]
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e.get("choices"))
    assert text == "ab"
    error = events[-1]["error"]
    assert error["code"] == "invalid_parameters" and error["details"]["param"] == "guided_regex", events


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "minLength": 1_000_000_000},
        {"type": "string", "maxLength": 5000},
        {
            "type": "object",
            "properties": {"tags": {"type": "array", "items": {"type": "string"}, "minItems": 10**6}},
        },
        {"type": "string", "pattern": "^a{1000000000}$"},
    ],
    ids=["minLength", "maxLength", "minItems", "pattern"],
)
def test_a_schema_repeating_more_than_the_grammar_limit_is_refused_at_once(
    http: httpx.Client, model_id: str, schema: dict[str, Any]
) -> None:
    """The converter writes repetitions out in full: a minLength of 10^9 froze the core for minutes."""
    response_format = {"type": "json_schema", "json_schema": {"name": "n", "schema": schema}}
    refused = _chat(http, model_id, response_format=response_format)
    assert "1000" in _refused(refused, "response_format.json_schema")
    assert "1000" in _refused(_chat(http, model_id, guided_json=schema), "guided_json")
    tool = {
        "type": "function",
        "function": {"name": "f", "parameters": {"type": "object", "properties": {"x": schema}}},
    }
    _refused(_chat(http, model_id, tools=[tool], tool_choice="required"), "tools[0].function.parameters")


def test_guided_fields_that_cannot_be_served_are_refused_naming_the_field(
    http: httpx.Client, model_id: str
) -> None:
    _refused(_chat(http, model_id, guided_regex=r"(a)\1"), "guided_regex")
    _refused(_chat(http, model_id, guided_regex="(unclosed"), "guided_regex")
    _refused(_chat(http, model_id, guided_choice=[]), "guided_choice")
    _refused(_chat(http, model_id, guided_choice="red"), "guided_choice")
    _refused(_chat(http, model_id, guided_json="{not json"), "guided_json")
    _refused(_chat(http, model_id, guided_json=5), "guided_json")
    both = _chat(http, model_id, guided_regex="a", guided_choice=["a"])
    assert "cannot be combined" in _refused(both, "guided_choice")
    with_format = _chat(http, model_id, guided_regex="a", response_format={"type": "json_object"})
    assert "response_format" in _refused(with_format, "guided_regex")


def test_min_tokens_holds_back_the_end_of_a_reply_that_would_end_at_once(
    http: httpx.Client, model_id: str
) -> None:
    # A strong bias towards the end-of-generation tokens ends the reply at its first token.
    ending = {"0": 100, "2": 100}
    base = {"model": model_id, "messages": QUESTION, "max_tokens": 30, "logit_bias": ending}
    short = http.post("/v1/chat/completions", json=base).json()
    assert short["usage"]["completion_tokens"] == 1 and short["choices"][0]["finish_reason"] == "stop"
    held = http.post("/v1/chat/completions", json={**base, "min_tokens": 6}).json()
    assert held["usage"]["completion_tokens"] >= 6 and held["choices"][0]["finish_reason"] == "stop"
    assert held["choices"][0]["message"]["content"]


def test_min_tokens_keeps_stop_strings_from_matching_before_then(http: httpx.Client, model_id: str) -> None:
    base = {"prompt": "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,", "max_tokens": 16, "temperature": 0, "stop": [","]}
    stopped = _completion(http, model_id, **base).json()
    assert "," not in stopped["choices"][0]["text"] and stopped["usage"]["completion_tokens"] < 8
    held = _completion(http, model_id, **base, min_tokens=8).json()
    assert held["usage"]["completion_tokens"] >= 8
    assert "," in held["choices"][0]["text"]


def test_min_tokens_above_max_tokens_or_with_a_grammar_is_refused(http: httpx.Client, model_id: str) -> None:
    _refused(_chat(http, model_id, min_tokens=50, max_tokens=10), "min_tokens")
    _refused(_chat(http, model_id, min_tokens=2, guided_choice=["a", "b"]), "min_tokens")
    _refused(_chat(http, model_id, min_tokens=-1), "min_tokens")


def test_typical_p_is_accepted_and_the_reply_is_ordinary_text(http: httpx.Client, model_id: str) -> None:
    plain = _completion(http, model_id, temperature=0.9, seed=3).json()["choices"][0]["text"]
    typical = _completion(http, model_id, temperature=0.9, seed=3, typical_p=0.5)
    assert typical.status_code == 200
    assert typical.json()["choices"][0]["text"] and plain
    # typical_p 1 is off: the same seed gives the same text.
    same = _completion(http, model_id, temperature=0.9, seed=3, typical_p=1.0).json()["choices"][0]["text"]
    assert same == plain
    _refused(_completion(http, model_id, typical_p=0), "typical_p")
    _refused(_completion(http, model_id, typical_p=1.5), "typical_p")


def test_unknown_fields_are_named_in_the_warning_header(http: httpx.Client, model_id: str) -> None:
    reply = _chat(http, model_id, max_tokens=2, store=True, mystery_knob=3, metadata=None)
    assert reply.status_code == 200
    assert reply.headers["Inferno-Warning"] == "ignored fields: store, mystery_knob"
    completion = _completion(http, model_id, max_tokens=2, **{"bad\nname": 1})
    assert completion.headers["Inferno-Warning"] == 'ignored fields: "bad\\nname"'
    body = {"model": model_id, "messages": QUESTION, "max_tokens": 2, "stream": True, "frobnicate": 1}
    with http.stream("POST", "/v1/chat/completions", json=body) as streamed:
        assert streamed.headers["Inferno-Warning"] == "ignored fields: frobnicate"
    served = _chat(http, model_id, max_tokens=2, typical_p=0.9, top_k=5, min_p=0.1)
    assert "Inferno-Warning" not in served.headers


def test_suffix_is_refused_for_a_model_without_fill_in_the_middle_tokens(
    http: httpx.Client, model_id: str
) -> None:
    # SmolLM2's vocabulary has no <|fim_prefix|>, <|fim_suffix|> or <|fim_middle|>.
    message = _refused(_completion(http, model_id, prompt="def add(a, b):\n", suffix="\n"), "suffix")
    assert "fill-in-the-middle" in message
    # An empty suffix asks for nothing.
    assert _completion(http, model_id, suffix="", max_tokens=2).status_code == 200


def test_exllamav2_declares_what_it_refuses() -> None:
    assert not EXLLAMAV2.typical_p and not EXLLAMAV2.min_tokens and EXLLAMAV2.constrained_output


def test_regex_grammar_refuses_what_a_grammar_cannot_enforce() -> None:
    for pattern in (r"(a)\1", r"(?=a)b", r"(?i)abc", r"a\bb", r"[\Da]", "a{5000}"):
        with pytest.raises(Exception, match="guided_regex"):
            regex_grammar(pattern, "guided_regex")


FIM_TOKENS = ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>")


@pytest.fixture(scope="module")
def fim_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """`inferno serve` on a tiny converted Llama whose vocabulary has Qwen's fill-in-the-middle tokens (the
    last three of its trained tokens, renamed), which llama.cpp finds by their text."""
    from inferno.core.convert.converter import convert_checkpoint

    root = tmp_path_factory.mktemp("fim")
    folder = write_tiny_llama(root / "hf")
    spec = json.loads((folder / "tokenizer.json").read_text())
    vocab: dict[str, int] = spec["model"]["vocab"]
    renamed = sorted(vocab.items(), key=lambda item: item[1])[-3:]
    for (old, token_id), new in zip(renamed, FIM_TOKENS, strict=True):
        del vocab[old]
        vocab[new] = token_id
        flags = dict.fromkeys(("single_word", "lstrip", "rstrip", "normalized"), False)
        spec["added_tokens"].append({"id": token_id, "content": new, **flags, "special": True})
    (folder / "tokenizer.json").write_text(json.dumps(spec))
    model = convert_checkpoint(folder, root / "tiny-fim.gguf", "f32").output
    with running_inferno("--model", str(model), "--ctx-size", "256") as running:
        yield running


def test_suffix_is_served_as_a_fill_in_the_middle_prompt(fim_server: RunningServer) -> None:
    with httpx.Client(base_url=fim_server.base_url, timeout=120) as client:
        model = client.get("/v1/models").json()["data"][0]["id"]
        prefix, suffix = "The quick brown fox", " over the lazy dog."
        count = [
            client.post("/tokenize", json={"prompt": text, "add_special_tokens": False}).json()["count"]
            for text in (prefix, suffix)
        ]
        body = {"model": model, "prompt": prefix, "suffix": suffix, "max_tokens": 3, "temperature": 0}
        reply = client.post("/v1/completions", json=body)
        assert reply.status_code == 200, reply.text
        # <fim_prefix> prefix <fim_suffix> suffix <fim_middle>: the prompt's own tokens and three more.
        assert reply.json()["usage"]["prompt_tokens"] == sum(count) + 3
        by_ids = client.post("/v1/completions", json={**body, "prompt": [1, 2, 3]})
        _refused(by_ids, "prompt")
