"""Stop strings matched on decoded text, holding back text that may be the start of a stop string."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StopCheck:
    text: str
    stopped: bool


class StopMatcher:
    """Releases text only once it cannot be part of a stop string.

    push() returns the text safe to send and whether a stop string was found; text from the stop string on
    is dropped, as OpenAI does.
    """

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._held = ""

    def push(self, text: str, armed: bool = True) -> StopCheck:
        """armed False (before min_tokens): stop strings do not match yet, but text that may begin one is
        still held back, so one that ends once armed is found."""
        if not self._stops:
            return StopCheck(text, False)
        buffer = self._held + text
        cut = min((i for i in (buffer.find(s) for s in self._stops) if i >= 0), default=-1) if armed else -1
        if cut >= 0:
            self._held = ""
            return StopCheck(buffer[:cut], True)
        keep = self._partial_match_length(buffer)
        self._held = buffer[len(buffer) - keep :]
        return StopCheck(buffer[: len(buffer) - keep], False)

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held

    def _partial_match_length(self, buffer: str) -> int:
        """Length of the longest suffix of buffer that is a proper prefix of some stop string."""
        best = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(buffer)), best, -1):
                if buffer.endswith(stop[:size]):
                    best = size
                    break
        return best
