"""Rate-limit buckets and open-stream counts in Redis, shared by a fleet of cores ([security] redis_url).

Each check is one Lua script, which Redis runs atomically on its own clock: two cores cannot both spend a
caller's last token, and the cores' clocks do not matter. An open stream is a lease in its caller's sorted set
(lease -> expiry) that its core renews while the stream runs and removes when it ends; a core that dies stops
renewing, so its streams stop counting after STREAM_LEASE_S.

While Redis is unreachable a core limits callers on its own, in memory, and logs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from inferno.core.security.rate_limiter import (
    RateDecision,
    RateLimiter,
    burst_ceiling,
    rate_decision,
)
from inferno.core.security.stream_slots import LocalStreamSlots, StreamSlot
from inferno.lifecycle import StartupError
from inferno.security_config import SecurityConfig

log = logging.getLogger(__name__)

KEY_PREFIX = "inferno:"
STREAM_LEASE_S = 30.0
_CONNECT_TIMEOUT_S = 5.0
# A Redis call slower than this counts as Redis being unreachable (the request is then limited locally).
_CALL_TIMEOUT_S = 2.0
# At most one "Redis is unreachable" warning this often.
_WARN_EVERY_S = 30.0

# KEYS[1]: the caller's buckets (a hash). ARGV: requests per minute, burst ceiling (0: none).
# Returns {allowed (1 or 0), minute bucket level, burst bucket level} after the request.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local saved = redis.call('HMGET', KEYS[1], 'rate', 'burst_size', 'minute', 'burst', 'updated')
local minute, spare = rate, burst
if tonumber(saved[1]) == rate and tonumber(saved[2]) == burst then
  local elapsed = math.max(0, now - tonumber(saved[5]))
  minute = math.min(rate, tonumber(saved[3]) + elapsed * rate / 60)
  spare = math.min(burst, tonumber(saved[4]) + elapsed * burst)
end
local allowed = minute >= 1 and (burst == 0 or spare >= 1)
if allowed then
  minute = minute - 1
  if burst > 0 then spare = spare - 1 end
end
redis.call('HSET', KEYS[1], 'rate', rate, 'burst_size', burst, 'minute', minute, 'burst', spare,
           'updated', now)
-- Once the buckets are full again the hash says nothing a fresh one would not.
redis.call('PEXPIRE', KEYS[1], math.ceil((rate - minute) * 60000 / rate) + 1000)
return {allowed and 1 or 0, tostring(minute), tostring(spare)}
"""

# KEYS[1]: the caller's open streams (a sorted set: lease -> expiry in ms). ARGV: limit, lease, lease ms.
# Returns 1 when the lease was added, 0 when the caller already has limit streams open.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""

# KEYS[1]: the caller's open streams. ARGV: lease ms, then the leases this core still holds.
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease_ms = tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', now + lease_ms, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], lease_ms)
return 1
"""


class _UnreachableWarning:
    def __init__(self) -> None:
        self._last = float("-inf")

    def __call__(self, what: str, error: Exception) -> None:
        if time.monotonic() - self._last >= _WARN_EVERY_S:
            self._last = time.monotonic()
            log.warning("Redis unreachable (%s); limiting on this core alone: %s", what, error)


_warn_unreachable = _UnreachableWarning()


class RedisRateLimiter:
    """RateLimiter's buckets, in Redis under inferno:rate:<namespace>:<caller>."""

    def __init__(self, client: Redis, namespace: str, per_minute: int, burst: int) -> None:
        self._script = client.register_script(_TAKE)
        self._prefix = f"{KEY_PREFIX}rate:{namespace}:"
        self._per_minute = per_minute
        self._burst = burst
        self._fallback = RateLimiter(per_minute, burst)

    async def take(self, caller: str, per_minute: int | None = None) -> RateDecision:
        rate = per_minute or self._per_minute
        if rate == 0:  # 0 switches rate limiting off
            return RateDecision(True, 0, 0, 0, 0)
        burst = burst_ceiling(self._burst, rate)
        try:
            async with asyncio.timeout(_CALL_TIMEOUT_S):
                allowed, minute, spare = await self._script(keys=[self._prefix + caller], args=[rate, burst])
        except (RedisError, TimeoutError) as error:
            _warn_unreachable("rate limits", error)
            return self._fallback.check(caller, per_minute)
        return rate_decision(rate, burst, bool(int(allowed)), float(minute), float(spare))


