"""Engine events on their way to the callers' event loops: one wake-up per loop per hand-over."""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from inferno.core.runtime.loop_mailbox import LoopMailbox


class Outbox:
    """Events of engine steps, handed to each event loop with a single wake-up instead of one per token.

    With an interval, a loop's events wait until that long has passed since its last hand-over, and go out
    together; a sequence's first event, its last and errors go at once. Each hand-over costs CPU in the core's
    loop, in gRPC and in the gateway, and on a machine whose cores all run llama.cpp threads that CPU is taken
    from the decode (docs/performance.md, "Tokens handed over together").

    add and flush run on the engine thread; mailbox runs on the caller's loop.
    """

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval_s = interval_s
        self._clock = clock
        self._pending: dict[LoopMailbox, _Held] = {}
        self._mailboxes: dict[asyncio.AbstractEventLoop, LoopMailbox] = {}
        self._handed_at: dict[LoopMailbox, float] = {}

    def mailbox(self, loop: asyncio.AbstractEventLoop) -> LoopMailbox:
        mailbox = self._mailboxes.get(loop)
        if mailbox is None:
            mailbox = self._mailboxes[loop] = LoopMailbox(loop)
        return mailbox

    def add(self, mailbox: LoopMailbox, target: asyncio.Queue[Any], event: object, urgent: bool) -> None:
        held = self._pending.get(mailbox)
        if held is None:
            held = self._pending[mailbox] = _Held()
        held.items.append((target, event))
        held.urgent = held.urgent or urgent

    def flush(self, force: bool = False) -> None:
        """Hands over what is due; force hands over everything (the engine is about to wait)."""
        now = self._clock()
        for mailbox, held in list(self._pending.items()):
            if force or held.urgent or now - self._handed_at.get(mailbox, -math.inf) >= self._interval_s:
                del self._pending[mailbox]
                self._handed_at[mailbox] = now
                mailbox.post(functools.partial(_deliver, held.items))

    def close(self) -> None:
        for mailbox in self._mailboxes.values():
            mailbox.close()
        self._mailboxes.clear()


@dataclass
class _Held:
    items: list[tuple[asyncio.Queue[Any], object]] = field(default_factory=list)
    urgent: bool = False


def _deliver(items: list[tuple[asyncio.Queue[Any], object]]) -> None:
    for target, event in items:
        target.put_nowait(event)
