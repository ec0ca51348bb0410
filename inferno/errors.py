"""The one table of error codes: each code's gRPC status, HTTP status and OpenAI error type.

The core raises `InfernoError`; its gRPC interceptor turns it into a status with a `google.rpc.ErrorInfo`
whose reason is the code. The adapter reads the reason back and renders the seed's error body.
docs/errors.md explains each HTTP status; tests/test_error_table.py keeps it equal to this table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

ERROR_DOMAIN = "inferno.v1"


@dataclass(frozen=True)
class ErrorKind:
    grpc_status: grpc.StatusCode
    http_status: int
    error_type: str


# HTTP statuses stay within the seed's table (200, 201, 400, 401, 403, 404, 429, 500, 503) except 405 (a wrong
# method, which must carry Allow) and 413 (a body or prompt over a configured size, which HTTP clients and
# proxies recognise). docs/errors.md says why each code has its status.
ERROR_KINDS: dict[str, ErrorKind] = {
    "invalid_json": ErrorKind(grpc.StatusCode.INVALID_ARGUMENT, 400, "invalid_request_error"),
    "invalid_parameters": ErrorKind(grpc.StatusCode.INVALID_ARGUMENT, 400, "invalid_request_error"),
    "request_too_large": ErrorKind(grpc.StatusCode.INVALID_ARGUMENT, 413, "invalid_request_error"),
    "context_length_exceeded": ErrorKind(grpc.StatusCode.INVALID_ARGUMENT, 400, "invalid_request_error"),
    "model_not_found": ErrorKind(grpc.StatusCode.NOT_FOUND, 404, "invalid_request_error"),
    "not_found": ErrorKind(grpc.StatusCode.NOT_FOUND, 404, "invalid_request_error"),
    "method_not_allowed": ErrorKind(grpc.StatusCode.UNIMPLEMENTED, 405, "invalid_request_error"),
    # The client must load the model first: a request error that retrying as is cannot fix.
    "model_not_loaded": ErrorKind(grpc.StatusCode.FAILED_PRECONDITION, 400, "invalid_request_error"),
    "authentication_failed": ErrorKind(grpc.StatusCode.UNAUTHENTICATED, 401, "authentication_error"),
    "permission_denied": ErrorKind(grpc.StatusCode.PERMISSION_DENIED, 403, "permission_error"),
    "rate_limit_exceeded": ErrorKind(grpc.StatusCode.RESOURCE_EXHAUSTED, 429, "rate_limit_error"),
    # The server lacks memory for the model now; unloading another model (or a larger budget) fixes it.
    "insufficient_memory": ErrorKind(grpc.StatusCode.RESOURCE_EXHAUSTED, 503, "server_error"),
    "gpu_unavailable": ErrorKind(grpc.StatusCode.FAILED_PRECONDITION, 503, "server_error"),
    "model_not_ready": ErrorKind(grpc.StatusCode.UNAVAILABLE, 503, "service_unavailable"),
    "server_overloaded": ErrorKind(grpc.StatusCode.RESOURCE_EXHAUSTED, 503, "service_unavailable"),
    "core_unavailable": ErrorKind(grpc.StatusCode.UNAVAILABLE, 503, "service_unavailable"),
    # The model file is missing, corrupt or not a model llama.cpp can run.
    "model_load_failed": ErrorKind(grpc.StatusCode.FAILED_PRECONDITION, 500, "server_error"),
    "internal_error": ErrorKind(grpc.StatusCode.INTERNAL, 500, "internal_error"),
}

# A gRPC status that arrives without ErrorInfo (from a proxy, a deadline, a crash) still maps to a code.
_CODE_FOR_BARE_STATUS: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.INVALID_ARGUMENT: "invalid_parameters",
    grpc.StatusCode.NOT_FOUND: "not_found",
    grpc.StatusCode.UNAUTHENTICATED: "authentication_failed",
    grpc.StatusCode.PERMISSION_DENIED: "permission_denied",
    # The core's own rate limits always send an ErrorInfo; a bare RESOURCE_EXHAUSTED is gRPC refusing a
    # message or metadata over its size limits. 413, which a client that retries on 429 will not loop on.
    grpc.StatusCode.RESOURCE_EXHAUSTED: "request_too_large",
    grpc.StatusCode.UNAVAILABLE: "core_unavailable",
    grpc.StatusCode.DEADLINE_EXCEEDED: "core_unavailable",
}

# Detail keys whose values are numbers. ErrorInfo metadata holds only strings, so the core writes these as
# strings and the error body renders them as JSON numbers; any other key stays a string even when it looks
# like a number (a `param` named "0").
NUMERIC_DETAILS = frozenset(
    {
        "budget_bytes",
        "burst_limit",
        "context_length",
        "in_use_bytes",
        "index",
        "limit",
        "max_concurrent_streams",
        "max_prompt_tokens",
        "max_tokens",
        "prompt_tokens",
        "required_bytes",
        "retry_after_s",
        "tokens",
        "ws_messages_per_second",
    }
)


@dataclass
class InfernoError(Exception):
    """An error with a code from ERROR_KINDS, a human message and structured details.

    details values are strings or lists of strings so they fit ErrorInfo metadata; values of the keys in
    NUMERIC_DETAILS are numbers written as strings, and the error body shows them as numbers.
    """

    code: str
    message: str
    details: dict[str, str | list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.code not in ERROR_KINDS:
            raise ValueError(f"unknown error code {self.code!r}")
        super().__init__(self.message)

    @property
    def kind(self) -> ErrorKind:
        return ERROR_KINDS[self.code]

    def to_body(self) -> dict[str, object]:
        """The seed's error body: {"error": {"type", "code", "message", "details"}}, plus OpenAI's `param`
        (the field at fault, also in details.param; null when none), which OpenAI's schema requires."""
        param = self.details.get("param")
        return {
            "error": {
                "type": self.kind.error_type,
                "code": self.code,
                "message": self.message,
                "param": param if isinstance(param, str) else None,
                "details": {key: _rendered(key, value) for key, value in self.details.items()},
            }
        }

    def details_as_metadata(self) -> dict[str, str]:
        """details flattened to strings, as ErrorInfo metadata holds them (details_from_metadata inverts)."""
        return {
            (key + "[]" if isinstance(value, list) else key): (
                "\n".join(value) if isinstance(value, list) else value
            )
            for key, value in self.details.items()
        }

    def to_grpc_status(self) -> status_pb2.Status:
        info = error_details_pb2.ErrorInfo(reason=self.code, domain=ERROR_DOMAIN)
        info.metadata.update(self.details_as_metadata())
        status = status_pb2.Status(code=self.kind.grpc_status.value[0], message=self.message)
        status.details.add().Pack(info)
        return status


