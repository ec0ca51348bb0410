"""Property tests of the gateway's request parsers (issue 10, point 3): whatever JSON a client sends, a
parser returns a message the core can decode or raises InfernoError, and an invalid_parameters error names
its field. Bodies go through parse_json_object first, as every route sends them, so lone surrogates, huge
numbers and deep nesting arrive exactly as they would over the wire."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferno.adapters.openai.batch import parse_batch_request
from inferno.adapters.openai.embeddings import parse_embeddings_request
from inferno.adapters.openai.requests import (
    parse_chat_request,
    parse_completion_request,
    parse_detokenize_request,
    parse_json_object,
    parse_tokenize_request,
)
from inferno.errors import InfernoError
from inferno.v1 import common_pb2

EXAMPLES = 200
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# A batch body holds several chat and completion bodies: fewer examples keep it as quick as the others.
BATCH_PROPERTY = settings(PROPERTY, max_examples=EXAMPLES // 2)

# Lone surrogates included: JSON escapes can spell them (json.dumps writes them as \ud800).
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=24)
SHORT_TEXT = st.one_of(st.sampled_from(["", "hi", "user", "assistant", "text", "function"]), ANY_TEXT)
HUGE_TEXT = st.integers(1, 200_000).map(lambda n: "x" * n)
NUMBERS = st.one_of(
    st.integers(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, -1, 1, 2**32 - 1, 2**32, 2**63, 2**64 - 1, 2**64, -(2**63) - 1]),
    st.floats(allow_nan=False, allow_infinity=False),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, SHORT_TEXT)
JSON = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(SHORT_TEXT, children, max_size=4)
    ),
    max_leaves=20,
)


def _field(*plausible: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field's value: mostly a plausible one, sometimes any JSON value (a wrong type)."""
    return st.one_of(*plausible, JSON)


def _deep(depth: st.SearchStrategy[int]) -> st.SearchStrategy[Any]:
    """A JSON schema nested `depth` arrays deep, up to what the JSON decoder takes."""

    def build(n: int) -> Any:
        schema: Any = {"type": "string"}
        for _ in range(n):
            schema = {"type": "array", "items": schema}
        return schema

    return depth.map(build)


