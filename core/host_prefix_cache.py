"""Prefix reuse across KV streams: snapshots of sequences' KV cells in host memory, restored into any stream.

One KV stream per sequence means a stream's cells cannot be shared with another stream in place; a snapshot
(the engine's serialized cells of one sequence) can be copied into any stream instead. So a system prompt or
a conversation's history is computed once per server, not once per stream. Bounded by bytes, least recently
used out first. Engine-agnostic: the engine supplies the bytes (KVCacheOps.save/restore).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from inferno.core.kv_prefix_cache import common_prefix_length


@dataclass(frozen=True)
class Snapshot:
    tokens: tuple[int, ...]
    data: bytearray


@dataclass(frozen=True)
class SnapshotMatch:
    snapshot: Snapshot
    # Leading tokens of the prompt the snapshot holds (the rest of the snapshot is dropped after restoring).
    length: int


@dataclass(frozen=True)
class PrefixCacheState:
    """Prefix reuse of one model: the host cache's snapshots, and how many prompts reused a prefix since load
    (a restored snapshot or a finished sequence's retained stream; the tokens they saved are the stepper's
    reused_prompt_tokens)."""

    entries: int
    bytes_held: int
    hits: int


class HostPrefixCache:
    def __init__(self, capacity_bytes: int, min_reuse_tokens: int) -> None:
        self.capacity_bytes = capacity_bytes
        self._min_reuse = min_reuse_tokens
        self._snapshots: OrderedDict[tuple[int, ...], Snapshot] = OrderedDict()
        self._bytes = 0
        self._dropped = 0

    @property
    def entries(self) -> int:
        return len(self._snapshots)

    @property
    def bytes_held(self) -> int:
        return self._bytes

    def best_match(self, prompt: Sequence[int]) -> SnapshotMatch | None:
        """The snapshot sharing the longest prefix with prompt, if long enough to bother; the prompt's last
        token is always left to compute (its logits give the first sample)."""
        limit = len(prompt) - 1
        best: SnapshotMatch | None = None
        for snapshot in self._snapshots.values():
            length = min(common_prefix_length(prompt, snapshot.tokens), limit)
            if length >= self._min_reuse and (best is None or length > best.length):
                best = SnapshotMatch(snapshot, length)
        return best

    def touch(self, match: SnapshotMatch) -> None:
        """Marks the matched snapshot as just used (last out)."""
        self._snapshots.move_to_end(match.snapshot.tokens)

    def covers(self, tokens: Sequence[int]) -> bool:
        """True when a snapshot already holds tokens (as its whole or its start): nothing new to save."""
        n = len(tokens)
        return any(
            len(snapshot.tokens) >= n and common_prefix_length(tokens, snapshot.tokens) == n
            for snapshot in self._snapshots.values()
        )

    def worth_saving(self, tokens: Sequence[int]) -> bool:
        return self.capacity_bytes > 0 and len(tokens) >= self._min_reuse and not self.covers(tokens)

    def put(self, tokens: tuple[int, ...], data: bytearray) -> None:
        """Keeps a snapshot; snapshots it extends are dropped (it serves every prompt they served)."""
        if len(data) > self.capacity_bytes:
            return
        for key in [k for k in self._snapshots if common_prefix_length(k, tokens) == len(k)]:
            self._drop(key)
        self._snapshots[tokens] = Snapshot(tokens, data)
        self._bytes += len(data)
        while self._bytes > self.capacity_bytes:
            self._drop(next(iter(self._snapshots)))

    def _drop(self, key: tuple[int, ...]) -> None:
        self._bytes -= len(self._snapshots.pop(key).data)
        self._dropped += 1
        if self._dropped % _TRIM_EVERY_DROPS == 0:
            give_back_freed_memory()


# Snapshots are megabytes each and come and go all the time: glibc keeps freed heap memory for reuse, and
# fragmentation lets the process grow. Every so many drops the freed memory goes back to the system.
_TRIM_EVERY_DROPS = 16


def give_back_freed_memory() -> None:
    """glibc's malloc_trim(0); nothing on other C libraries."""
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


_LIBC = _libc()