def _rendered(key: str, value: str | list[str]) -> str | int | float | list[str]:
    if isinstance(value, list):
        return list(value)
    return _number(value) if key in NUMERIC_DETAILS else value


def _number(text: str) -> str | int | float:
    """The number "12" or "0.5" spells; text that is not a finite number stays as it is."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


def invalid_param(param: str, message: str) -> InfernoError:
    """A 400 invalid_parameters error naming the offending field."""
    return InfernoError("invalid_parameters", message, {"param": param})


def error_from_rpc(error: grpc.aio.AioRpcError | grpc.RpcError) -> InfernoError:
    """Rebuild the InfernoError a core raised from the status it sent."""
    try:
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
    except ValueError:  # gRPC replaced the core's status (its trailers were over the metadata limit)
        status = None
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                if info.reason in ERROR_KINDS:
                    return InfernoError(info.reason, status.message, details_from_metadata(info.metadata))
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    message = error.details() if hasattr(error, "details") else str(error)
    return InfernoError(_CODE_FOR_BARE_STATUS.get(code, "internal_error"), message or "core error")


def details_from_metadata(metadata: object) -> dict[str, str | list[str]]:
    details: dict[str, str | list[str]] = {}
    for key, value in dict(metadata).items():  # type: ignore[call-overload]
        if key.endswith("[]"):
            details[key[:-2]] = value.split("\n") if value else []
        else:
            details[key] = value
    return details
