"""What each RPC needs: the one table the core's auth interceptor enforces and the gateway's routes inherit
(every REST and WebSocket action is a call of one of these RPCs)."""

from __future__ import annotations

from enum import Enum


class Permission(Enum):
    INFERENCE = "inference"
    MODEL_MANAGEMENT = "model_management"
    ADMIN = "admin"


# Grants every permission.
ALL_PERMISSIONS = "*"
PERMISSION_NAMES = frozenset({*(p.value for p in Permission), ALL_PERMISSIONS})


class Access(Enum):
    # No credentials needed (health checks, server status for /health).
    PUBLIC = "public"
    # Any valid credentials.
    AUTHENTICATED = "authenticated"


Requirement = Permission | Access

_INFERENCE = "/inferno.v1.InferenceService/"
_MODELS = "/inferno.v1.ModelService/"
_ADMIN = "/inferno.v1.AdminService/"
_AUTH = "/inferno.v1.AuthService/"
_CONVERT = "/inferno.v1.ConversionService/"
_RESPONSES = "/inferno.v1.ResponseService/"

RPC_REQUIREMENTS: dict[str, Requirement] = {
    _INFERENCE + "CreateChatCompletion": Permission.INFERENCE,
    _INFERENCE + "StreamChatCompletion": Permission.INFERENCE,
    _INFERENCE + "CreateCompletion": Permission.INFERENCE,
    _INFERENCE + "StreamCompletion": Permission.INFERENCE,
    _INFERENCE + "CreateBatch": Permission.INFERENCE,
    _INFERENCE + "Tokenize": Permission.INFERENCE,
    _INFERENCE + "Detokenize": Permission.INFERENCE,
    _INFERENCE + "GetTokenizerInfo": Permission.INFERENCE,
    _INFERENCE + "CreateEmbeddings": Permission.INFERENCE,
    _MODELS + "ListModels": Permission.INFERENCE,
    _MODELS + "GetModel": Permission.INFERENCE,
    _MODELS + "GetModelStatus": Permission.INFERENCE,
    _MODELS + "LoadModel": Permission.MODEL_MANAGEMENT,
    _MODELS + "UnloadModel": Permission.MODEL_MANAGEMENT,
    _MODELS + "WatchModels": Permission.MODEL_MANAGEMENT,
    _ADMIN + "GetServerStatus": Access.PUBLIC,
    _ADMIN + "GetMetrics": Permission.ADMIN,
    _AUTH + "CreateApiKey": Permission.ADMIN,
    _AUTH + "ListApiKeys": Permission.ADMIN,
    _AUTH + "RevokeApiKey": Permission.ADMIN,
    _AUTH + "GetCurrentUser": Access.AUTHENTICATED,
    _CONVERT + "CreateConversionJob": Permission.MODEL_MANAGEMENT,
    _CONVERT + "GetConversionJob": Permission.MODEL_MANAGEMENT,
    _CONVERT + "ListConversionJobs": Permission.MODEL_MANAGEMENT,
    _CONVERT + "CancelConversionJob": Permission.MODEL_MANAGEMENT,
    # Stored responses are the caller's own (the service checks the owner): inference is enough.
    _RESPONSES + "CreateResponse": Permission.INFERENCE,
    _RESPONSES + "StreamResponse": Permission.INFERENCE,
    _RESPONSES + "GetResponse": Permission.INFERENCE,
    _RESPONSES + "DeleteResponse": Permission.INFERENCE,
    _RESPONSES + "ListResponseInputItems": Permission.INFERENCE,
    _RESPONSES + "CancelResponse": Permission.INFERENCE,
    "/grpc.health.v1.Health/Check": Access.PUBLIC,
    "/grpc.health.v1.Health/Watch": Access.PUBLIC,
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": Access.PUBLIC,
}

# Called by load balancers, supervisors and scrapers every few seconds (GET /health is Check plus
# GetServerStatus, GET /metrics is GetMetrics): never rate limited, never counted against a caller's limit.
UNLIMITED_RPCS = frozenset(
    {
        _ADMIN + "GetServerStatus",
        _ADMIN + "GetMetrics",
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    }
)


def requirement_of(method: str) -> Requirement:
    """Unknown methods need admin: a new RPC is closed until the table says otherwise."""
    return RPC_REQUIREMENTS.get(method, Permission.ADMIN)


def grants(held: frozenset[str], needed: Requirement) -> bool:
    if isinstance(needed, Access):
        return True
    return ALL_PERMISSIONS in held or needed.value in held
