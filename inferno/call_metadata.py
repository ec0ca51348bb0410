"""gRPC metadata keys the gateway sends the core, besides "authorization"."""

from __future__ import annotations

# The HTTP client's address: the core rate-limits unauthenticated callers by it.
CLIENT_ADDRESS_METADATA = "x-inferno-client-address"
