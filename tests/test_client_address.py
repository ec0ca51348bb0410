"""The client address the core counts failed authentications (and unauthenticated rates) by: the one the
gateway forwards, signed with the secret the two share (`inferno serve` makes one), never one a caller
claims. Real `inferno serve`, real gateway, real gRPC."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from inferno.call_metadata import CLIENT_ADDRESS_MAC_METADATA, CLIENT_ADDRESS_METADATA
from inferno.v1 import model_service_pb2, model_service_pb2_grpc
from tests.fleet_helpers import envoy_in_front_of
from tests.servers import RunningServer, running_inferno
from tests.tools import require_tool

WRONG_KEY = "Bearer sk-inf-wrong"
# API keys on, and the fourth failure from one address in a minute refused with 429.
LOCKOUT_ENV = {
    "INFERNO_API_KEYS": "true",
    "INFERNO_ADMIN_KEY": "an-admin-key-for-the-address-tests",
    "INFERNO_AUTH_FAILURES_PER_MINUTE": "3",
}


@pytest.fixture(scope="module")
def secured() -> Iterator[RunningServer]:
    with running_inferno(env=LOCKOUT_ENV) as running:
        yield running


def _http_wrong_key_from(base_url: str, source: str, forwarded_for: str | None = None) -> int:
    headers = {"Authorization": WRONG_KEY}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    with httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=30) as client:
        return client.get(base_url + "/v1/models", headers=headers).status_code


def _grpc_wrong_key_claiming(server: RunningServer, address: str) -> grpc.StatusCode:
    """A direct call to the core from 127.0.0.1 that claims another address, with a made-up signature."""
    metadata = (
        ("authorization", WRONG_KEY),
        (CLIENT_ADDRESS_METADATA, address),
        (CLIENT_ADDRESS_MAC_METADATA, "0" * 64),
    )
    with grpc.insecure_channel(server.grpc_target) as channel:
        try:
            model_service_pb2_grpc.ModelServiceStub(channel).ListModels(
                model_service_pb2.ListModelsRequest(), metadata=metadata, timeout=30
            )
        except grpc.RpcError as error:
            return error.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def test_failures_count_against_the_address_the_gateway_signs_never_one_a_caller_claims(
    secured: RunningServer,
) -> None:
    # Through the gateway from 127.0.0.2: that address's three failures, then 429.
    assert [_http_wrong_key_from(secured.base_url, "127.0.0.2") for _ in range(4)] == [401, 401, 401, 429]
    # The gateway itself reaches the core from 127.0.0.1, whose count is untouched: the core believed the
    # address the gateway signed. A caller from 127.0.0.1 that claims a new address each time is counted
    # as 127.0.0.1 all the same.
    claimed = [_grpc_wrong_key_claiming(secured, f"10.0.0.{n}") for n in range(4)]
    unauthenticated, exhausted = grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED
    assert claimed == [unauthenticated] * 3 + [exhausted]


@pytest.fixture(scope="module")
def behind_a_proxy() -> Iterator[RunningServer]:
    """The gateway trusts 127.0.0.3 as a proxy (Envoy, say) and takes the client from its X-Forwarded-For."""
    with running_inferno(env={**LOCKOUT_ENV, "INFERNO_TRUSTED_PROXIES": "127.0.0.3"}) as running:
        yield running


def test_behind_a_trusted_proxy_failures_count_against_the_forwarded_client(
    behind_a_proxy: RunningServer,
) -> None:
    # Through the proxy, each client has its own count: one locked out does not lock out the next.
    locked = [_http_wrong_key_from(behind_a_proxy.base_url, "127.0.0.3", "198.51.100.7") for _ in range(4)]
    assert locked == [401, 401, 401, 429]
    assert _http_wrong_key_from(behind_a_proxy.base_url, "127.0.0.3", "198.51.100.8") == 401
    # From anywhere else the header is a claim: 127.0.0.4 is counted as itself whatever it forwards.
    claims = [
        _http_wrong_key_from(behind_a_proxy.base_url, "127.0.0.4", f"198.51.100.{n}") for n in range(20, 24)
    ]
    assert claims == [401, 401, 401, 429]


def test_through_envoy_each_client_behind_it_has_its_own_count(tmp_path: Path) -> None:
    """The generated Envoy config appends each caller's address to X-Forwarded-For, and a gateway that
    trusts Envoy counts failures against it: clients behind one Envoy do not lock each other out."""
    envoy_bin = require_tool("envoy", "ENVOY")
    with (
        running_inferno(env={**LOCKOUT_ENV, "INFERNO_TRUSTED_PROXIES": "127.0.0.1"}) as server,
        envoy_in_front_of(envoy_bin, server, tmp_path / "envoy.log") as envoy,
    ):
        locked = [_http_wrong_key_from(envoy.base_url, "127.0.0.5") for _ in range(4)]
        assert locked == [401, 401, 401, 429]
        assert _http_wrong_key_from(envoy.base_url, "127.0.0.6") == 401
