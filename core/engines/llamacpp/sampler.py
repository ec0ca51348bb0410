"""One llama.cpp sampler chain per sequence, built from resolved sampling settings."""

from __future__ import annotations

import random

import llama_cpp.llama_cpp as llama

from inferno.core.engines.base import SamplingConfig


def build_sampler_chain(config: SamplingConfig, n_vocab: int, max_tokens: int) -> llama.llama_sampler_p:
    """penalties -> (greedy | top_p -> temperature -> seeded dist), in llama.cpp's usual order.

    Penalties see only generated tokens (llama_sampler_sample accepts each sampled token), as OpenAI's do.
    """
    chain = llama.llama_sampler_chain_init(llama.llama_sampler_chain_default_params())
    if config.presence_penalty or config.frequency_penalty:
        penalties = llama.llama_sampler_init_penalties(
            n_vocab, max(max_tokens, 1), 1.0, config.frequency_penalty, config.presence_penalty
        )
        llama.llama_sampler_chain_add(chain, penalties)
    if config.temperature <= 0.0:
        llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_greedy())
        return chain
    if config.top_p < 1.0:
        llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_top_p(config.top_p, 1))
    llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_temp(config.temperature))
    seed = config.seed if config.seed is not None else random.getrandbits(32)
    llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_dist(seed & 0xFFFFFFFF))
    return chain


def free_sampler_chain(chain: llama.llama_sampler_p) -> None:
    llama.llama_sampler_free(chain)
