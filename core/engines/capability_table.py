"""docs/engines.md's table of what each engine supports, generated from the engines' own declarations."""

from __future__ import annotations

from dataclasses import fields

from inferno.core.engines.capabilities import EngineCapabilities
from inferno.core.engines.registry import ENGINE_NAMES, capabilities_of

_LABELS = {
    "device": "Runs on",
    "formats": "Model formats",
    "batching": "Batching by",
    "generation": "Text generation",
    "embedding": "Embeddings",
    "logprobs": "Token log-probabilities",
    "max_top_logprobs": "Most alternatives per token",
    "prompt_logprobs": "Prompt log-probabilities (echo + logprobs)",
    "constrained_output": "JSON schema, json_object, tool calls, grammar and guided_* (grammar)",
    "logit_bias": "logit_bias",
    "typical_p": "typical_p",
    "min_tokens": "min_tokens",
    "seed": "Seeded sampling (`seed + i` per choice)",
    "prefix_reuse": "KV reuse across requests with a shared prefix",
    "conversion_targets": "Conversion target (POST /v1/convert)",
}


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no (refused with invalid_parameters)"
    if isinstance(value, tuple):
        return ", ".join(str(v) for v in value) or "none"
    return str(value)


def capabilities_table_markdown(engines: tuple[str, ...] = ENGINE_NAMES) -> str:
    declared = [capabilities_of(name) for name in engines]
    rows = [
        "| | " + " | ".join(f"`{c.engine}`" for c in declared) + " |",
        "|---|" + "---|" * len(declared),
    ]
    for field in fields(EngineCapabilities):
        if field.name == "engine":
            continue
        cells = " | ".join(_cell(getattr(c, field.name)) for c in declared)
        rows.append(f"| {_LABELS[field.name]} | {cells} |")
    return "\n".join(rows) + "\n"
