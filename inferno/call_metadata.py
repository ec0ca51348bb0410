"""gRPC metadata keys the gateway sends the core, besides "authorization", and the one rule for believing
the client address it forwards."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

# The HTTP client's address: the core rate-limits unauthenticated callers (and counts failed
# authentications) by it.
CLIENT_ADDRESS_METADATA = "x-inferno-client-address"
# HMAC-SHA256 of that address under [security] hop_secret, which the gateways and the cores share. Any caller
# can send an address; the core believes only one signed with the secret (a client that reaches the core,
# through Envoy or not, could otherwise claim a new address for each request and dodge those limits).
CLIENT_ADDRESS_MAC_METADATA = "x-inferno-client-address-mac"


def _mac(secret: str, address: str) -> str:
    return hmac.new(secret.encode(), address.encode(), hashlib.sha256).hexdigest()


def signed_client_address(address: str, secret: str | None) -> tuple[tuple[str, str], ...]:
    """The metadata that forwards address; unsigned (and so not believed) without a secret."""
    if not secret:
        return ((CLIENT_ADDRESS_METADATA, address),)
    return ((CLIENT_ADDRESS_METADATA, address), (CLIENT_ADDRESS_MAC_METADATA, _mac(secret, address)))


def trusted_client_address(metadata: Mapping[str, str], secret: str | None) -> str | None:
    """The forwarded client address when a holder of the secret signed it; None otherwise."""
    address = metadata.get(CLIENT_ADDRESS_METADATA)
    mac = metadata.get(CLIENT_ADDRESS_MAC_METADATA)
    if not secret or not address or not mac:
        return None
    return address if hmac.compare_digest(mac, _mac(secret, address)) else None


def peer_address(peer: str) -> str:
    """ipv4:127.0.0.1:5432 -> 127.0.0.1; ipv6:[::1]:5432 -> ::1."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    return peer
