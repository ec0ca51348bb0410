"""The token bucket and the request limits, on their own (deterministic clock)."""

from __future__ import annotations

import pytest

from inferno.core.security.rate_limiter import RateLimiter
from inferno.core.validation import RequestLimits
from inferno.errors import InfernoError
from inferno.security_config import SecurityConfig, load_security_config
from inferno.v1 import common_pb2


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_caller_may_spend_its_minute_at_once_then_one_per_sixtieth() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_minute=5, burst=100, clock=clock)
    decisions = [limiter.check("a") for _ in range(6)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0, 0]
    assert decisions[5].retry_after == 12
    assert limiter.check("b").allowed  # buckets are per caller
    clock.now = 11.9
    assert not limiter.check("a").allowed
    clock.now = 12.0  # exactly when Retry-After said
    assert limiter.check("a").allowed and not limiter.check("a").allowed


def test_a_keys_own_rate_is_its_whole_bucket() -> None:
    limiter = RateLimiter(per_minute=1000, burst=100, clock=FakeClock())
    assert sum(limiter.check("k", per_minute=5).allowed for _ in range(10)) == 5
    assert sum(limiter.check("m", per_minute=60).allowed for _ in range(100)) == 60


def test_rate_limit_0_switches_limiting_off() -> None:
    limiter = RateLimiter(per_minute=0, burst=0, clock=FakeClock())
    assert all(limiter.check("a").allowed for _ in range(1000))


def test_request_limits() -> None:
    limits = RequestLimits(max_messages=2, max_prompt_tokens=10, max_tokens_cap=5)
    limits.check_message_count(2)
    with pytest.raises(InfernoError) as caught:
        limits.check_message_count(3)
    assert caught.value.details == {"param": "messages"}
    with pytest.raises(InfernoError) as caught:
        limits.check_prompt_length(11, "prompt[0]")
    assert caught.value.code == "request_too_large" and caught.value.details["param"] == "prompt[0]"
    assert limits.cap(common_pb2.GenerationLimits()).max_tokens == 5
    with pytest.raises(InfernoError):
        limits.cap(common_pb2.GenerationLimits(max_tokens=6))


def test_batch_cap_refuses_more_items_naming_requests() -> None:
    limits = RequestLimits(max_batch_items=3)
    limits.check_batch_size(3)
    with pytest.raises(InfernoError) as caught:
        limits.check_batch_size(4)
    assert caught.value.code == "invalid_parameters" and caught.value.details == {"param": "requests"}
    RequestLimits(max_batch_items=0).check_batch_size(100_000)  # 0: no cap


def test_request_limits_come_from_the_security_config(monkeypatch: pytest.MonkeyPatch) -> None:
    assert RequestLimits.from_security(SecurityConfig()) == RequestLimits()
    monkeypatch.setenv("INFERNO_MAX_BATCH_ITEMS", "8")
    limits = RequestLimits.from_security(load_security_config(None))
    assert limits.max_batch_items == 8
