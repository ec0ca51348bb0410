"""`inferno keys create|list|revoke`: on the key database directly (SQLite in the data directory, or
database_url's PostgreSQL), or through a running core's AuthService."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

import grpc

from inferno.core_channel import command_metadata, sync_channel
from inferno.errors import InfernoError, error_from_rpc
from inferno.security_config import SecurityConfig
from inferno.v1 import auth_service_pb2 as pb
from inferno.v1 import auth_service_pb2_grpc


@dataclass(frozen=True)
class KeyCommand:
    action: str
    # create: the key's name; revoke: its id.
    argument: str | None
    # Comma-separated.
    permissions: str
    expires_in: str
    rate_limit: int | None


def run_keys_command(
    command: KeyCommand, security: SecurityConfig, core: str | None, out: TextIO = sys.stdout
) -> int:
    try:
        if core is None:
            _on_database(command, security, out)
        else:
            _on_server(command, security, core, out)
    except InfernoError as error:
        message = error.message
        if core is not None and error.code in _ADMIN_KEY_CODES:
            message = f"{message}; {_ADMIN_KEY_HINT}"
        print(f"inferno keys {command.action}: {error.code}: {message}", file=sys.stderr)
        return 1
    return 0


# A running core manages keys only for its admin key (or a key with the admin permission).
_ADMIN_KEY_CODES = ("authentication_failed", "permission_denied")
_ADMIN_KEY_HINT = (
    "set INFERNO_ADMIN_KEY to the server's admin key (or admin_key_file in [security] of the --config file)"
)


def _on_database(command: KeyCommand, security: SecurityConfig, out: TextIO) -> None:
    from inferno.core.database.open import open_database
    from inferno.core.security.keystore import KeyStore, check_permissions, parse_expires_in

    database = open_database(security.database_url, security.data_dir)
    store = KeyStore(database)
    try:
        if command.action == "create":
            key, secret = store.create(
                _required(command.argument, "a name"),
                check_permissions(command.permissions.split(",")),
                parse_expires_in(command.expires_in),
                command.rate_limit,
            )
            _created(out, key.key_id, secret)
        elif command.action == "list":
            _table(out, store.list())
        else:
            store.revoke(_required(command.argument, "a key id"))
            out.write(f"revoked {command.argument}\n")
    finally:
        store.close()
        database.close()


def _on_server(command: KeyCommand, security: SecurityConfig, core: str, out: TextIO) -> None:
    admin_key = security.admin_key or os.environ.get("INFERNO_API_KEY")
    credentials = (("authorization", f"Bearer {admin_key}"),) if admin_key else ()
    metadata = (*credentials, *command_metadata(f"keys {command.action}"))
    with sync_channel(core, security) as channel:
        stub = auth_service_pb2_grpc.AuthServiceStub(channel)
        try:
            if command.action == "create":
                request = pb.CreateApiKeyRequest(
                    name=_required(command.argument, "a name"),
                    permissions=command.permissions.split(","),
                    expires_in=command.expires_in,
                )
                if command.rate_limit is not None:
                    request.rate_limit = command.rate_limit
                reply = stub.CreateApiKey(request, metadata=metadata)
                _created(out, reply.key.key_id, reply.api_key)
            elif command.action == "list":
                _table(out, stub.ListApiKeys(pb.ListApiKeysRequest(), metadata=metadata).keys)
            else:
                key_id = _required(command.argument, "a key id")
                stub.RevokeApiKey(pb.RevokeApiKeyRequest(key_id=key_id), metadata=metadata)
                out.write(f"revoked {key_id}\n")
        except grpc.RpcError as error:
            raise error_from_rpc(error) from None


def _required(value: str | None, what: str) -> str:
    if not value:
        raise InfernoError("invalid_parameters", f"this action needs {what}")
    return value


def _created(out: TextIO, key_id: str, secret: str) -> None:
    out.write(f"{key_id}\n{secret}\nKeep the secret: it is not shown again.\n")


def _table(out: TextIO, keys: Iterable[Any]) -> None:
    """Keys from the store or from ListApiKeys: both have these fields (times may be None or 0 for never)."""
    out.write(
        f"{'KEY ID':22} {'NAME':20} {'PREFIX':14} {'PERMISSIONS':30} {'EXPIRES':20} {'LAST USED':20} "
        "REVOKED\n"
    )
    for key in keys:
        permissions = ",".join(key.permissions)
        out.write(
            f"{key.key_id:22} {key.name[:20]:20} {key.prefix:14} {permissions[:30]:30} "
            f"{_when(key.expires):20} {_when(key.last_used):20} {_when(key.revoked)}\n"
        )


def _when(timestamp: float | None) -> str:
    if not timestamp:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
