"""OpenAI request bodies to inferno.v1 params.

Only JSON shape and types are checked here, and every error names its field in details.param. Ranges and
defaults are the core's: a field absent or null in the JSON stays unset in the proto so the core applies its
own default. The one exception is what the proto cannot carry (a negative seed for a uint64): that is a type
error here.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from google.protobuf.descriptor import FieldDescriptor

from inferno.errors import InfernoError, invalid_param
from inferno.v1 import common_pb2, inference_service_pb2

_UINT32_MAX = 2**32 - 1
_UINT64_MAX = 2**64 - 1
# The SamplingParams fields a body gives as plain numbers, in the proto's order (min_p, repetition_penalty
# and typical_p are llama.cpp/vLLM extensions, as is top_k below).
_SAMPLING_FLOATS = tuple(
    field.name
    for field in common_pb2.SamplingParams.DESCRIPTOR.fields
    if field.type == FieldDescriptor.TYPE_FLOAT
)


@dataclass(frozen=True)
class ChatRequest:
    params: inference_service_pb2.ChatCompletionParams
    stream: bool
    include_usage: bool
    # Top-level fields of the body that no parser read (neither served nor refused), for a warning header.
    ignored_fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class CompletionRequest:
    params: inference_service_pb2.CompletionParams
    stream: bool
    include_usage: bool
    ignored_fields: tuple[str, ...] = ()


def parse_json_object(raw: bytes | str, *, what: str = "request body") -> dict[str, Any]:
    """Parse strict JSON (no NaN or Infinity) that must be an object; anything else raises invalid_json.

    what names the text in error messages. Strings that are not valid Unicode are refused (check_text).
    """
    value = load_json_object(raw, what=what)
    check_text(value)
    return value


def load_json_object(raw: bytes | str, *, what: str = "request body") -> dict[str, Any]:
    """parse_json_object without the text check, for a caller that must read a field (a WebSocket frame's
    id) before it refuses the rest; it must call check_text itself."""
    if not raw.strip():
        raise InfernoError("invalid_json", f"{what} is empty; expected a JSON object")
    try:
        value = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise InfernoError("invalid_json", f"{what} is nested too deeply") from None
    except ValueError as error:
        raise InfernoError("invalid_json", f"{what} is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise InfernoError("invalid_json", f"{what} must be a JSON object")
    return value


def check_text(value: dict[str, Any], prefix: str = "") -> None:
    """Refuse any string (or object key) in parsed JSON that is not valid Unicode: JSON's \\uD800 escapes
    can spell lone UTF-16 surrogates, which neither protobuf nor UTF-8 can carry. The error names the field
    (messages[0].content), so every endpoint refuses them the same way, before any field is read.

    The walk is iterative: json.loads accepts nesting deeper than a recursive walk could follow."""
    pending: list[tuple[Any, str]] = [(value, prefix)]
    while pending:
        item, path = pending.pop()
        if isinstance(item, str):
            if not _is_unicode(item):
                raise _not_unicode(path or "body")
        elif isinstance(item, dict):
            for key, child in item.items():
                if not _is_unicode(key):
                    raise _not_unicode(path or "body", "a key of ")
                pending.append((child, f"{path}.{key}" if path else key))
        elif isinstance(item, list):
            pending.extend((child, f"{path}[{i}]") for i, child in enumerate(item))


def check_path_parameters(request: web.Request) -> None:
    """The route's path parameters (model_id, job_id, key_id): valid Unicode and at most MAX_ID_CHARS long.
    Over-long ids would otherwise travel to the core and come back inside an error larger than gRPC's
    metadata limit."""
    for name, value in request.match_info.items():
        if not _is_unicode(value):
            raise _not_unicode(name)
        if len(value) > MAX_ID_CHARS:
            raise invalid_param(name, f"'{name}' must be at most {MAX_ID_CHARS} characters, got {len(value)}")


def check_metadata_text(value: str, param: str) -> None:
    """A value the gateway forwards to the core as gRPC metadata (a credential, a command name): gRPC takes
    only printable ASCII there, and refuses anything else with an error the client did not cause."""
    if not (value.isascii() and value.isprintable()):
        raise invalid_param(param, f"'{param}' must be printable ASCII")


# Ids in URL paths (model ids, job ids, key ids) are far shorter than this; longer ones are refused before
# they reach the core.
MAX_ID_CHARS = 512


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _not_unicode(param: str, where: str = "") -> InfernoError:
    return invalid_param(
        param, f"{where}'{param}' holds a lone UTF-16 surrogate (such as \\ud800), which is not valid text"
    )


def parse_chat_request(body: dict[str, Any]) -> ChatRequest:
    """A /v1/chat/completions body as ChatCompletionParams plus its streaming flags."""
    body = reads = FieldReads(body)
    params = inference_service_pb2.ChatCompletionParams(
        model=required_str(body.get("model"), "model"),
        messages=_messages(body.get("messages")),
        sampling=_sampling(body),
        limits=_limits(body),
        user=optional_str(body.get("user"), "user") or "",
    )
    if body.get("n") is not None:
        params.n = uint_field(body["n"], "n", _UINT32_MAX)
    params.response_format.CopyFrom(_response_format(body.get("response_format")))
    params.logprobs = _optional_bool(body.get("logprobs"), "logprobs") or False
    if body.get("top_logprobs") is not None:
        params.top_logprobs = uint_field(body["top_logprobs"], "top_logprobs", _UINT32_MAX)
    params.tools.extend(_tools(body.get("tools")))
    params.tool_choice.CopyFrom(_tool_choice(body.get("tool_choice")))
    parallel_tool_calls = _optional_bool(body.get("parallel_tool_calls"), "parallel_tool_calls")
    if parallel_tool_calls is not None:
        params.parallel_tool_calls = parallel_tool_calls
    params.reasoning_format = reasoning_format(body.get("reasoning_format"))
    params.guided.CopyFrom(_guided(body))
    _reject_legacy_functions(body)
    return ChatRequest(params, *_stream_flags(body), reads.unread())


def parse_completion_request(body: dict[str, Any]) -> CompletionRequest:
    """A /v1/completions body as CompletionParams (one Prompt per prompt) plus its streaming flags."""
    body = reads = FieldReads(body)
    params = inference_service_pb2.CompletionParams(
        model=required_str(body.get("model"), "model"),
        prompts=parse_prompts(body.get("prompt")),
        sampling=_sampling(body),
        limits=_limits(body),
        user=optional_str(body.get("user"), "user") or "",
    )
    if body.get("n") is not None:
        params.n = uint_field(body["n"], "n", _UINT32_MAX)
    logprobs = body.get("logprobs")
    if logprobs is not None and logprobs is not False:
        # An integer in the legacy API; some clients send true for "just the sampled token".
        params.logprobs = 0 if logprobs is True else uint_field(logprobs, "logprobs", _UINT32_MAX)
    params.echo = _optional_bool(body.get("echo"), "echo") or False
    if body.get("best_of") is not None:
        params.best_of = uint_field(body["best_of"], "best_of", _UINT32_MAX)
    params.suffix = optional_str(body.get("suffix"), "suffix") or ""
    params.guided.CopyFrom(_guided(body))
    return CompletionRequest(params, *_stream_flags(body), reads.unread())


# Fields


def parse_tokenize_request(body: dict[str, Any]) -> inference_service_pb2.TokenizeRequest:
    """llama.cpp's /tokenize body ({"content", "add_special", "with_pieces"}) or vLLM's ({"prompt" or
    "messages", "add_special_tokens", "add_generation_prompt", "return_token_strs"}); "model" is optional
    (the core's default model)."""
    text = optional_str(body.get("content"), "content")
    if text is None:
        text = optional_str(body.get("prompt"), "prompt")
    request = inference_service_pb2.TokenizeRequest(
        model=optional_str(body.get("model"), "model") or "",
        text=text or "",
        with_pieces=bool(
            _optional_bool(body.get("with_pieces"), "with_pieces")
            or _optional_bool(body.get("return_token_strs"), "return_token_strs")
        ),
    )
    if body.get("messages") is not None:
        request.messages.extend(_messages(body["messages"]))
    add_generation_prompt = _optional_bool(body.get("add_generation_prompt"), "add_generation_prompt")
    if add_generation_prompt is not None:
        request.add_generation_prompt = add_generation_prompt
    for name in ("add_special", "add_special_tokens"):
        add_special = _optional_bool(body.get(name), name)
        if add_special is not None:
            request.add_special = add_special
    return request


def parse_detokenize_request(body: dict[str, Any]) -> inference_service_pb2.DetokenizeRequest:
    """{"tokens": [ids], "model"?: str}, as llama.cpp's and vLLM's /detokenize take it."""
    tokens = body.get("tokens")
    if not isinstance(tokens, list):
        raise _type_error("tokens", "an array of token ids")
    return inference_service_pb2.DetokenizeRequest(
        model=optional_str(body.get("model"), "model") or "", tokens=_token_ids(tokens, "tokens")
    )


def _messages(value: Any) -> list[inference_service_pb2.ChatMessage]:
    if value is None:
        raise invalid_param("messages", "'messages' is required")
    if not isinstance(value, list) or not value:
        raise invalid_param("messages", "'messages' must be a non-empty array")
    return [_message(item, f"messages[{i}]") for i, item in enumerate(value)]


def _message(value: Any, param: str) -> inference_service_pb2.ChatMessage:
    if not isinstance(value, dict):
        raise _type_error(param, "an object")
    return inference_service_pb2.ChatMessage(
        role=required_str(value.get("role"), f"{param}.role"),
        content=_content(value.get("content"), f"{param}.content"),
        name=optional_str(value.get("name"), f"{param}.name") or "",
        tool_calls=_tool_calls(value.get("tool_calls"), f"{param}.tool_calls"),
        tool_call_id=optional_str(value.get("tool_call_id"), f"{param}.tool_call_id") or "",
    )


def _tool_calls(value: Any, param: str) -> list[inference_service_pb2.ToolCall]:
    """An assistant message's tool_calls: [{"id", "type": "function", "function": {"name", "arguments"}}]."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise _type_error(param, "an array of tool calls or null")
    calls: list[inference_service_pb2.ToolCall] = []
    for i, call in enumerate(value):
        if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
            raise _type_error(f"{param}[{i}]", 'an object like {"id", "type": "function", "function": {...}}')
        function = call["function"]
        arguments = function.get("arguments")
        if isinstance(arguments, dict):  # some clients send the object itself
            arguments = json.dumps(arguments)
        calls.append(
            inference_service_pb2.ToolCall(
                id=optional_str(call.get("id"), f"{param}[{i}].id") or "",
                type=optional_str(call.get("type"), f"{param}[{i}].type") or "function",
                function=inference_service_pb2.FunctionCall(
                    name=required_str(function.get("name"), f"{param}[{i}].function.name"),
                    arguments=optional_str(arguments, f"{param}[{i}].function.arguments") or "",
                ),
            )
        )
    return calls


def _tools(value: Any) -> list[inference_service_pb2.Tool]:
    """[{"type": "function", "function": {"name", "description"?, "parameters"?, "strict"?}}]."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise _type_error("tools", "an array of tools or null")
    tools: list[inference_service_pb2.Tool] = []
    for i, tool in enumerate(value):
        param = f"tools[{i}]"
        if not isinstance(tool, dict) or not isinstance(tool.get("function"), dict):
            raise _type_error(param, 'an object like {"type": "function", "function": {"name": ...}}')
        function = tool["function"]
        definition = inference_service_pb2.FunctionDefinition(
            name=required_str(function.get("name"), f"{param}.function.name"),
            description=optional_str(function.get("description"), f"{param}.function.description") or "",
            strict=_optional_bool(function.get("strict"), f"{param}.function.strict") or False,
        )
        parameters = function.get("parameters")
        if parameters is not None:
            if not isinstance(parameters, dict):
                raise _type_error(f"{param}.function.parameters", "a JSON schema object")
            definition.parameters_json = json.dumps(parameters)
        tools.append(
            inference_service_pb2.Tool(
                type=optional_str(tool.get("type"), f"{param}.type") or "function", function=definition
            )
        )
    return tools


_TOOL_CHOICE_MODES = {
    "none": inference_service_pb2.TOOL_CHOICE_MODE_NONE,
    "auto": inference_service_pb2.TOOL_CHOICE_MODE_AUTO,
    "required": inference_service_pb2.TOOL_CHOICE_MODE_REQUIRED,
}


def _tool_choice(value: Any) -> inference_service_pb2.ToolChoice:
    """ "none", "auto", "required" or {"type": "function", "function": {"name": ...}}."""
    choice = inference_service_pb2.ToolChoice()
    if value is None:
        return choice
    if isinstance(value, str):
        if value not in _TOOL_CHOICE_MODES:
            raise invalid_param(
                "tool_choice", "'tool_choice' must be none, auto, required or a named function"
            )
        choice.mode = _TOOL_CHOICE_MODES[value]
        return choice
    function = value.get("function") if isinstance(value, dict) else None
    if not isinstance(function, dict):
        raise _type_error("tool_choice", 'a string or {"type": "function", "function": {"name": ...}}')
    choice.function_name = required_str(function.get("name"), "tool_choice.function.name")
    return choice


def _content(value: Any, param: str) -> str:
    """A message's content: a string, null, or an array of text parts joined by newlines."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise _type_error(param, "a string, an array of content parts, or null")
    texts: list[str] = []
    for j, part in enumerate(value):
        if not isinstance(part, dict):
            raise _type_error(f"{param}[{j}]", 'an object like {"type": "text", "text": "..."}')
        kind = part.get("type")
        if kind != "text":
            raise _not_supported(f"{param}[{j}].type", f"content parts of type {kind!r} (only 'text')")
        texts.append(required_str(part.get("text"), f"{param}[{j}].text"))
    return "\n".join(texts)


def parse_prompts(value: Any, param: str = "prompt") -> list[inference_service_pb2.Prompt]:
    """A prompt (or embeddings input): a string, an array of strings, an array of token ids, or an array of
    token-id arrays."""
    Prompt, TokenIds = inference_service_pb2.Prompt, inference_service_pb2.TokenIds
    if value is None:
        raise invalid_param(param, f"'{param}' is required")
    if isinstance(value, str):
        return [Prompt(text=value)]
    if isinstance(value, list) and value:
        if all(isinstance(item, str) for item in value):
            return [Prompt(text=item) for item in value]
        if all(_is_int(item) for item in value):
            return [Prompt(tokens=TokenIds(ids=_token_ids(value, param)))]
        if all(isinstance(item, list) for item in value):
            return [
                Prompt(tokens=TokenIds(ids=_token_ids(item, f"{param}[{i}]"))) for i, item in enumerate(value)
            ]
    raise _type_error(
        param,
        "a string, a non-empty array of strings, an array of token ids, or an array of token-id arrays",
    )


def _token_ids(values: list[Any], param: str) -> list[int]:
    return [uint_field(value, f"{param}[{k}]", _UINT32_MAX) for k, value in enumerate(values)]


def _sampling(body: dict[str, Any]) -> common_pb2.SamplingParams:
    sampling = common_pb2.SamplingParams()
    for name in _SAMPLING_FLOATS:
        value = _optional_number(body.get(name), name)
        if value is not None:
            setattr(sampling, name, value)
    seed = body.get("seed")
    if seed is not None:
        sampling.seed = uint_field(seed, "seed", _UINT64_MAX)
    top_k = body.get("top_k")
    if top_k is not None:
        # vLLM and llama.cpp take -1 for "no limit" as well as 0.
        sampling.top_k = 0 if top_k == -1 else uint_field(top_k, "top_k", _UINT32_MAX)
    sampling.logit_bias.update(_logit_bias(body.get("logit_bias")))
    return sampling


_RESPONSE_FORMAT_TYPES = {
    "text": inference_service_pb2.RESPONSE_FORMAT_TYPE_TEXT,
    "json_object": inference_service_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT,
    "json_schema": inference_service_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
}


def _response_format(value: Any) -> inference_service_pb2.ResponseFormat:
    """OpenAI's {"type": "text"}, {"type": "json_object"} or {"type": "json_schema", "json_schema": {...}}."""
    response_format = inference_service_pb2.ResponseFormat()
    if value is None:
        return response_format
    if not isinstance(value, dict):
        raise _type_error("response_format", "an object or null")
    kind = value.get("type")
    if not isinstance(kind, str) or kind not in _RESPONSE_FORMAT_TYPES:
        raise invalid_param(
            "response_format.type", "'response_format.type' must be text, json_object or json_schema"
        )
    response_format.type = _RESPONSE_FORMAT_TYPES[kind]
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict):
            raise _type_error("response_format.json_schema", 'an object like {"name": ..., "schema": {...}}')
        schema = spec.get("schema")
        if not isinstance(schema, dict):
            raise _type_error("response_format.json_schema.schema", "a JSON schema object")
        response_format.json_schema_text = json.dumps(schema)
        response_format.schema_name = optional_str(spec.get("name"), "response_format.json_schema.name") or ""
    return response_format


