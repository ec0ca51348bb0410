"""Guided decoding (vLLM's guided_json, guided_regex and guided_choice, llama.cpp's grammar) as the GBNF
grammar the engines constrain sampling with."""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import struct_pb2

from inferno.core.regex_grammar import MAX_REPETITION, count_over_limit, gbnf_string, regex_grammar
from inferno.core.struct_json import schema_from
from inferno.core.structured_output import schema_grammar
from inferno.errors import invalid_param
from inferno.v1 import common_pb2

# The request field each kind of GuidedDecoding comes from (the OpenAI-compatible names).
GUIDED_PARAMS = {
    "grammar": "grammar",
    "json_schema": "guided_json",
    "regex": "guided_regex",
    "choice": "guided_choice",
}
# llama.cpp parses GBNF recursively, one level per parenthesis: deeper nesting is refused before it sees it.
MAX_GRAMMAR_NESTING = 64


@dataclass(frozen=True)
class GuidedGrammar:
    gbnf: str
    # The request field it came from, named in errors.
    param: str


def guided_grammar(guided: common_pb2.GuidedDecoding) -> GuidedGrammar | None:
    """The grammar a request's guided decoding asks for; None when it asks for none."""
    kind = guided.WhichOneof("kind")
    if kind is None:
        return None
    param = GUIDED_PARAMS[kind]
    if kind == "grammar":
        gbnf = guided.grammar
    elif kind == "json_schema":
        if not guided.json_schema:
            raise invalid_param(param, f"'{param}' must be a JSON schema")
        gbnf = schema_grammar(schema_from(struct_pb2.Struct(), guided.json_schema, param), param)
    elif kind == "regex":
        gbnf = regex_grammar(guided.regex, param)
    else:
        gbnf = choice_grammar(list(guided.choice.choices), param)
    check_gbnf(gbnf, param)
    return GuidedGrammar(gbnf, param)


def choice_grammar(choices: list[str], param: str) -> str:
    if not choices:
        raise invalid_param(param, f"'{param}' must hold at least one string")
    return "root ::= " + " | ".join(gbnf_string(choice) for choice in choices) + "\n"


def check_gbnf(gbnf: str, param: str) -> None:
    """Refuses GBNF llama.cpp should not be handed: empty (it would constrain nothing), holding NUL, nested
    deeper than MAX_GRAMMAR_NESTING, or repeating more than MAX_REPETITION times. Its syntax is llama.cpp's to
    judge."""
    if not gbnf.strip():
        raise invalid_param(param, f"'{param}' must not be empty")
    if "\x00" in gbnf:
        # llama.cpp reads the grammar as a C string: it would end there, and constrain less than asked.
        raise invalid_param(param, f"'{param}' must not contain NUL characters")
    depth = 0
    i = 0
    while i < len(gbnf):
        c = gbnf[i]
        if c == "#":
            end = gbnf.find("\n", i)
            i = len(gbnf) if end < 0 else end
        elif c in '"[':
            i = _end_of_quoted(gbnf, i, '"' if c == '"' else "]")
        elif c == "(":
            depth += 1
            if depth > MAX_GRAMMAR_NESTING:
                raise invalid_param(param, f"'{param}' nests more than {MAX_GRAMMAR_NESTING} levels deep")
        elif c == ")":
            depth -= 1
        elif c == "{":
            end = gbnf.find("}", i)
            counts = gbnf[i + 1 : end if end >= 0 else len(gbnf)].split(",")
            if any(count_over_limit(n.strip()) for n in counts):
                raise invalid_param(param, f"'{param}' repeats something more than {MAX_REPETITION} times")
            if _fewest_over_most(counts):
                # llama.cpp counts the optional copies as most - fewest, unsigned: it allocates until it dies.
                raise invalid_param(param, f"'{param}' has a repetition {{m,n}} with m greater than n")
        i += 1


def _end_of_quoted(text: str, start: int, closing: str) -> int:
    """The index of the quote or bracket that closes the one at start (backslash escapes skipped)."""
    i = start + 1
    while i < len(text) and text[i] != closing:
        i += 2 if text[i] == "\\" else 1
    return i


def _fewest_over_most(counts: list[str]) -> bool:
    if len(counts) != 2:
        return False
    fewest, most = (n.strip() for n in counts)
    return fewest.isdecimal() and most.isdecimal() and int(fewest) > int(most)
