"""How many streams each caller has open (max_concurrent_streams): in memory for one core, or in Redis for a
fleet (redis_limits.RedisStreamSlots)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class StreamSlot:
    """One open stream, released when the stream ends."""

    caller: str
    # Which lease holds the slot in a shared count; "" for a count in memory.
    lease: str = ""


class StreamSlots(Protocol):
    async def acquire(self, caller: str, limit: int) -> StreamSlot | None:
        """A slot for one more stream of caller, or None when caller already has limit open."""
        ...

    def release(self, slot: StreamSlot) -> None:
        """The stream has ended (returns at once; a shared count is updated in the background)."""
        ...


class LocalStreamSlots:
    """Counts in memory; only the event loop thread calls this."""

    def __init__(self) -> None:
        self._open: Counter[str] = Counter()

    async def acquire(self, caller: str, limit: int) -> StreamSlot | None:
        if self._open[caller] >= limit:
            return None
        self._open[caller] += 1
        return StreamSlot(caller)

    def release(self, slot: StreamSlot) -> None:
        self._open[slot.caller] -= 1
        if self._open[slot.caller] <= 0:
            del self._open[slot.caller]
