"""A failure inside an engine step fails the requests in flight and leaves the engine serving."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from inferno.config_file import ManagementConfig
from inferno.core.catalog import build_catalog
from inferno.core.embedded import EMBEDDED_MODEL_ID
from inferno.core.engines.base import SamplingConfig, SequenceRequest
from inferno.core.engines.llamacpp.engine import LlamaCppEngine, LlamaCppSettings
from inferno.core.metrics import EngineMetrics
from inferno.core.model_manager import ManagerOptions, ModelManager
from inferno.errors import InfernoError

GREEDY = SamplingConfig(0.0, 1.0, 0.0, 0.0, None)


@pytest.fixture(scope="module")
def engine() -> Iterator[LlamaCppEngine]:
    settings = LlamaCppSettings(parallel_sequences=2, context_length=512, threads=2)
    catalog = build_catalog(ManagementConfig(), (), settings)
    manager = ModelManager(catalog, ManagerOptions(), EngineMetrics(CollectorRegistry()))
    engine = asyncio.run(manager.load(EMBEDDED_MODEL_ID))
    assert isinstance(engine, LlamaCppEngine)
    yield engine
    engine.close()


def _generate(engine: LlamaCppEngine, text: str) -> str:
    """Generates 4 tokens; a dead engine thread shows up as a timeout, not a hang."""

    async def collect() -> str:
        request = SequenceRequest(tuple(engine.tokenize(text)), 4, (), GREEDY)
        return "".join([event.text async for event in engine.generate(request)])

    return asyncio.run(asyncio.wait_for(collect(), timeout=30))


def test_a_failing_step_fails_its_request_and_the_next_one_succeeds(
    engine: LlamaCppEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = engine._on_token
    calls = {"n": 0}

    def fail_once(*args: object) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("injected fault")
        original(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "_on_token", fail_once)
    with pytest.raises(InfernoError) as caught:
        _generate(engine, "Hello")
    assert caught.value.code == "internal_error"
    assert _generate(engine, "Hello")
    assert engine.stats().running_sequences == 0
