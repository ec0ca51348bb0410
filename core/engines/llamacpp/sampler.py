"""One llama.cpp sampler chain per sequence, built from resolved sampling settings."""

from __future__ import annotations

import random

import llama_cpp.llama_cpp as llama

from inferno.core.engines.base import SamplingConfig
from inferno.errors import InfernoError


def build_sampler_chain(
    config: SamplingConfig, vocab: llama.llama_vocab_p, n_vocab: int, max_tokens: int
) -> llama.llama_sampler_p:
    """grammar -> logit bias -> penalties -> (greedy | top_k -> top_p -> min_p -> temperature -> seeded
    dist), in llama.cpp's usual order.

    Penalties see only generated tokens (llama_sampler_sample accepts each sampled token), as OpenAI's do.
    """
    chain = llama.llama_sampler_chain_init(llama.llama_sampler_chain_default_params())
    if config.grammar is not None:
        grammar = llama.llama_sampler_init_grammar(vocab, config.grammar.encode(), b"root")
        if not grammar:
            llama.llama_sampler_free(chain)
            raise InfernoError("invalid_parameters", "llama.cpp rejected the grammar for response_format")
        llama.llama_sampler_chain_add(chain, grammar)
    if config.logit_bias:
        biases = (llama.llama_logit_bias * len(config.logit_bias))(
            *(llama.llama_logit_bias(token, bias) for token, bias in config.logit_bias)
        )
        llama.llama_sampler_chain_add(
            chain, llama.llama_sampler_init_logit_bias(n_vocab, len(config.logit_bias), biases)
        )
    if config.presence_penalty or config.frequency_penalty or config.repetition_penalty != 1.0:
        penalties = llama.llama_sampler_init_penalties(
            n_vocab,
            max(max_tokens, 1),
            config.repetition_penalty,
            config.frequency_penalty,
            config.presence_penalty,
        )
        llama.llama_sampler_chain_add(chain, penalties)
    if config.temperature <= 0.0:
        llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_greedy())
        return chain
    if config.top_k > 0:
        llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_top_k(config.top_k))
    if config.top_p < 1.0:
        llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_top_p(config.top_p, 1))
    if config.min_p > 0.0:
        llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_min_p(config.min_p, 1))
    llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_temp(config.temperature))
    seed = config.seed if config.seed is not None else random.getrandbits(32)
    llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_dist(seed & 0xFFFFFFFF))
    return chain


def free_sampler_chain(chain: llama.llama_sampler_p) -> None:
    llama.llama_sampler_free(chain)
