"""The llguidance constraint behind ExLlamaV2's grammar filter, driven as the generator drives a filter
(begin, then next() before and feed() after each sampled token), with a real byte-level BPE tokenizer and the
GBNF the services build for response_format and tools."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch

from inferno.core.engines.exllamav2.grammar import GrammarCompiler, GrammarConstraint
from inferno.core.engines.exllamav2.vocabulary import TokenizerVocabulary
from inferno.core.structured_output import grammar_for
from inferno.core.tools.grammar import tool_call_grammar
from inferno.core.tools.policy import ToolMode, ToolPolicy, ToolSpec
from inferno.errors import InfernoError
from inferno.v1 import inference_service_pb2 as pb
from tests.tiny_llama import write_tiny_llama

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


@pytest.fixture(scope="module")
def vocabulary(tmp_path_factory: pytest.TempPathFactory) -> TokenizerVocabulary:
    return TokenizerVocabulary(write_tiny_llama(tmp_path_factory.mktemp("tiny-llama")))


@pytest.fixture(scope="module")
def compiler(vocabulary: TokenizerVocabulary) -> GrammarCompiler:
    return GrammarCompiler(vocabulary.tokenizer_json(), vocabulary.eos_ids)


def schema_grammar(schema: dict[str, Any]) -> str:
    grammar = grammar_for(
        pb.ResponseFormat(type=pb.RESPONSE_FORMAT_TYPE_JSON_SCHEMA, json_schema_text=json.dumps(schema))
    )
    assert grammar is not None
    return grammar


def text_of(vocabulary: TokenizerVocabulary, tokens: list[int]) -> str:
    return b"".join(vocabulary.token_bytes(t) for t in tokens).decode()


def test_each_token_of_a_matching_reply_is_allowed_in_turn(
    vocabulary: TokenizerVocabulary, compiler: GrammarCompiler
) -> None:
    constraint = compiler.constraint(schema_grammar(SCHEMA))
    constraint.begin("")
    for token in vocabulary.tokenize('{"name": "Ada", "age": 36}', add_special=False):
        allowed, ends = constraint.next()
        assert token in allowed
        assert ends == set()
        constraint.feed(token)
    assert constraint.accepting
    assert set(constraint.next()[0]) >= vocabulary.eos_ids


def test_only_tokens_that_continue_the_grammar_are_allowed(
    vocabulary: TokenizerVocabulary, compiler: GrammarCompiler
) -> None:
    constraint = compiler.constraint(schema_grammar(SCHEMA))
    constraint.begin("")
    allowed = constraint.next()[0]
    assert allowed
    # The reply must open with the object's brace and the first property's name, in schema order.
    assert all('{"name"'.startswith(text_of(vocabulary, [t])) for t in allowed)
    for token in vocabulary.tokenize("The", add_special=False):
        assert token not in allowed
    assert not set(allowed) & vocabulary.eos_ids


def test_a_sampler_restricted_to_the_allowed_tokens_writes_matching_json(
    vocabulary: TokenizerVocabulary, compiler: GrammarCompiler
) -> None:
    # A stand-in model: fixed random logits per step; the generator samples greedily among allowed tokens.
    rng = np.random.default_rng(7)
    constraint = compiler.constraint(schema_grammar(SCHEMA))
    constraint.begin("")
    tokens: list[int] = []
    for _ in range(200):
        logits = rng.normal(size=vocabulary.n_vocab)
        # Make ending likely once it is legal, as a trained model would.
        logits[list(vocabulary.eos_ids)] += 3.0
        allowed = constraint.next()[0]
        token = max(allowed, key=lambda t: logits[t])
        constraint.feed(token)
        if vocabulary.is_end_of_generation(token):
            break
        tokens.append(token)
    else:
        pytest.fail("the constrained sampler did not end")
    reply = json.loads(text_of(vocabulary, tokens))
    assert set(reply) == {"name", "age"}
    assert isinstance(reply["name"], str) and len(reply["name"]) <= 12
    assert isinstance(reply["age"], int)


def test_the_json_object_grammar_admits_any_object(
    vocabulary: TokenizerVocabulary, compiler: GrammarCompiler
) -> None:
    grammar = grammar_for(pb.ResponseFormat(type=pb.RESPONSE_FORMAT_TYPE_JSON_OBJECT))
    assert grammar is not None
    constraint = compiler.constraint(grammar)
    constraint.begin("")
    for token in vocabulary.tokenize('{"x": [1, "a\\n", null], "y": {}}', add_special=False):
        assert token in constraint.next()[0]
        constraint.feed(token)
    assert constraint.accepting


def test_tool_call_grammar_constrains_to_the_tool_layout(
    vocabulary: TokenizerVocabulary, compiler: GrammarCompiler
) -> None:
    tool = ToolSpec(
        "get_weather",
        "",
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    )
    constraint = compiler.constraint(
        tool_call_grammar(ToolPolicy((tool,), ToolMode.REQUIRED, (tool,), False))
    )
    constraint.begin("")
    reply = '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]}'
    for token in vocabulary.tokenize(reply, add_special=False):
        assert token in constraint.next()[0]
        constraint.feed(token)
    assert constraint.accepting


def test_after_the_end_only_end_of_generation_is_allowed(
    vocabulary: TokenizerVocabulary, compiler: GrammarCompiler
) -> None:
    constraint = compiler.constraint('root ::= "ok"')
    constraint.begin("")
    for token in vocabulary.tokenize("ok", add_special=False):
        constraint.feed(token)
    assert set(constraint.next()[0]) == vocabulary.eos_ids
    constraint.feed(next(iter(vocabulary.eos_ids)))
    assert set(constraint.next()[0]) == vocabulary.eos_ids


def test_feed_takes_the_generators_token_tensor(
    vocabulary: TokenizerVocabulary, compiler: GrammarCompiler
) -> None:
    constraint = compiler.constraint('root ::= "fox"')
    constraint.begin("")
    for token in vocabulary.tokenize("fox", add_special=False):
        assert token in constraint.next()[0]
        constraint.feed(torch.tensor([[token]], dtype=torch.long))
    assert constraint.accepting


def test_begin_starts_the_grammar_over(vocabulary: TokenizerVocabulary, compiler: GrammarCompiler) -> None:
    constraint = compiler.constraint('root ::= "fox"')
    first = constraint.next()[0]
    constraint.feed(vocabulary.tokenize("fox", add_special=False)[0])
    constraint.begin("")
    assert constraint.next()[0] == first


def test_a_grammar_that_cannot_be_compiled_is_refused_naming_response_format(
    compiler: GrammarCompiler,
) -> None:
    with pytest.raises(InfernoError) as caught:
        compiler.constraint("root ::= missing-rule")
    assert (caught.value.code, caught.value.details) == ("invalid_parameters", {"param": "response_format"})
    with pytest.raises(InfernoError) as caught:
        compiler.constraint("root ::= missing-rule", param="grammar")
    assert caught.value.details == {"param": "grammar"}, "a grammar from another field names that field"


def test_the_constraint_runs_in_the_generators_filter_thread(compiler: GrammarCompiler) -> None:
    constraint: GrammarConstraint = compiler.constraint('root ::= "fox"')
    # ExLlamaV2 evaluates background filters while the GPU runs, and would mask logits in place otherwise.
    assert constraint.use_background_worker() is True
    assert constraint.can_mask_logits() is False


def test_tiny_tokenizer_covers_every_byte(vocabulary: TokenizerVocabulary) -> None:
    # The checks above rely on every text being spellable in this vocabulary.
    assert text_of(vocabulary, vocabulary.tokenize('{"x": "\\n"}', add_special=False)) == '{"x": "\\n"}'
