"""Refuses, naming the field, what a model's engine cannot serve: no request feature is silently ignored."""

from __future__ import annotations

from collections.abc import Sequence

from inferno.core.engines.base import SequenceRequest
from inferno.core.runtime.served_model import ServedModel
from inferno.errors import invalid_param


def require_generation(model: ServedModel) -> None:
    if not model.can_generate:
        raise invalid_param(
            "model",
            f"model '{model.description.id}' makes embeddings only; use /v1/embeddings",
        )


def require_capabilities(
    model: ServedModel,
    sequences: Sequence[SequenceRequest],
    grammar_param: str = "response_format",
    logprobs_param: str = "logprobs",
    prompt_logprobs_param: str = "echo",
) -> None:
    """grammar_param names the field that asked for constrained output ("tools" when tool calls did)."""
    caps = model.capabilities
    engine = f"the {caps.engine} engine serving '{model.description.id}'"
    for request in sequences:
        sampling = request.sampling
        if sampling.grammar is not None and not caps.constrained_output:
            raise invalid_param(grammar_param, f"{engine} cannot constrain output to a grammar")
        if sampling.logit_bias and not caps.logit_bias:
            raise invalid_param("logit_bias", f"{engine} does not support logit_bias")
        if sampling.typical_p != 1.0 and not caps.typical_p:
            raise invalid_param("typical_p", f"{engine} does not support typical_p")
        if sampling.min_tokens and not caps.min_tokens:
            raise invalid_param("min_tokens", f"{engine} does not support min_tokens")
        if sampling.min_tokens and sampling.grammar is not None:
            # Holding back end-of-generation tokens could leave a finished grammar nothing to allow.
            raise invalid_param(
                "min_tokens", f"'min_tokens' cannot be combined with '{sampling.grammar_param}'"
            )
        if request.prompt_logprobs is not None and not caps.prompt_logprobs:
            raise invalid_param(
                prompt_logprobs_param, f"{engine} cannot compute the prompt's log-probabilities"
            )
        top = request.top_logprobs
        if top is not None and (not caps.logprobs or top > caps.max_top_logprobs):
            limit = (
                f"at most {caps.max_top_logprobs} alternatives" if caps.logprobs else "no log-probabilities"
            )
            raise invalid_param(logprobs_param, f"{engine} gives log-probabilities with {limit}")
