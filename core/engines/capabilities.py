"""What an engine can do, declared by the engine itself. Services refuse what an engine cannot serve, and
docs/engines.md's table is generated from these declarations."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineCapabilities:
    # The name used in inferno.toml's `engine` and in model descriptions.
    engine: str
    # Where it runs, in words ("CPU (any x86-64 / ARM llama.cpp supports)", "CUDA GPU").
    device: str
    # Model formats it loads ("gguf", "exl2", "fp16 safetensors").
    formats: tuple[str, ...]
    # Who batches: "runtime" (the runtime's continuous-batching scheduler) or "engine" (its own generator).
    batching: str
    generation: bool = True
    embedding: bool = False
    # Sampled-token log-probabilities and how many alternatives per token.
    logprobs: bool = True
    max_top_logprobs: int = 20
    # Prompt tokens' log-probabilities (completions echo + logprobs).
    prompt_logprobs: bool = True
    # Grammar-constrained output: response_format json_object/json_schema and tool calls.
    constrained_output: bool = True
    logit_bias: bool = True
    seed: bool = True
    # typical_p (locally typical sampling) and min_tokens (end-of-generation tokens held back).
    typical_p: bool = True
    min_tokens: bool = True
    # KV cache reuse for prompts that share a prefix with earlier ones.
    prefix_reuse: bool = True
    # Conversions it can produce (the `format` of POST /v1/convert).
    conversion_targets: tuple[str, ...] = ()
