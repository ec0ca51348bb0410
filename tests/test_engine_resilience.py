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
from inferno.core.engines.factory import EngineFactory
from inferno.core.metrics import EngineMetrics
from inferno.core.model_manager import ManagerOptions, ModelManager
from inferno.core.runtime.served_model import ServedModel
from inferno.engine_settings import EngineSettings
from inferno.errors import InfernoError

GREEDY = SamplingConfig(0.0, 1.0, 0.0, 0.0, None)


@pytest.fixture(scope="module")
def engine() -> Iterator[ServedModel]:
    settings = EngineSettings(parallel_sequences=2, context_length=512, threads=2)
    catalog = build_catalog(ManagementConfig(), (), settings)
    metrics = EngineMetrics(CollectorRegistry())
    manager = ModelManager(catalog, ManagerOptions(), metrics, EngineFactory(metrics))
    engine = asyncio.run(manager.load(EMBEDDED_MODEL_ID))
    yield engine
    engine.close()


def _generate(engine: ServedModel, text: str) -> str:
    """Generates 4 tokens; a dead engine thread shows up as a timeout, not a hang."""

    async def collect() -> str:
        request = SequenceRequest(tuple(engine.tokenize(text)), 4, (), GREEDY)
        return "".join([event.text async for event in engine.generate(request)])

    return asyncio.run(asyncio.wait_for(collect(), timeout=30))


def test_a_failing_step_fails_its_request_and_the_next_one_succeeds(
    engine: ServedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = engine._runtime
    assert runtime is not None
    original = runtime._on_token
    calls = {"n": 0}

    def fail_once(*args: object) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("injected fault")
        original(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(runtime, "_on_token", fail_once)
    with pytest.raises(InfernoError) as caught:
        _generate(engine, "Hello")
    assert caught.value.code == "internal_error"
    assert _generate(engine, "Hello")
    assert engine.stats().running_sequences == 0
