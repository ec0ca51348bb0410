"""Lower-case names of the ModelState, LoadPhase and ConversionStatus enums, as REST, WebSocket and the CLI
show them, and the longest model id a request may name."""

from __future__ import annotations

from inferno.v1 import conversion_service_pb2, model_service_pb2

# Catalog ids are short; a longer one cannot name a model, and echoing it back in an error would pass gRPC's
# metadata limit (which turns the error into a bare RESOURCE_EXHAUSTED). The core refuses a longer `model`
# with invalid_parameters; the gateway leaves one out of its routing metadata.
MAX_MODEL_ID_CHARS = 512


def state_name(state: int) -> str:
    """MODEL_STATE_LOADED -> "loaded"; values this build does not know -> "unknown"."""
    return _name(model_service_pb2.ModelState, state, "MODEL_STATE_")


def phase_name(phase: int) -> str:
    """LOAD_PHASE_READING_WEIGHTS -> "reading_weights"."""
    return _name(model_service_pb2.LoadPhase, phase, "LOAD_PHASE_")


def conversion_status_name(status: int) -> str:
    """CONVERSION_STATUS_COMPLETED -> "completed"."""
    return _name(conversion_service_pb2.ConversionStatus, status, "CONVERSION_STATUS_")


def _name(enum: object, value: int, prefix: str) -> str:
    try:
        name: str = enum.Name(value)  # type: ignore[attr-defined]
    except ValueError:
        return "unknown"
    return "unknown" if name.endswith("UNSPECIFIED") else name.removeprefix(prefix).lower()