class RedisStreamSlots:
    """Open streams per caller, in Redis under inferno:streams:<caller>. Only the event loop calls this."""

    def __init__(self, client: Redis, lease_s: float = STREAM_LEASE_S) -> None:
        self._client = client
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._lease_ms = int(lease_s * 1000)
        # caller -> the leases of this core's open streams, renewed every third of a lease.
        self._held: dict[str, set[str]] = {}
        self._renewer: asyncio.Task[None] | None = None
        self._removals: set[asyncio.Task[None]] = set()
        self._fallback = LocalStreamSlots()

    async def acquire(self, caller: str, limit: int) -> StreamSlot | None:
        lease = secrets.token_hex(8)
        try:
            async with asyncio.timeout(_CALL_TIMEOUT_S):
                added = await self._acquire(keys=[_streams_key(caller)], args=[limit, lease, self._lease_ms])
        except (RedisError, TimeoutError) as error:
            _warn_unreachable("stream counts", error)
            return await self._fallback.acquire(caller, limit)
        if not int(added):
            return None
        self._held.setdefault(caller, set()).add(lease)
        if self._renewer is None:
            self._renewer = asyncio.get_running_loop().create_task(self._renew_leases())
        return StreamSlot(caller, lease)

    def release(self, slot: StreamSlot) -> None:
        if not slot.lease:
            self._fallback.release(slot)
            return
        leases = self._held.get(slot.caller, set())
        leases.discard(slot.lease)
        if not leases:
            self._held.pop(slot.caller, None)
        try:
            removal = asyncio.get_running_loop().create_task(self._remove(slot))
        except RuntimeError:  # no event loop any more (shutdown): the lease expires instead
            return
        self._removals.add(removal)
        removal.add_done_callback(self._removals.discard)

    async def close(self) -> None:
        """Stops renewing and waits for the pending removals (streams still open expire with their lease)."""
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        if self._removals:
            await asyncio.wait(self._removals, timeout=_CALL_TIMEOUT_S)

    async def _remove(self, slot: StreamSlot) -> None:
        try:
            async with asyncio.timeout(_CALL_TIMEOUT_S):
                await self._client.zrem(_streams_key(slot.caller), slot.lease)
        except (RedisError, TimeoutError) as error:
            _warn_unreachable("stream counts", error)

    async def _renew_leases(self) -> None:
        while True:
            await asyncio.sleep(self._lease_ms / 3000)
            for caller, leases in list(self._held.items()):
                try:
                    async with asyncio.timeout(_CALL_TIMEOUT_S):
                        await self._renew(keys=[_streams_key(caller)], args=[self._lease_ms, *leases])
                except (RedisError, TimeoutError) as error:
                    _warn_unreachable("stream counts", error)


def _streams_key(caller: str) -> str:
    return f"{KEY_PREFIX}streams:{caller}"


@dataclass
class SharedLimits:
    """The limits a fleet of cores shares through one Redis: requests per caller, failed authentications per
    address, and open streams per caller."""

    client: Redis
    requests: RedisRateLimiter
    auth_failures: RedisRateLimiter
    streams: RedisStreamSlots

    @classmethod
    async def connect(cls, security: SecurityConfig) -> SharedLimits:
        """Connected to security.redis_url, or StartupError when Redis does not answer."""
        assert security.redis_url
        client = Redis.from_url(
            security.redis_url,
            socket_connect_timeout=_CONNECT_TIMEOUT_S,
            socket_timeout=_CALL_TIMEOUT_S,
            health_check_interval=30,
        )
        try:
            await client.execute_command("PING")
        except RedisError as error:
            await client.aclose()
            raise StartupError(f"cannot connect to Redis (redis_url): {error}") from None
        return cls(
            client,
            RedisRateLimiter(client, "requests", security.rate_limit, security.burst_limit),
            RedisRateLimiter(client, "auth_failures", security.auth_failures_per_minute, 0),
            RedisStreamSlots(client),
        )

    async def close(self) -> None:
        await self.streams.close()
        await self.client.aclose()
