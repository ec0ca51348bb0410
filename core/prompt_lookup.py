"""Draft tokens for speculative decoding from the sequence's own text (prompt lookup), with no draft model.

When the last few tokens occurred before (in the prompt or the reply so far), the tokens that followed them
then are a cheap guess at what follows now; rewriting or extracting from a given text repeats long runs.
The target model verifies a draft in one batched decode (see the scheduler and the decoder).
"""

from __future__ import annotations

from collections.abc import Sequence

# Longest and shortest n-gram looked up; a match on a longer one is the better guess, and a two-token match
# ("of the") is too common in free text to be worth a draft.
_MAX_NGRAM = 4
_MIN_NGRAM = 3
# Draft length adapts to how much of the last draft was kept: it starts short, doubles while drafts are kept
# whole and drops to one more than was kept otherwise. Verifying a draft costs a wider decode, a loss when
# little is kept: when the share of drafted tokens kept (a moving average) falls under _MIN_KEPT, the
# sequence stops drafting for _COOLDOWN_STEPS steps.
_FIRST_LENGTH = 2
_MIN_KEPT = 0.5
_KEPT_WEIGHT = 0.3
_COOLDOWN_STEPS = 16


class PromptLookup:
    """An index of one sequence's n-grams to where each last occurred, kept up to date as tokens come."""

    def __init__(self, tokens: Sequence[int]) -> None:
        self._tokens: list[int] = []
        # n-gram -> the position right after its latest occurrence that is not the sequence's tail.
        self._next: dict[tuple[int, ...], int] = {}
        self._length = _FIRST_LENGTH
        self._kept = 1.0
        self._cooldown = 0
        # The last draft and how many tokens the sequence had when it was made, to see what was accepted.
        self._last_draft: tuple[int, ...] = ()
        self._drafted_at = 0
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
        """Up to limit tokens (fewer while recent drafts were rejected) that followed the longest earlier
        occurrence of the sequence's last n-gram. Call extend() with the tokens sampled since the last call
        first: what they kept of the last draft sets the next one's length."""
        self._settle()
        if self._cooldown:
            self._cooldown -= 1
            return ()
        tokens = self._tokens
        limit = min(limit, self._length)
        for n in range(_MAX_NGRAM, _MIN_NGRAM - 1, -1):
            if len(tokens) <= n or limit <= 0:
                continue
            start = self._next.get(tuple(tokens[-n:]))
            if start is not None:
                self._last_draft = tuple(tokens[start : start + limit])
                self._drafted_at = len(tokens)
                return self._last_draft
        return ()

    def _settle(self) -> None:
        draft, self._last_draft = self._last_draft, ()
        if not draft:
            return
        sampled = self._tokens[self._drafted_at :]
        accepted = 0
        while accepted < min(len(draft), len(sampled)) and draft[accepted] == sampled[accepted]:
            accepted += 1
        self._kept += _KEPT_WEIGHT * (accepted / len(draft) - self._kept)
        if accepted == len(draft):
            self._length = min(2 * self._length, 64)
        else:
            self._length = max(1, accepted + 1)
        if self._kept < _MIN_KEPT:
            # After the pause, drafting starts over from a short draft and a clean slate.
            self._cooldown, self._length, self._kept = _COOLDOWN_STEPS, _FIRST_LENGTH, 1.0
