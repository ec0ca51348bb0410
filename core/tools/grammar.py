"""The GBNF a tool-calling reply must match.

The reply is JSON in one fixed layout (llama.cpp's "generic" tool format, used for every model):
    {"tool_calls": [{"name": "NAME", "arguments": {...}}, ...]}   or, in auto mode,   {"response": "text"}
The wrapper is literal (no optional whitespace) so parser.py can follow it as it streams; the arguments
follow each function's parameter schema, converted by llama-cpp-python's JSON-schema converter.
"""

from __future__ import annotations

import json

from inferno.core.structured_output import (
    SCHEMA_CONVERTER_ERRORS,
    check_repetitions,
    enforceable,
    json_strings_only,
    unconvertible_schema,
)
from inferno.core.tools.policy import ToolMode, ToolPolicy

CALLS_PREFIX = '{"tool_calls": ['
CALLS_SEPARATOR = ", "
CALLS_SUFFIX = "]}"
CALL_NAME_PREFIX = '{"name": "'
CALL_ARGUMENTS_PREFIX = '", "arguments": '
CALL_SUFFIX = "}"
RESPONSE_PREFIX = '{"response": '
RESPONSE_SUFFIX = "}"


def _literal(text: str) -> str:
    # JSON string escapes are GBNF literal escapes too.
    return json.dumps(text)


def _parameters_param(policy: ToolPolicy, name: str) -> str:
    """The request field that holds the named tool's parameter schema."""
    index = next(i for i, tool in enumerate(policy.tools) if tool.name == name)
    return f"tools[{index}].function.parameters"


def tool_call_grammar(policy: ToolPolicy) -> str:
    # Imported here: importing llama-cpp-python's package loads llama.cpp (structured_output.py says why).
    from llama_cpp.llama_grammar import SchemaConverter

    converter = SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    rules: dict[str, str] = {}
    call_rules: list[str] = []
    for i, tool in enumerate(policy.callable):
        check_repetitions(tool.parameters, _parameters_param(policy, tool.name))
        try:
            schema = converter.resolve_refs(enforceable(tool.parameters), f"tool:{tool.name}")
            arguments = converter.visit(schema, f"tool-{i}-arguments")
        except SCHEMA_CONVERTER_ERRORS as exc:
            raise unconvertible_schema(_parameters_param(policy, tool.name), exc) from exc
        rule = f"tool-call-{i}"
        rules[rule] = " ".join(
            (
                _literal(CALL_NAME_PREFIX + tool.name + CALL_ARGUMENTS_PREFIX),
                arguments,
                _literal(CALL_SUFFIX),
            )
        )
        call_rules.append(rule)
    rules["tool-call"] = " | ".join(call_rules)
    more = f"( {_literal(CALLS_SEPARATOR)} tool-call )* " if policy.parallel else ""
    rules["tool-calls"] = f"{_literal(CALLS_PREFIX)} tool-call {more}{_literal(CALLS_SUFFIX)}"
    if policy.mode is ToolMode.AUTO:
        text = converter.visit({"type": "string"}, "tool-response-text")
        rules["tool-response"] = f"{_literal(RESPONSE_PREFIX)} {text} {_literal(RESPONSE_SUFFIX)}"
        rules["root"] = "tool-calls | tool-response"
    else:
        rules["root"] = "tool-calls"
    ours = "\n".join(f"{name} ::= {rule}" for name, rule in rules.items())
    return json_strings_only(converter.format_grammar() + "\n" + ours)
