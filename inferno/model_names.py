"""Lower-case names of the ModelState, LoadPhase and ConversionStatus enums, as REST, WebSocket and the CLI
show them."""

from __future__ import annotations

from inferno.v1 import conversion_service_pb2, model_service_pb2


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
