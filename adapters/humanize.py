"""Human-readable sizes, durations and timestamps for the seed's status documents."""

from __future__ import annotations

from datetime import UTC, datetime

_BYTE_UNITS = ("KB", "MB", "GB", "TB", "PB")


def human_bytes(count: int) -> str:
    """A byte count in binary units with one decimal, as the seed writes memory: 512B, 120.5MB, 4.2GB."""
    if count < 1024:
        return f"{count}B"
    value = float(count)
    for unit in _BYTE_UNITS:
        value /= 1024
        if value < 1024 or unit == _BYTE_UNITS[-1]:
            break
    return f"{value:.1f}{unit}"


def human_duration(seconds: float) -> str:
    """Whole seconds as the seed writes uptime: 45s, 3m 5s, 2h 15m 30s, 1d 0h 0m 5s."""
    remaining = max(int(seconds), 0)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        amount, remaining = divmod(remaining, size)
        if amount or parts:
            parts.append(f"{amount}{unit}")
    parts.append(f"{remaining}s")
    return " ".join(parts)


def iso_utc(unix_seconds: int) -> str | None:
    """Unix seconds as ISO 8601 UTC (2024-01-15T10:30:00Z); None for 0, which the core sends for never."""
    if unix_seconds <= 0:
        return None
    return datetime.fromtimestamp(unix_seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
