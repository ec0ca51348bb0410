"""Tool definitions and tool history as plain chat messages, so any chat template can render them.

Assistant tool calls become the JSON the model is asked to write (grammar.py's layout); tool results
become user messages holding {"tool_response": ...}; the tools and the reply format go into the system
message. This is what llama.cpp does for templates without native tool support, and it is used for every
template here so the prompt and the grammar always agree.
"""

from __future__ import annotations

import json
from typing import Any

from inferno.core.tools.policy import ToolMode, ToolPolicy

Message = dict[str, Any]


def messages_for_template(messages: list[Message], policy: ToolPolicy | None) -> list[Message]:
    rendered = _history_as_plain_messages(messages)
    if policy is None:
        return rendered
    instructions = _instructions(policy)
    if rendered and rendered[0]["role"] == "system":
        first = rendered[0]
        return [{**first, "content": f"{first['content']}\n\n{instructions}"}, *rendered[1:]]
    return [{"role": "system", "content": instructions}, *rendered]


def _history_as_plain_messages(messages: list[Message]) -> list[Message]:
    names_by_call_id: dict[str, str] = {}
    plain: list[Message] = []
    for message in messages:
        calls = message.get("tool_calls")
        if calls:
            names_by_call_id.update({c["id"]: c["name"] for c in calls if c["id"]})
            written = json.dumps(
                {"tool_calls": [{"name": c["name"], "arguments": _arguments(c["arguments"])} for c in calls]},
                ensure_ascii=False,
            )
            content = f"{message['content']}\n{written}" if message["content"] else written
            plain.append({"role": "assistant", "content": content})
        elif message["role"] == "tool":
            call_id = message.get("tool_call_id", "")
            response = {
                "tool_call_id": call_id,
                "name": names_by_call_id.get(call_id, ""),
                "content": message["content"],
            }
            plain.append(
                {"role": "user", "content": json.dumps({"tool_response": response}, ensure_ascii=False)}
            )
        else:
            plain.append({k: v for k, v in message.items() if k not in ("tool_calls", "tool_call_id")})
    return plain


def _arguments(text: str) -> Any:
    """Arguments as the JSON value they hold; text that is not JSON stays text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _instructions(policy: ToolPolicy) -> str:
    tools = json.dumps(
        [{"name": t.name, "description": t.description, "parameters": t.parameters} for t in policy.tools],
        ensure_ascii=False,
    )
    lines = [
        "You can call tools. Each tool below has a name, a description and the JSON schema of its arguments:",
        tools,
        "",
        'To call tools, reply with JSON only: {"tool_calls": [{"name": "<tool name>", "arguments": {...}}]}',
    ]
    if policy.mode is ToolMode.AUTO:
        lines.append('To answer without calling a tool, reply with JSON only: {"response": "<your answer>"}')
    elif len(policy.callable) == 1:
        lines.append(f"You must call the tool {policy.callable[0].name!r}.")
    else:
        lines.append("You must call at least one tool.")
    return "\n".join(lines)