SCHEMA = st.one_of(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["object", "string", "bogus", "array", "integer"])},
        optional={
            "properties": st.dictionaries(SHORT_TEXT, JSON, max_size=3),
            "required": st.lists(SHORT_TEXT, max_size=3),
            "minimum": NUMBERS,
            "maxLength": NUMBERS,
            "$ref": SHORT_TEXT,
        },
    ),
    _deep(st.integers(0, 480)),
    JSON,
)
CONTENT = _field(
    SHORT_TEXT,
    HUGE_TEXT,
    st.lists(
        _field(st.fixed_dictionaries({"type": _field(st.just("text")), "text": _field(SHORT_TEXT)})),
        max_size=3,
    ),
)
TOOL_CALL = _field(
    st.fixed_dictionaries(
        {
            "function": _field(
                st.fixed_dictionaries({"name": _field(SHORT_TEXT)}, optional={"arguments": JSON})
            )
        },
        optional={"id": _field(SHORT_TEXT), "type": _field(SHORT_TEXT)},
    )
)
MESSAGE = _field(
    st.fixed_dictionaries(
        {"role": _field(st.sampled_from(["user", "system", "assistant", "tool"]))},
        optional={
            "content": CONTENT,
            "name": _field(SHORT_TEXT),
            "tool_calls": _field(st.lists(TOOL_CALL, max_size=2)),
            "tool_call_id": _field(SHORT_TEXT),
        },
    )
)
MESSAGES = _field(st.lists(MESSAGE, max_size=4))
TOOL = _field(
    st.fixed_dictionaries(
        {
            "type": _field(st.just("function")),
            "function": _field(
                st.fixed_dictionaries(
                    {"name": _field(SHORT_TEXT)},
                    optional={"description": _field(SHORT_TEXT), "parameters": SCHEMA, "strict": JSON},
                )
            ),
        }
    )
)
RESPONSE_FORMAT = _field(
    st.fixed_dictionaries(
        {"type": _field(st.sampled_from(["text", "json_object", "json_schema"]))},
        optional={
            "json_schema": _field(st.fixed_dictionaries({"name": _field(SHORT_TEXT), "schema": SCHEMA}))
        },
    )
)
LOGIT_BIAS = _field(
    st.dictionaries(
        st.one_of(
            st.integers(-5, 2**40).map(str), st.sampled_from(["²", "\u0661", "+1", " 1", "1.0", ""]), ANY_TEXT
        ),
        _field(NUMBERS),
        max_size=4,
    )
)
TOKEN_IDS = st.lists(_field(NUMBERS), max_size=4)
PROMPT = _field(
    SHORT_TEXT, HUGE_TEXT, st.lists(SHORT_TEXT, max_size=4), TOKEN_IDS, st.lists(TOKEN_IDS, max_size=3)
)
SAMPLING = {
    name: _field(NUMBERS)
    for name in (
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "presence_penalty",
        "frequency_penalty",
        "repetition_penalty",
        "seed",
        "max_tokens",
        "max_completion_tokens",
        "n",
    )
}
COMMON = {
    **SAMPLING,
    "model": _field(SHORT_TEXT, st.integers(500, 3000).map(lambda n: "m" * n)),
    "user": _field(SHORT_TEXT),
    "stop": _field(SHORT_TEXT, st.lists(SHORT_TEXT, max_size=5)),
    "stream": _field(st.booleans()),
    "stream_options": _field(st.fixed_dictionaries({}, optional={"include_usage": _field(st.booleans())})),
    "logit_bias": LOGIT_BIAS,
    "ignore_eos": _field(st.booleans()),
}
CHAT_FIELDS = {
    **COMMON,
    "messages": MESSAGES,
    "tools": _field(st.lists(TOOL, max_size=3)),
    "tool_choice": _field(
        st.sampled_from(["none", "auto", "required", "bogus"]),
        st.fixed_dictionaries(
            {"type": st.just("function"), "function": _field(st.fixed_dictionaries({"name": JSON}))}
        ),
    ),
    "response_format": RESPONSE_FORMAT,
    "logprobs": _field(st.booleans()),
    "top_logprobs": _field(NUMBERS),
    "parallel_tool_calls": _field(st.booleans()),
    "functions": JSON,
    "function_call": JSON,
}
COMPLETION_FIELDS = {
    **COMMON,
    "prompt": PROMPT,
    "logprobs": _field(st.booleans(), NUMBERS),
    "echo": _field(st.booleans()),
    "best_of": _field(NUMBERS),
    "suffix": _field(SHORT_TEXT),
}


