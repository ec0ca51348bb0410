"""X-RateLimit-* headers agree with each other and the seed (Limit 1000, Remaining 999, Reset a Unix time), a
key's own limit behaves as docs/security.md says, and a 429's numbers are JSON numbers."""

from __future__ import annotations

import time

import grpc
import pytest

from inferno.core.security.rate_limiter import RateLimiter
from inferno.v1 import model_service_pb2, model_service_pb2_grpc
from tests.security_fixtures import SecuredServer


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_remaining_counts_down_from_the_per_minute_limit() -> None:
    limiter = RateLimiter(per_minute=1000, burst=100, clock=FakeClock())
    decisions = [limiter.check("a") for _ in range(3)]
    assert [(d.limit, d.remaining) for d in decisions] == [(1000, 999), (1000, 998), (1000, 997)]
    assert dict(decisions[0].headers())["x-ratelimit-remaining"] == "999"


def test_reset_is_the_unix_time_the_bucket_is_full_again() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_minute=6, burst=100, clock=clock)
    for _ in range(3):
        limiter.check("a")
    before = time.time()
    decision = limiter.check("a")  # 2 of 6 left: 4 requests at one per 10 s
    assert before + 40 <= decision.reset_at <= time.time() + 41


def test_the_burst_ceiling_refuses_a_flood_and_keeps_the_minutes_count() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_minute=1000, burst=3, clock=clock)
    decisions = [limiter.check("a") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    refused = decisions[3]
    assert (refused.remaining, refused.retry_after, refused.burst_limit) == (997, 1, 3)
    clock.now = 1 / 3  # one burst request back
    assert limiter.check("a").allowed


def test_a_ceiling_at_or_above_the_limit_never_refuses() -> None:
    limiter = RateLimiter(per_minute=5, burst=5, clock=FakeClock())
    assert [limiter.check("a").burst_limit for _ in range(6)] == [0] * 6


def test_a_fresh_key_sees_the_seeds_countdown(secured: SecuredServer) -> None:
    _, secret = secured.create_key(["inference"])
    with secured.client(secret) as user:
        replies = [user.get("/v1/models") for _ in range(3)]
    assert [r.status_code for r in replies] == [200] * 3
    assert [r.headers["X-RateLimit-Limit"] for r in replies] == ["1000"] * 3
    assert [r.headers["X-RateLimit-Remaining"] for r in replies] == ["999", "998", "997"]
    reset = int(replies[-1].headers["X-RateLimit-Reset"])
    # Three requests at 1000 a minute come back within a second.
    assert time.time() <= reset <= time.time() + 2


def test_a_key_with_rate_limit_5_makes_5_requests_then_waits_12_s(secured: SecuredServer) -> None:
    _, secret = secured.create_key(["inference"], rate_limit=5)
    with secured.client(secret) as user:
        replies = [user.get("/v1/models") for _ in range(6)]
    assert [r.status_code for r in replies] == [200] * 5 + [429]
    assert [r.headers["X-RateLimit-Remaining"] for r in replies] == ["4", "3", "2", "1", "0", "0"]
    assert {r.headers["X-RateLimit-Limit"] for r in replies} == {"5"}
    refused = replies[5]
    retry_after = int(refused.headers["Retry-After"])
    # One request comes back every 12 s; the six requests took a little of that.
    assert 11 <= retry_after <= 12
    error = refused.json()["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert error["details"] == {"limit": 5, "retry_after_s": retry_after}


@pytest.mark.parametrize("secret_of", ["key", "jwt"])
def test_grpc_callers_get_the_same_figures(secured: SecuredServer, secret_of: str) -> None:
    if secret_of == "key":
        secret = secured.create_key(["inference"], rate_limit=5)[1]
    else:
        secret = secured.token(sub=f"rate-{time.time_ns()}")
    metadata = (("authorization", f"Bearer {secret}"),)
    credentials = grpc.ssl_channel_credentials((secured.root / "cert.pem").read_bytes())
    with grpc.secure_channel(secured.server.grpc_target, credentials) as channel:
        models = model_service_pb2_grpc.ModelServiceStub(channel)
        _, call = models.ListModels.with_call(model_service_pb2.ListModelsRequest(), metadata=metadata)
    figures = dict(call.initial_metadata())
    limit = "5" if secret_of == "key" else "1000"
    assert (figures["x-ratelimit-limit"], figures["x-ratelimit-remaining"]) == (limit, str(int(limit) - 1))
    assert int(figures["x-ratelimit-reset"]) >= int(time.time())
