"""Binding a grpc.aio server's port, the same way for the core and the gateway's relay."""

from __future__ import annotations

import grpc

from inferno.lifecycle import StartupError, check_port_free
from inferno.security_config import SecurityConfig


def bind_grpc_port(
    server: grpc.aio.Server, host: str, port: int, security: SecurityConfig, what: str
) -> None:
    """Listen on host:port (TLS when [security] has a certificate), or raise StartupError naming the port."""
    check_port_free(host, port, what)
    address = f"{host}:{port}"
    try:
        if security.tls_enabled:
            assert security.tls_cert is not None and security.tls_key is not None
            credentials = grpc.ssl_server_credentials(
                [(security.tls_key.read_bytes(), security.tls_cert.read_bytes())]
            )
            bound = server.add_secure_port(address, credentials)
        else:
            bound = server.add_insecure_port(address)
    except RuntimeError:  # grpcio raises where older versions returned 0
        bound = 0
    if bound == 0:
        raise StartupError(f"{what} port {port} on {host} is already in use or cannot be bound")
