"""Hypothesis settings for property tests and fuzzers that call a live server."""

from __future__ import annotations

from hypothesis import HealthCheck, settings


def against_a_server(max_examples: int) -> settings:
    """A fixed seed (CI runs the same cases every time), no deadline (the server sets the pace), and the
    health checks such tests trip by design (slow calls, large inputs, session fixtures) off."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
        ],
    )
