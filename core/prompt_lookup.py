"""Draft tokens for speculative decoding from the sequence's own text (prompt lookup), with no draft model.

When the last few tokens occurred before (in the prompt or the reply so far), the tokens that followed them
then are a cheap guess at what follows now; rewriting or extracting from a given text repeats long runs.
The target model verifies a draft in one batched decode (see the scheduler and the decoder).
"""

from __future__ import annotations

from collections.abc import Sequence

# Longest and shortest n-gram looked up; a match on a longer one is the better guess.
_MAX_NGRAM = 3
_MIN_NGRAM = 2


class PromptLookup:
    """An index of one sequence's n-grams to where each last occurred, kept up to date as tokens come."""

    def __init__(self, tokens: Sequence[int]) -> None:
        self._tokens: list[int] = []
        # n-gram -> the position right after its latest occurrence that is not the sequence's tail.
        self._next: dict[tuple[int, ...], int] = {}
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
        """Up to limit tokens that followed the longest earlier occurrence of the sequence's last n-gram."""
        tokens = self._tokens
        for n in range(_MAX_NGRAM, _MIN_NGRAM - 1, -1):
            if len(tokens) <= n or limit <= 0:
                continue
            start = self._next.get(tuple(tokens[-n:]))
            if start is not None:
                return tuple(tokens[start : start + limit])
        return ()