# llama.cpp's names; "deepseek" is its name for always separating.
REASONING_FORMATS = {
    "auto": inference_service_pb2.REASONING_FORMAT_AUTO,
    "none": inference_service_pb2.REASONING_FORMAT_NONE,
    "deepseek": inference_service_pb2.REASONING_FORMAT_SEPARATED,
}


def reasoning_format(
    value: Any, param: str = "reasoning_format"
) -> inference_service_pb2.ReasoningFormat.ValueType:
    """Where the reply's <think> block goes: "auto" (default), "none" (inline) or "deepseek" (separated)."""
    if value is None:
        return inference_service_pb2.REASONING_FORMAT_UNSPECIFIED
    if not isinstance(value, str) or value not in REASONING_FORMATS:
        raise invalid_param(param, f"'{param}' must be one of {', '.join(REASONING_FORMATS)}")
    return REASONING_FORMATS[value]


def _logit_bias(value: Any) -> dict[int, float]:
    """OpenAI's {"token id as a string": bias}."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _type_error("logit_bias", "an object mapping token ids to numbers, or null")
    biases: dict[int, float] = {}
    for key, bias in value.items():
        if not isinstance(key, str) or (token := ascii_integer(key)) is None or token > _UINT32_MAX:
            raise invalid_param("logit_bias", f"'logit_bias' keys must be token ids, got {key!r}")
        number = _optional_number(bias, f"logit_bias.{key}")
        if number is None:
            raise _type_error(f"logit_bias.{key}", "a number")
        biases[token] = number
    return biases


def _limits(body: dict[str, Any]) -> common_pb2.GenerationLimits:
    limits = common_pb2.GenerationLimits()
    # max_completion_tokens is OpenAI's newer name for max_tokens; when both are given it wins.
    max_tokens = body.get("max_tokens")
    if max_tokens is not None:
        limits.max_tokens = uint_field(max_tokens, "max_tokens", _UINT32_MAX)
    max_completion_tokens = body.get("max_completion_tokens")
    if max_completion_tokens is not None:
        limits.max_tokens = uint_field(max_completion_tokens, "max_completion_tokens", _UINT32_MAX)
    limits.stop.extend(_stop(body.get("stop")))
    # vLLM's extension: generate through end-of-sequence tokens up to max_tokens.
    limits.ignore_eos = _optional_bool(body.get("ignore_eos"), "ignore_eos") or False
    # vLLM's extension: no end of sequence and no stop string before this many tokens.
    min_tokens = body.get("min_tokens")
    if min_tokens is not None:
        limits.min_tokens = uint_field(min_tokens, "min_tokens", _UINT32_MAX)
    return limits


# llama.cpp's grammar and vLLM's guided decoding fields; at most one may be given.
_GUIDED_FIELDS = ("grammar", "guided_json", "guided_regex", "guided_choice")


def _guided(body: dict[str, Any]) -> common_pb2.GuidedDecoding:
    guided = common_pb2.GuidedDecoding()
    given = [name for name in _GUIDED_FIELDS if body.get(name) is not None]
    if len(given) > 1:
        raise invalid_param(given[1], f"'{given[1]}' cannot be combined with '{given[0]}'")
    if not given:
        return guided
    name = given[0]
    value = body[name]
    if name == "grammar":
        guided.grammar = required_str(value, name)
    elif name == "guided_regex":
        guided.regex = required_str(value, name)
    elif name == "guided_json":
        # vLLM takes the schema as an object or as JSON text.
        if isinstance(value, dict):
            guided.json_schema = json.dumps(value)
        elif isinstance(value, str):
            guided.json_schema = value
        else:
            raise _type_error(name, "a JSON schema object or its JSON text")
    else:
        if not isinstance(value, list) or not all(isinstance(choice, str) for choice in value):
            raise _type_error(name, "an array of strings")
        guided.choice.choices.extend(value)
    return guided


def _stop(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise _type_error("stop", "a string, an array of strings, or null")


def _stream_flags(body: dict[str, Any]) -> tuple[bool, bool]:
    stream = _optional_bool(body.get("stream"), "stream") or False
    options = body.get("stream_options")
    if options is None:
        return stream, False
    if not isinstance(options, dict):
        raise _type_error("stream_options", "an object or null")
    include_usage = _optional_bool(options.get("include_usage"), "stream_options.include_usage") or False
    return stream, include_usage


class FieldReads(dict[str, Any]):
    """A request body that records which top-level fields the parser read: the rest were ignored."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body)
        self._read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self._read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self._read.add(key)
        return super().__getitem__(key)

    def unread(self) -> tuple[str, ...]:
        """Fields given (not null) that were never read."""
        return tuple(key for key, value in self.items() if key not in self._read and value is not None)


