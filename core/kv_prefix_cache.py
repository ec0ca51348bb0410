"""Prefix reuse: KV cells of finished sequences are kept under their sequence id, and a new sequence whose
prompt starts the same way takes them over instead of recomputing them.

Engine-agnostic: the engine supplies KVCacheOps over its own KV cache.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class KVCacheOps(Protocol):
    def truncate(self, seq_id: int, length: int) -> None:
        """Drops every position of seq_id from `length` on."""

    def clear(self, seq_id: int) -> None: ...


@runtime_checkable
class KVSnapshotOps(KVCacheOps, Protocol):
    """An engine whose KV cells can be copied out to host memory and into any sequence's stream."""

    def save(self, seq_id: int) -> bytearray:
        """Every cell of seq_id, serialized."""

    def restore(self, seq_id: int, data: bytearray) -> bool:
        """Puts a saved sequence's cells into seq_id's (empty) stream; False if they do not fit."""


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens a and b share. Slices compare in C, in windows that double while they match
    and are then halved down to the first difference: the cost follows the shared length, not the prompts'
    (most pairs part within a few tokens; a shared system prompt is hundreds long)."""
    n = min(len(a), len(b))
    low, width = 0, 16  # a[:low] == b[:low]
    while True:
        high = min(n, low + width)
        if low == high:
            return n
        if tuple(a[low:high]) != tuple(b[low:high]):
            break
        low, width = high, 2 * width
    while high - low > 1:  # the first difference is in [low, high)
        middle = (low + high) // 2
        if tuple(a[low:middle]) == tuple(b[low:middle]):
            low = middle
        else:
            high = middle
    return low


@dataclass(frozen=True)
class PrefixMatch:
    seq_id: int
    length: int


class KVPrefixCache:
    """The retained (finished) sequences' token lists, least recently used first.

    before_evict(seq_id, tokens) runs just before a retained sequence's cells are freed (the scheduler
    copies them to host memory then, if its host cache has dropped the copy made at release)."""

    def __init__(
        self,
        ops: KVCacheOps,
        min_reuse_tokens: int,
        before_evict: Callable[[int, tuple[int, ...]], None] | None = None,
    ) -> None:
        self._ops = ops
        self._min_reuse = min_reuse_tokens
        self._before_evict = before_evict
        self._retained: OrderedDict[int, tuple[int, ...]] = OrderedDict()

    @property
    def retained_tokens(self) -> int:
        return sum(len(t) for t in self._retained.values())

    def __len__(self) -> int:
        return len(self._retained)

    def retain(self, seq_id: int, tokens: tuple[int, ...]) -> None:
        self._retained[seq_id] = tokens

    def best_match(self, prompt: Sequence[int]) -> PrefixMatch | None:
        """The longest reusable prefix among retained sequences, if long enough to bother.

        At least the prompt's last token is always left to compute: its logits give the first sample.
        """
        limit = len(prompt) - 1
        best: PrefixMatch | None = None
        for seq_id, tokens in self._retained.items():
            length = min(common_prefix_length(prompt, tokens), limit)
            if length >= self._min_reuse and (best is None or length > best.length):
                best = PrefixMatch(seq_id, length)
        return best

    def lowest_id(self) -> int | None:
        return min(self._retained, default=None)

    def tokens(self, seq_id: int) -> tuple[int, ...]:
        """The tokens whose cells a retained sequence holds."""
        return self._retained[seq_id]

    def evict(self, seq_id: int) -> None:
        """Frees a retained sequence's cells."""
        tokens = self._retained.pop(seq_id)
        if self._before_evict is not None:
            self._before_evict(seq_id, tokens)
        self._ops.clear(seq_id)

    def take_over(self, match: PrefixMatch) -> int:
        """Hands a retained sequence's id and first match.length cells to a new sequence."""
        del self._retained[match.seq_id]
        self._ops.truncate(match.seq_id, match.length)
        return match.seq_id

    def evict_oldest(self) -> int | None:
        """Frees the least recently retained sequence; returns its id for reuse."""
        seq_id = next(iter(self._retained), None)
        if seq_id is not None:
            self.evict(seq_id)
        return seq_id