def _body(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Any subset of the route's fields plus a few unknown ones."""
    known = st.fixed_dictionaries({}, optional=fields)
    return st.tuples(known, st.dictionaries(SHORT_TEXT, JSON, max_size=2)).map(lambda kv: {**kv[1], **kv[0]})


CHAT_BODY = _body(CHAT_FIELDS)
COMPLETION_BODY = _body(COMPLETION_FIELDS)
EMBEDDINGS_BODY = _body(
    {
        "model": COMMON["model"],
        "input": PROMPT,
        "user": _field(SHORT_TEXT),
        "dimensions": _field(NUMBERS),
        "encoding_format": _field(st.sampled_from(["float", "base64", "int8"])),
    }
)
TOKENIZE_BODY = _body(
    {
        "model": COMMON["model"],
        "content": _field(SHORT_TEXT, HUGE_TEXT),
        "prompt": _field(SHORT_TEXT),
        "messages": MESSAGES,
        "with_pieces": _field(st.booleans()),
        "add_special": _field(st.booleans()),
        "add_special_tokens": _field(st.booleans()),
    }
)
DETOKENIZE_BODY = _body({"model": COMMON["model"], "tokens": _field(TOKEN_IDS)})
BATCH_ITEM = _field(
    st.one_of(CHAT_BODY, COMPLETION_BODY).flatmap(
        lambda body: st.tuples(st.just(body), _field(SHORT_TEXT, st.integers())).map(
            lambda pair: {**pair[0], "id": pair[1]}
        )
    )
)
BATCH_BODY = _body(
    {
        "requests": _field(st.lists(BATCH_ITEM, max_size=2)),
        "model": COMMON["model"],
        "max_tokens": _field(NUMBERS),
        "stream": _field(st.booleans()),
    }
)


def _as_sent(body: dict[str, Any]) -> dict[str, Any]:
    """The body as a route reads it: JSON text (surrogates escaped, as clients send them), then
    parse_json_object, which refuses what is not valid Unicode before any field is read."""
    return parse_json_object(json.dumps(body))


def _check_error(error: InfernoError) -> None:
    assert error.message
    if error.code == "invalid_parameters":
        assert error.details.get("param"), error
    assert error.kind.http_status < 500, error


def _check_message(message: Message) -> None:
    """A message the core can decode: it serializes, and parses back equal."""
    data = message.SerializeToString()
    assert type(message).FromString(data) == message


def _holds(parse: Callable[[dict[str, Any]], Any], body: dict[str, Any]) -> Any:
    """parse(body as a route reads it) returns or raises InfernoError, never anything else."""
    try:
        return parse(_as_sent(body))
    except InfernoError as error:
        _check_error(error)
        return None


@PROPERTY
@given(st.one_of(st.binary(max_size=64), ANY_TEXT, JSON.map(json.dumps), CHAT_BODY.map(json.dumps)))
def test_parse_json_object_returns_an_object_or_refuses_it(raw: bytes | str) -> None:
    try:
        value = parse_json_object(raw)
    except InfernoError as error:
        _check_error(error)
        assert error.code in ("invalid_json", "invalid_parameters")
    else:
        assert isinstance(value, dict)


@PROPERTY
@given(CHAT_BODY)
def test_chat_bodies_parse_or_name_the_field(body: dict[str, Any]) -> None:
    chat = _holds(parse_chat_request, body)
    if chat is not None:
        _check_message(chat.params)
        assert isinstance(chat.stream, bool) and isinstance(chat.include_usage, bool)


@PROPERTY
@given(COMPLETION_BODY)
def test_completion_bodies_parse_or_name_the_field(body: dict[str, Any]) -> None:
    completion = _holds(parse_completion_request, body)
    if completion is not None:
        _check_message(completion.params)
        assert len(completion.params.prompts) >= 1


@PROPERTY
@given(EMBEDDINGS_BODY)
def test_embeddings_bodies_parse_or_name_the_field(body: dict[str, Any]) -> None:
    parsed = _holds(parse_embeddings_request, body)
    if parsed is not None:
        message, encoding = parsed
        _check_message(message)
        assert encoding in ("float", "base64")


@PROPERTY
@given(TOKENIZE_BODY)
def test_tokenize_bodies_parse_or_name_the_field(body: dict[str, Any]) -> None:
    message = _holds(parse_tokenize_request, body)
    if message is not None:
        _check_message(message)


@PROPERTY
@given(DETOKENIZE_BODY)
def test_detokenize_bodies_parse_or_name_the_field(body: dict[str, Any]) -> None:
    message = _holds(parse_detokenize_request, body)
    if message is not None:
        _check_message(message)


@BATCH_PROPERTY
@given(BATCH_BODY)
def test_batch_bodies_parse_or_name_the_field_per_item(body: dict[str, Any]) -> None:
    batch = _holds(parse_batch_request, body)
    if batch is None:
        return
    _check_message(batch.message)
    assert len(batch.entries) == len(body["requests"])
    assert len(batch.message.items) == len(batch.accepted)
    for entry in batch.entries:
        if entry is not None:
            # An item's error names the field within the item (its own 'model', 'messages[0].role').
            error = entry["error"]
            assert error["code"] == "invalid_parameters" and error["details"]["param"], entry


def test_a_schema_as_deep_as_the_decoder_takes_still_parses() -> None:
    """The JSON decoder refuses nesting deeper than Python's recursion limit; whatever it accepts must also
    survive the parser's json.dumps of the schema, never RecursionError."""
    depth = 1
    while True:
        schema = '{"type": "array", "items": ' * depth + '{"type": "string"}' + "}" * depth
        tool = json.dumps(_tool({})).replace("{}", schema)
        raw = '{"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": [' + tool + "]}"
        try:
            parsed = parse_json_object(raw)
        except InfernoError as error:
            assert error.code == "invalid_json"
            break
        chat = parse_chat_request(parsed)
        assert chat.params.tools[0].function.parameters_json.count("items") == depth
        depth += 25
    assert depth > 100


def _tool(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": "f", "parameters": schema}}


def test_sampling_defaults_stay_unset_when_absent() -> None:
    """The property tests' 'returns a message' is only meaningful if absent fields stay unset."""
    chat = parse_chat_request({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert chat.params.sampling == common_pb2.SamplingParams()
