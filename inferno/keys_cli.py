"""`inferno keys create|list|revoke`: on the key database directly, or through a running core's
AuthService."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from typing import TextIO

import grpc

from inferno.core_channel import sync_channel
from inferno.errors import InfernoError, error_from_rpc
from inferno.security_config import SecurityConfig
from inferno.v1 import auth_service_pb2 as pb
from inferno.v1 import auth_service_pb2_grpc


def run_keys_command(
    action: str,
    argument: str | None,
    permissions: str,
    expires_in: str,
    rate_limit: int | None,
    security: SecurityConfig,
    core: str | None,
    out: TextIO = sys.stdout,
) -> int:
    try:
        if core is None:
            _on_database(action, argument, permissions, expires_in, rate_limit, security, out)
        else:
            _on_server(action, argument, permissions, expires_in, rate_limit, security, core, out)
    except InfernoError as error:
        print(f"inferno keys {action}: {error.code}: {error.message}", file=sys.stderr)
        return 1
    return 0


def _on_database(
    action: str,
    argument: str | None,
    permissions: str,
    expires_in: str,
    rate_limit: int | None,
    security: SecurityConfig,
    out: TextIO,
) -> None:
    from inferno.core.security.keystore import KeyStore, check_permissions, parse_expires_in

    store = KeyStore(security.data_dir)
    try:
        if action == "create":
            key, secret = store.create(
                _required(argument, "a name"),
                check_permissions(permissions.split(",")),
                parse_expires_in(expires_in),
                rate_limit,
            )
            out.write(f"{key.key_id}\n{secret}\n")
            out.write("Keep the secret: it is not shown again.\n")
        elif action == "list":
            _table(
                out,
                [
                    (k.key_id, k.name, k.prefix, ",".join(k.permissions), k.expires, k.last_used, k.revoked)
                    for k in store.list()
                ],
            )
        else:
            store.revoke(_required(argument, "a key id"))
            out.write(f"revoked {argument}\n")
    finally:
        store.close()


def _on_server(
    action: str,
    argument: str | None,
    permissions: str,
    expires_in: str,
    rate_limit: int | None,
    security: SecurityConfig,
    core: str,
    out: TextIO,
) -> None:
    admin_key = security.admin_key or os.environ.get("INFERNO_API_KEY")
    metadata = (("authorization", f"Bearer {admin_key}"),) if admin_key else ()
    with sync_channel(core, security) as channel:
        stub = auth_service_pb2_grpc.AuthServiceStub(channel)
        try:
            if action == "create":
                request = pb.CreateApiKeyRequest(
                    name=_required(argument, "a name"),
                    permissions=permissions.split(","),
                    expires_in=expires_in,
                )
                if rate_limit is not None:
                    request.rate_limit = rate_limit
                reply = stub.CreateApiKey(request, metadata=metadata)
                out.write(f"{reply.key.key_id}\n{reply.api_key}\nKeep the secret: it is not shown again.\n")
            elif action == "list":
                keys = stub.ListApiKeys(pb.ListApiKeysRequest(), metadata=metadata).keys
                rows = [
                    (k.key_id, k.name, k.prefix, ",".join(k.permissions), k.expires, k.last_used, k.revoked)
                    for k in keys
                ]
                _table(out, rows)
            else:
                stub.RevokeApiKey(
                    pb.RevokeApiKeyRequest(key_id=_required(argument, "a key id")), metadata=metadata
                )
                out.write(f"revoked {argument}\n")
        except grpc.RpcError as error:
            raise error_from_rpc(error) from None


def _required(value: str | None, what: str) -> str:
    if not value:
        raise InfernoError("invalid_parameters", f"this action needs {what}")
    return value


def _table(
    out: TextIO, rows: list[tuple[str, str, str, str, float | None, float | None, float | None]]
) -> None:
    out.write(
        f"{'KEY ID':22} {'NAME':20} {'PREFIX':14} {'PERMISSIONS':30} {'EXPIRES':20} {'LAST USED':20} "
        "REVOKED\n"
    )
    for key_id, name, prefix, permissions, expires, last_used, revoked in rows:
        out.write(
            f"{key_id:22} {name[:20]:20} {prefix:14} {permissions[:30]:30} {_when(expires):20} "
            f"{_when(last_used):20} {_when(revoked)}\n"
        )


def _when(timestamp: float | None) -> str:
    if not timestamp:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
