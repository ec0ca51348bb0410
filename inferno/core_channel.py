"""How a client reaches the core: plain gRPC on loopback, or TLS when [security] has a certificate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from inferno.security_config import SecurityConfig

ChannelOptions = Sequence[tuple[str, Any]]


def channel_credentials(security: SecurityConfig) -> grpc.ChannelCredentials | None:
    """Credentials trusting tls_ca (or the server's own certificate, for a self-signed one); None: plain."""
    if not security.tls_enabled:
        return None
    ca = security.tls_ca or security.tls_cert
    assert ca is not None
    return grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())


def sync_channel(address: str, security: SecurityConfig, options: ChannelOptions = ()) -> grpc.Channel:
    credentials = channel_credentials(security)
    if credentials is None:
        return grpc.insecure_channel(address, options=list(options))
    return grpc.secure_channel(address, credentials, options=list(options))


def aio_channel(address: str, security: SecurityConfig, options: ChannelOptions = ()) -> grpc.aio.Channel:
    credentials = channel_credentials(security)
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=list(options))
    return grpc.aio.secure_channel(address, credentials, options=list(options))
