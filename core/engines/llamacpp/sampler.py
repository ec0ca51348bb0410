"""One llama.cpp sampler chain per sequence, built from resolved sampling settings."""

from __future__ import annotations

import ctypes
import math
import random
from dataclasses import dataclass
from typing import Any, TypeAlias

import llama_cpp.llama_cpp as llama
import numpy as np

from inferno.core.engines.base import SamplingConfig
from inferno.core.engines.llamacpp.model import GgufModel
from inferno.errors import invalid_param


@dataclass(frozen=True)
class GreedyPick:
    """Greedy decoding whose only change to the logits, if any, is a logit bias: the first largest of the
    biased logits, which is what llama.cpp's logit-bias sampler followed by its greedy sampler picks.

    llama_sampler_sample copies the whole vocabulary into a candidate array before any sampler runs, about
    70 us a token here, some 1% of a decode step for every sequence; this reads the logits where they are.
    """

    tokens: np.ndarray  # token ids, with their biases in the same order
    biases: np.ndarray

    def pick(self, logits: np.ndarray) -> int:
        if not len(self.tokens):
            return int(logits.argmax())
        biased = logits.copy()
        np.add.at(biased, self.tokens, self.biases)  # a token listed twice gets both, as in llama.cpp
        return int(biased.argmax())


# A string: llama_sampler_p exists only for type checkers.
Sampler: TypeAlias = "GreedyPick | llama.llama_sampler_p"


def build_sampler(config: SamplingConfig, model: GgufModel, max_tokens: int) -> Sampler:
    """min_tokens ban -> grammar -> logit bias -> penalties -> (greedy | temperature -> top_k -> typical ->
    top_p -> min_p -> seeded dist).

    Penalties see only generated tokens (each sampled token is accepted into the chain), as OpenAI's do.

    Greedy decoding with nothing but a logit bias before the pick is a GreedyPick, which the decoder applies
    to the logits itself; anything else is a llama.cpp sampler chain.
    """
    if config.temperature <= 0.0 and not _needs_chain(config):
        return GreedyPick(
            np.array([token for token, _ in config.logit_bias], dtype=np.intp),
            np.array([bias for _, bias in config.logit_bias], dtype=np.float32),
        )
    chain = llama.llama_sampler_chain_init(llama.llama_sampler_chain_default_params())
    if config.min_tokens > 0:
        ban = _EndOfGenerationBan(model.end_of_generation, config.min_tokens)
        llama.llama_sampler_chain_add(chain, ban.sampler)
        _KEPT_ALIVE[_address(chain)] = ban
    if config.grammar is not None:
        grammar = llama.llama_sampler_init_grammar(model.vocab, config.grammar.encode(), b"root")
        if not grammar:
            free_sampler(chain)
            raise invalid_param(
                config.grammar_param, f"llama.cpp rejected the grammar made from '{config.grammar_param}'"
            )
        llama.llama_sampler_chain_add(chain, grammar)
    if config.logit_bias:
        biases = (llama.llama_logit_bias * len(config.logit_bias))(
            *(llama.llama_logit_bias(token, bias) for token, bias in config.logit_bias)
        )
        llama.llama_sampler_chain_add(
            chain, llama.llama_sampler_init_logit_bias(model.n_vocab, len(config.logit_bias), biases)
        )
    if _penalized(config):
        penalties = llama.llama_sampler_init_penalties(
            model.n_vocab,
            max(max_tokens, 1),
            config.repetition_penalty,
            config.frequency_penalty,
            config.presence_penalty,
        )
        llama.llama_sampler_chain_add(chain, penalties)
    if config.temperature <= 0.0:
        llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_greedy())
        return chain
    # Temperature before the truncations, as vLLM, Hugging Face and ExLlamaV2 apply it (llama.cpp's own
    # order has it last): top_p then keeps the nucleus of the distribution that is sampled from, and finds it
    # in a few hundred tokens rather than sorting most of the vocabulary (top_p 0.95 at temperature 0.8:
    # 0.6 against 3.0 ms a token here).
    llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_temp(config.temperature))
    if config.top_k > 0:
        llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_top_k(config.top_k))
    if config.typical_p < 1.0:
        llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_typical(config.typical_p, 1))
    if config.top_p < 1.0:
        llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_top_p(config.top_p, 1))
    if config.min_p > 0.0:
        llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_min_p(config.min_p, 1))
    seed = config.seed if config.seed is not None else random.getrandbits(32)
    llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_dist(seed & 0xFFFFFFFF))
    return chain


