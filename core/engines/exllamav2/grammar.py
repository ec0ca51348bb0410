"""Grammar-constrained sampling for ExLlamaV2 with llguidance: the GBNF the services build (the same text the
llama.cpp engine gets) becomes a token matcher that lists the tokens the grammar allows next.

GrammarConstraint has the methods ExLlamaV2's generator calls on a filter (begin, feed, next,
use_background_worker, can_mask_logits); the loader's ExLlamaV2Filter subclass forwards each to it, so the
logic is the one tested here without exllamav2.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import llguidance
import numpy as np
from llguidance.gbnf_to_lark import any_to_lark

from inferno.errors import InfernoError


class GrammarCompiler:
    """Turns GBNF into constraints for one model's tokenizer (built once per model: its token trie takes
    about a second for a 150k-token vocabulary)."""

    def __init__(self, tokenizer_json: str, eos_ids: Iterable[int]) -> None:
        self._eos = sorted(eos_ids)
        self._tokenizer = llguidance.LLTokenizer(tokenizer_json, eos_token=self._eos or None)

    def constraint(self, gbnf: str, param: str = "response_format") -> GrammarConstraint:
        """A fresh constraint for one sequence. Raises invalid_parameters naming param (the request field
        the grammar came from) for a grammar llguidance cannot take."""
        try:
            lark = any_to_lark(gbnf)
        except Exception as exc:  # the converter raises bare exceptions of several kinds
            raise _refused(str(exc), param) from exc
        matcher = llguidance.LLMatcher(
            self._tokenizer, llguidance.LLMatcher.grammar_from_lark(lark), log_level=0
        )
        if matcher.is_error():
            raise _refused(matcher.get_error(), param)
        return GrammarConstraint(matcher, self._tokenizer.vocab_size, self._eos)


class GrammarConstraint:
    """One sequence's position in its grammar. The generator calls begin() before the first token, next()
    before each sample (possibly on its filter thread, while the GPU computes) and feed() after it."""

    def __init__(self, matcher: llguidance.LLMatcher, vocab_size: int, eos_ids: list[int]) -> None:
        self._matcher = matcher
        self._vocab_size = vocab_size
        self._eos = eos_ids

    def begin(self, prefix_str: str = "") -> None:
        self._matcher.reset()

    def feed(self, token: Any) -> None:
        """token: an int, or the generator's (1, 1) tensor. A token the grammar refuses puts the matcher in
        its error state, where only end-of-generation tokens are allowed."""
        self._matcher.consume_token(int(token.item() if hasattr(token, "item") else token))

    def next(self) -> tuple[list[int], set[int]]:
        """(the tokens allowed next, the tokens that end the filter). The second is always empty: the
        sequence ends when the model samples an end-of-generation token the grammar allows, which the runtime
        sees as it sees any other, never by the generator ending the job on its own."""
        return self.allowed_tokens(), set()

    def allowed_tokens(self) -> list[int]:
        mask = np.frombuffer(self._matcher.compute_bitmask(), dtype=np.uint8)
        bits = np.unpackbits(mask, bitorder="little")[: self._vocab_size]
        allowed: list[int] = np.flatnonzero(bits).tolist()
        # Past the grammar's end (ignore_eos went on through end-of-generation): only those tokens again.
        return allowed or list(self._eos)

    def use_background_worker(self) -> bool:
        return True

    def can_mask_logits(self) -> bool:
        # Masking in place would also mask the logits the generator returns for log-probabilities.
        return False

    @property
    def accepting(self) -> bool:
        """The text so far is a complete match: end-of-generation is allowed."""
        return bool(self._matcher.is_accepting())


def _refused(reason: str, param: str) -> InfernoError:
    return InfernoError(
        "invalid_parameters",
        f"the output grammar for {param} cannot be enforced with ExLlamaV2: {reason}",
        {"param": param},
    )
