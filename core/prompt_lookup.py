"""Draft tokens for speculative decoding from the sequence's own text (prompt lookup), with no draft model.

When the last few tokens occurred before (in the prompt or the reply so far), the tokens that followed them
then are a cheap guess at what follows now; rewriting or extracting from a given text repeats long runs.
The target model verifies a draft in one batched decode (see the scheduler and the decoder).
"""

from __future__ import annotations

from collections.abc import Sequence

from inferno.core.kv_prefix_cache import common_prefix_length

# Longest and shortest n-gram looked up; a match on a longer one is the better guess, and a two-token match
# ("of the") is too common in free text to be worth a draft.
_MAX_NGRAM = 4
_MIN_NGRAM = 3
# Verifying a draft widens the decode, and on a CPU a wider decode costs far more than its share (on the
# 2-core test machine, 2 tokens cost 2.3 times one, 9 tokens 5.4 times; docs/performance.md): a draft pays
# only when it is long and nearly all kept. So a sequence drafts only while a moving average of its lookups'
# hits per guessed token is at least _MIN_HIT_RATE; a new sequence starts there. The average keeps learning
# while the sequence does not draft: the lookup's guess for the next token is still checked against the token
# sampled next, at no cost. A draft is at least _MIN_LENGTH tokens; its length doubles while drafts are kept
# whole, and drops to one more than was kept otherwise.
_MIN_HIT_RATE = 0.85
_HIT_WEIGHT = 0.1
_FIRST_HIT_RATE = 0.85
_MIN_LENGTH = 4
_MAX_LENGTH = 64


class PromptLookup:
    """An index of one sequence's n-grams to where each last occurred, kept up to date as tokens come."""

    def __init__(self, tokens: Sequence[int]) -> None:
        self._tokens: list[int] = []
        # n-gram -> the position right after its latest occurrence that is not the sequence's tail.
        self._next: dict[tuple[int, ...], int] = {}
        self._length = _MIN_LENGTH
        self.hit_rate = _FIRST_HIT_RATE
        # The last guess (drafted, or only checked) and how many tokens the sequence had when it was made.
        self._guess: tuple[int, ...] = ()
        self._drafted = False
        self._guessed_at = 0
        self.extend(tokens)

    def extend(self, tokens: Sequence[int]) -> None:
        for token in tokens:
            # Index the n-grams ending at the previous token: their follower is known now.
            end = len(self._tokens)
            for n in range(_MIN_NGRAM, _MAX_NGRAM + 1):
                if end >= n:
                    self._next[tuple(self._tokens[end - n : end])] = end
            self._tokens.append(token)

    def __len__(self) -> int:
        return len(self._tokens)

    def draft(self, limit: int) -> tuple[int, ...]:
        """Up to limit tokens that followed the longest earlier occurrence of the sequence's last n-gram,
        or none while the lookups' recent guesses were not good enough to pay for verifying them. Call
        extend() with the tokens sampled since the last call first: they score the last guess."""
        self._settle()
        guess = self._lookup(min(limit, self._length))
        if not guess:
            return ()
        self._guess, self._guessed_at = guess, len(self._tokens)
        self._drafted = self.hit_rate >= _MIN_HIT_RATE and len(guess) >= _MIN_LENGTH
        return guess if self._drafted else ()

    def _lookup(self, length: int) -> tuple[int, ...]:
        tokens = self._tokens
        for n in range(_MAX_NGRAM, _MIN_NGRAM - 1, -1):
            if len(tokens) <= n or length <= 0:
                continue
            start = self._next.get(tuple(tokens[-n:]))
            if start is not None:
                return tuple(tokens[start : start + length])
        return ()

    def _settle(self) -> None:
        guess, self._guess = self._guess, ()
        sampled = self._tokens[self._guessed_at :]
        if not guess or not sampled:
            return
        # A draft was verified token by token up to its first miss; an unverified guess, only its first token.
        checked = guess if self._drafted else guess[:1]
        hits = common_prefix_length(checked, sampled)
        for hit in [1.0] * hits + ([0.0] if hits < len(checked) else []):
            self.hit_rate += _HIT_WEIGHT * (hit - self.hit_rate)
        if self._drafted:
            kept_whole = hits == len(checked)
            self._length = min(2 * self._length, _MAX_LENGTH) if kept_whole else max(_MIN_LENGTH, hits + 1)