class Candidates:
    """Every token of the vocabulary as llama.cpp's sampler input (llama_token_data), one array reused for
    every pick of one engine thread.

    A chain picks through this rather than llama_sampler_sample, which accepts whatever its samplers
    selected: where a grammar allows no token at all (one that needs a NUL character, which llama.cpp's
    grammar code cannot match in a token's text), every logit is -inf, a token is selected anyway, and the
    grammar's accept throws a C++ exception that aborts the process. Here such a pick is None instead.
    """

    _TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])

    def __init__(self, n_vocab: int) -> None:
        self._ids = np.arange(n_vocab, dtype=np.int32)
        self._data = np.zeros(n_vocab, self._TOKEN_DATA)
        self._array = llama.llama_token_data_array(
            data=self._data.ctypes.data_as(llama.llama_token_data_p), size=n_vocab, selected=-1, sorted=False
        )
        self._pointer = ctypes.pointer(self._array)

    def pick(self, chain: llama.llama_sampler_p, logits: np.ndarray) -> int | None:
        """The token chain selects from logits, accepted into the chain; None where its samplers left no
        token possible (nothing is accepted then)."""
        data = self._data
        data["id"] = self._ids
        data["logit"] = logits
        data["p"] = 0.0
        array = self._array
        # Samplers shrink and reorder the candidates in place.
        array.size = len(data)
        array.selected = -1
        array.sorted = False
        llama.llama_sampler_apply(chain, self._pointer)
        if not 0 <= array.selected < array.size:
            return None
        chosen = array.data[array.selected]
        if not math.isfinite(chosen.logit):
            return None
        token = int(chosen.id)
        llama.llama_sampler_accept(chain, token)
        return token


def _penalized(config: SamplingConfig) -> bool:
    return bool(config.presence_penalty or config.frequency_penalty or config.repetition_penalty != 1.0)


def _needs_chain(config: SamplingConfig) -> bool:
    """Whether a sampler other than a logit bias applies before the pick: a min_tokens ban, a grammar,
    penalties."""
    return config.min_tokens > 0 or config.grammar is not None or _penalized(config)


def free_sampler(sampler: Sampler) -> None:
    if isinstance(sampler, GreedyPick):
        return
    llama.llama_sampler_free(sampler)
    _KEPT_ALIVE.pop(_address(sampler), None)


# Python samplers in a chain, by the chain's address: llama.cpp calls them until the chain is freed.
_KEPT_ALIVE: dict[int, _EndOfGenerationBan] = {}
_BAN_NAME = b"inferno-min-tokens"


class _EndOfGenerationBan:
    """A llama.cpp sampler, first in its chain, that sets the logits of end-of-generation tokens to -inf until
    it has accepted min_tokens tokens (each sampled token is accepted once, drafts included).

    Allocated by llama_sampler_init, so the chain frees it like any other; the interface and callbacks it
    points to live here, kept alive in _KEPT_ALIVE.
    """

    def __init__(self, banned: frozenset[int], min_tokens: int) -> None:
        self._banned = banned
        self._remaining = min_tokens
        self._callbacks = (
            llama.llama_sampler_i_name(lambda _smpl: _BAN_NAME),
            llama.llama_sampler_i_accept(self._accept),
            llama.llama_sampler_i_apply(self._apply),
        )
        self._iface = llama.llama_sampler_i()
        self._iface.name, self._iface.accept, self._iface.apply = self._callbacks
        self.sampler = llama.llama_sampler_init(ctypes.pointer(self._iface), None)

    def _accept(self, _smpl: object, _token: int) -> None:
        self._remaining -= 1

    def _apply(self, _smpl: object, candidates: Any) -> None:  # POINTER(llama_token_data_array)
        if self._remaining <= 0:
            return
        array = candidates.contents
        data = array.data
        # First in the chain, the candidates are the whole vocabulary in id order.
        in_order = array.size > 0 and data[array.size - 1].id == array.size - 1
        for token in self._banned:
            if in_order and token < array.size:
                data[token].logit = -math.inf
            else:
                for i in range(array.size):
                    if data[i].id == token:
                        data[i].logit = -math.inf


def _address(chain: llama.llama_sampler_p) -> int:
    return ctypes.cast(chain, ctypes.c_void_p).value or 0
