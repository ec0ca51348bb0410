"""Which tools a chat request offers and whether the model must call one: checked once, from the proto."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Any

from inferno.core.struct_json import schema_from
from inferno.errors import invalid_param
from inferno.v1 import inference_service_pb2 as pb

MAX_TOOLS = 128
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_NO_ARGUMENTS: dict[str, Any] = {"type": "object", "properties": {}}


class ToolMode(Enum):
    # Text or tool calls, the model's choice.
    AUTO = "auto"
    # At least one tool call (one of `names` when a function was named).
    REQUIRED = "required"


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    # JSON schema of the arguments object.
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ToolPolicy:
    """The tools the model may call in this reply; no policy at all means plain text."""

    tools: tuple[ToolSpec, ...]
    mode: ToolMode
    # The tools the grammar lets the model call: all of them, or the one tool_choice named.
    callable: tuple[ToolSpec, ...]
    parallel: bool


def resolve_tool_policy(params: pb.ChatCompletionParams) -> ToolPolicy | None:
    """None when the reply is text only: no tools, or tool_choice none."""
    tools = _tool_specs(params.tools)
    choice = params.tool_choice.WhichOneof("choice")
    parallel = params.parallel_tool_calls if params.HasField("parallel_tool_calls") else True
    if choice == "function_name":
        name = params.tool_choice.function_name
        named = [t for t in tools if t.name == name]
        if not named:
            raise invalid_param(
                "tool_choice", f"'tool_choice' names function {name!r}, which is not in 'tools'"
            )
        return ToolPolicy(tools, ToolMode.REQUIRED, tuple(named), parallel)
    mode = params.tool_choice.mode if choice == "mode" else pb.TOOL_CHOICE_MODE_UNSPECIFIED
    if mode == pb.TOOL_CHOICE_MODE_NONE or (mode == pb.TOOL_CHOICE_MODE_UNSPECIFIED and not tools):
        return None
    if not tools:
        raise invalid_param(
            "tool_choice", "'tool_choice' auto or required needs at least one tool in 'tools'"
        )
    resolved = ToolMode.REQUIRED if mode == pb.TOOL_CHOICE_MODE_REQUIRED else ToolMode.AUTO
    return ToolPolicy(tools, resolved, tools, parallel)


def _tool_specs(tools: Any) -> tuple[ToolSpec, ...]:
    if len(tools) > MAX_TOOLS:
        raise invalid_param("tools", f"'tools' takes at most {MAX_TOOLS} tools, got {len(tools)}")
    specs: list[ToolSpec] = []
    for i, tool in enumerate(tools):
        if tool.type != "function":
            raise invalid_param(
                f"tools[{i}].type", f"'tools[{i}].type' must be 'function', got {tool.type!r}"
            )
        name = tool.function.name
        if not _NAME.match(name):
            raise invalid_param(
                f"tools[{i}].function.name",
                f"'tools[{i}].function.name' must be 1 to 64 letters, digits, underscores or dashes",
            )
        if any(s.name == name for s in specs):
            raise invalid_param(f"tools[{i}].function.name", f"two tools are named {name!r}")
        parameters = (
            schema_from(
                tool.function.parameters, tool.function.parameters_json, f"tools[{i}].function.parameters"
            )
            if tool.function.HasField("parameters") or tool.function.parameters_json
            else _NO_ARGUMENTS
        )
        if parameters.get("type", "object") != "object":
            raise invalid_param(
                f"tools[{i}].function.parameters",
                f"'tools[{i}].function.parameters' must be a JSON schema of type object",
            )
        specs.append(ToolSpec(name, tool.function.description, parameters))
    return tuple(specs)
