"""Request rate limits per caller (rate_limit per minute, with a burst_limit ceiling), and the WebSocket
message rate the gateway applies per socket.

Each caller has a bucket of `limit` requests (its per-minute limit) that refills continuously at limit/60
a second: a request takes one, so X-RateLimit-Remaining counts down from X-RateLimit-Limit and
X-RateLimit-Reset is when the bucket is full again. burst_limit caps how fast a caller may spend it: a
second bucket of burst_limit requests that refills burst_limit a second (0: no ceiling).

RateLimiter keeps a core's buckets in memory; redis_limits.RedisRateLimiter keeps them in Redis, shared by a
fleet of cores. Both turn bucket levels into a RateDecision with rate_decision().
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from inferno.security_config import SecurityConfig


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    # Requests per minute, as X-RateLimit-Limit reports it; 0: not limited.
    limit: int
    # Requests the caller may still make in the minute (X-RateLimit-Remaining), counting this one.
    remaining: int
    # Unix seconds when remaining is back to limit (X-RateLimit-Reset).
    reset_at: int
    # Whole seconds until the next request passes; 0 when allowed.
    retry_after: int
    # The ceiling that refused the request when it was the burst limit rather than the minute's; else 0.
    burst_limit: int = 0

    def headers(self) -> tuple[tuple[str, str], ...]:
        pairs = [
            ("x-ratelimit-limit", str(self.limit)),
            ("x-ratelimit-remaining", str(self.remaining)),
            ("x-ratelimit-reset", str(self.reset_at)),
        ]
        if not self.allowed:
            pairs.append(("retry-after", str(self.retry_after)))
        return tuple(pairs)


class RequestRateLimiter(Protocol):
    async def take(self, caller: str, per_minute: int | None = None) -> RateDecision:
        """Takes one request from the caller's buckets if both have one; per_minute overrides the default
        (a key's own limit), the burst ceiling is the same for every caller."""
        ...


def burst_ceiling(burst: int, per_minute: int) -> int:
    """The burst bucket's size for a caller, 0 for none: a ceiling at or above the minute's limit could never
    refuse anything."""
    return burst if 0 < burst < per_minute else 0


def rate_decision(
    per_minute: int, burst: int, allowed: bool, minute_tokens: float, burst_tokens: float
) -> RateDecision:
    """The decision and its headers from the buckets' levels after the request (burst 0: no burst bucket)."""
    minute_rate = per_minute / 60
    wait = max(0.0, 1 - minute_tokens) / minute_rate
    if burst:
        wait = max(wait, max(0.0, 1 - burst_tokens) / burst)
    refused_by_burst = not allowed and minute_tokens >= 1 and burst > 0
    return RateDecision(
        allowed=allowed,
        limit=per_minute,
        remaining=int(minute_tokens),
        reset_at=math.ceil(time.time() + (per_minute - minute_tokens) / minute_rate),
        retry_after=0 if allowed else max(1, math.ceil(wait)),
        burst_limit=burst if refused_by_burst else 0,
    )


@dataclass
class _Bucket:
    """capacity requests, refilled continuously at per_second."""

    capacity: float
    per_second: float
    tokens: float
    updated: float

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now


@dataclass
class _Caller:
    minute: _Bucket
    burst: _Bucket | None


class RateLimiter:
    """Buckets live in memory (a restart refills them). Only the event loop thread calls this."""

    def __init__(self, per_minute: int, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._per_minute = per_minute
        self._burst = burst
        self._clock = clock
        self._callers: dict[str, _Caller] = {}

    async def take(self, caller: str, per_minute: int | None = None) -> RateDecision:
        return self.check(caller, per_minute)

    def check(self, caller: str, per_minute: int | None = None) -> RateDecision:
        """take(), for callers outside the event loop's coroutines."""
        rate = per_minute or self._per_minute
        if rate == 0:  # 0 switches rate limiting off
            return RateDecision(True, 0, 0, 0, 0)
        now = self._clock()
        state = self._callers.get(caller)
        if state is None or state.minute.capacity != rate:
            state = self._callers[caller] = self._new_caller(rate, now)
        minute, burst = state.minute, state.burst
        minute.refill(now)
        if burst is not None:
            burst.refill(now)
        allowed = minute.tokens >= 1 and (burst is None or burst.tokens >= 1)
        if allowed:
            minute.tokens -= 1
            if burst is not None:
                burst.tokens -= 1
        return rate_decision(
            rate,
            int(burst.capacity) if burst is not None else 0,
            allowed,
            minute.tokens,
            burst.tokens if burst is not None else 0.0,
        )

    def _new_caller(self, rate: int, now: float) -> _Caller:
        minute = _Bucket(float(rate), rate / 60, float(rate), now)
        burst = burst_ceiling(self._burst, rate)
        if not burst:
            return _Caller(minute, None)
        return _Caller(minute, _Bucket(float(burst), float(burst), float(burst), now))


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
