"""AuthService: API keys (create, list, revoke) and the caller's identity."""

from __future__ import annotations

import grpc

from inferno.core.security.keystore import KeyStore, StoredKey, check_permissions, parse_expires_in
from inferno.core.security.principal import CURRENT_PRINCIPAL
from inferno.errors import InfernoError
from inferno.v1 import auth_service_pb2 as pb
from inferno.v1 import auth_service_pb2_grpc


def _key_message(key: StoredKey) -> pb.ApiKey:
    message = pb.ApiKey(
        key_id=key.key_id,
        name=key.name,
        prefix=key.prefix,
        permissions=list(key.permissions),
        created=int(key.created),
        expires=int(key.expires or 0),
        last_used=int(key.last_used or 0),
        revoked=int(key.revoked or 0),
    )
    if key.rate_limit is not None:
        message.rate_limit = key.rate_limit
    return message


class AuthServicer(auth_service_pb2_grpc.AuthServiceServicer):
    def __init__(self, keys: KeyStore | None) -> None:
        self._keys = keys

    def _store(self) -> KeyStore:
        if self._keys is None:
            raise InfernoError(
                "invalid_parameters",
                "API keys are not enabled: set api_keys = true in [security] of inferno.toml",
            )
        return self._keys

    async def CreateApiKey(
        self, request: pb.CreateApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateApiKeyResponse:
        key, secret = self._store().create(
            request.name,
            check_permissions(list(request.permissions)),
            parse_expires_in(request.expires_in),
            request.rate_limit if request.HasField("rate_limit") else None,
        )
        return pb.CreateApiKeyResponse(key=_key_message(key), api_key=secret)

    async def ListApiKeys(
        self, request: pb.ListApiKeysRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListApiKeysResponse:
        return pb.ListApiKeysResponse(keys=[_key_message(k) for k in self._store().list()])

    async def RevokeApiKey(
        self, request: pb.RevokeApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.RevokeApiKeyResponse:
        return pb.RevokeApiKeyResponse(key=_key_message(self._store().revoke(request.key_id)))

    async def GetCurrentUser(
        self, request: pb.GetCurrentUserRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetCurrentUserResponse:
        principal = CURRENT_PRINCIPAL.get()
        if principal is None:
            raise InfernoError("authentication_failed", "Invalid or missing credentials")
        return pb.GetCurrentUserResponse(
            user_id=principal.user_id,
            username=principal.username,
            role=principal.role,
            permissions=sorted(principal.permissions),
            api_keys=self._keys.active_count() if self._keys is not None else 0,
            last_login=int(principal.last_login or 0),
            method=principal.method,
        )