# Options refused rather than silently ignored.


def _reject_legacy_functions(body: dict[str, Any]) -> None:
    """OpenAI's deprecated functions/function_call: refused with a pointer to tools/tool_choice."""
    if body.get("functions"):
        raise _not_supported("functions", "'functions' (deprecated by OpenAI; use 'tools')")
    if body.get("function_call") not in (None, "none", "auto"):
        raise _not_supported("function_call", "'function_call' (deprecated by OpenAI; use 'tool_choice')")


# Scalars


def required_str(value: Any, param: str) -> str:
    if value is None:
        raise invalid_param(param, f"'{param}' is required")
    if not isinstance(value, str):
        raise _type_error(param, "a string")
    return value


def optional_str(value: Any, param: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise _type_error(param, "a string or null")
    return value


def _optional_bool(value: Any, param: str) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise _type_error(param, "a boolean or null")
    return value


def _optional_number(value: Any, param: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _type_error(param, "a number or null")
    try:
        return float(value)
    except OverflowError:  # an integer of hundreds of digits
        raise invalid_param(param, f"'{param}' is out of range") from None


# Longer runs of digits are refused before int(), which refuses those of over 4,300 digits with an error.
_MOST_DIGITS = 20


def ascii_integer(text: str) -> int | None:
    """The non-negative integer text spells in ASCII digits (at most 20 of them), else None."""
    # isdigit() alone takes "²", which int() refuses.
    if not (text.isascii() and text.isdigit()) or len(text) > _MOST_DIGITS:
        return None
    return int(text)


def uint_field(value: Any, param: str, maximum: int = _UINT32_MAX) -> int:
    """An integer the proto's unsigned field can hold."""
    if not _is_int(value):
        raise _type_error(param, "an integer")
    if not 0 <= value <= maximum:
        raise invalid_param(param, f"'{param}' must be an integer from 0 to {maximum}, got {value}")
    return int(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _type_error(param: str, expected: str) -> InfernoError:
    return invalid_param(param, f"'{param}' must be {expected}")


def _not_supported(param: str, feature: str) -> InfernoError:
    return invalid_param(param, f"{feature} is not supported yet")


def _finite_float(text: str) -> float:
    """A JSON number as a float; one too large for a double (1e400) is refused rather than read as inf."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range for a number")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")
