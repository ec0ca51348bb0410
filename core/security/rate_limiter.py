"""Token buckets per caller: rate_limit requests per minute, bursts of up to burst_limit; and the WebSocket
message rate the gateway applies per socket."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from inferno.security_config import SecurityConfig


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    # Requests per minute, as X-RateLimit-Limit reports it.
    limit: int
    remaining: int
    # Unix seconds when the bucket is full again (X-RateLimit-Reset).
    reset_at: int
    # Seconds until one request is allowed again; 0 when allowed.
    retry_after: int

    def headers(self) -> tuple[tuple[str, str], ...]:
        pairs = [
            ("x-ratelimit-limit", str(self.limit)),
            ("x-ratelimit-remaining", str(self.remaining)),
            ("x-ratelimit-reset", str(self.reset_at)),
        ]
        if not self.allowed:
            pairs.append(("retry-after", str(self.retry_after)))
        return tuple(pairs)


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Buckets live in memory (a restart refills them). Only the event loop thread calls this."""

    def __init__(self, per_minute: int, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._per_minute = per_minute
        self._burst = burst
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def check(self, caller: str, per_minute: int | None = None) -> RateDecision:
        """Takes one token from the caller's bucket if it has one. per_minute overrides the default (a key's
        own limit); the burst is then scaled with it."""
        rate = per_minute or self._per_minute
        if rate == 0:  # 0 switches rate limiting off
            return RateDecision(True, 0, 0, 0, 0)
        capacity = max(1, self._burst * rate // self._per_minute if per_minute else self._burst)
        refill_per_s = rate / 60
        now = self._clock()
        bucket = self._buckets.get(caller)
        if bucket is None:
            bucket = self._buckets[caller] = _Bucket(float(capacity), now)
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * refill_per_s)
        bucket.updated = now
        allowed = bucket.tokens >= 1
        if allowed:
            bucket.tokens -= 1
        full_in = (capacity - bucket.tokens) / refill_per_s
        retry_after = 0 if allowed else math.ceil((1 - bucket.tokens) / refill_per_s)
        return RateDecision(
            allowed=allowed,
            limit=rate,
            remaining=int(bucket.tokens),
            reset_at=math.ceil(time.time() + full_in),
            retry_after=retry_after,
        )


@dataclass(frozen=True)
class WebSocketMessageRate:
    """Client messages per second on one WebSocket, bursts of twice that; 0: unlimited.

    Only the gateway sees a socket's frames (pings and cancels make no core call), so it counts them, with
    these numbers, which GetServerStatus serves. Frames that do work are core calls under RateLimiter too."""

    per_second: int

    @property
    def burst(self) -> int:
        return 2 * self.per_second

    @classmethod
    def from_security(cls, security: SecurityConfig) -> WebSocketMessageRate:
        return cls(security.ws_messages_per_second)


DEFAULT_WS_MESSAGE_RATE = WebSocketMessageRate.from_security(SecurityConfig())
