"""How a client reaches the core: plain gRPC on loopback, or TLS when [security] has a certificate; and how
a CLI command names itself on its calls."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from inferno.security_config import SecurityConfig

ChannelOptions = Sequence[tuple[str, Any]]
Metadata = tuple[tuple[str, str], ...]

# gRPC metadata (and, on the gateway, HTTP header) naming the `inferno` command a call is made for, e.g.
# "models list": the core counts and times such calls (inferno_command_total, inferno_command_duration_ms).
COMMAND_METADATA = "x-inferno-command"
# The `inferno` commands that call a running server (the `models` and `keys` actions of the CLI): the only
# command label values, besides "other", so a client cannot grow the metrics without bound.
SERVER_COMMANDS = (
    "models list",
    "models load",
    "models unload",
    "models status",
    "keys create",
    "keys list",
    "keys revoke",
)
OTHER_COMMAND = "other"


def command_metadata(command: str) -> Metadata:
    """The metadata a CLI command sends with each call to the core, so the core can count it."""
    return ((COMMAND_METADATA, command),)


def command_label(value: str) -> str:
    """The metrics label for a command a caller named: one of SERVER_COMMANDS, else "other"."""
    command = " ".join(value.lower().split())
    return command if command in SERVER_COMMANDS else OTHER_COMMAND


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
