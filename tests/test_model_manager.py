"""The model manager on real llama.cpp engines: budget, eviction, bad files, keep-alive, memory, progress."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
from prometheus_client import CollectorRegistry

from inferno.config_file import ManagementConfig, ModelConfig
from inferno.core.catalog import ModelEntry, build_catalog
from inferno.core.embedded import embedded_model_path
from inferno.core.engines.base import SamplingConfig, SequenceRequest
from inferno.core.engines.factory import EngineFactory
from inferno.core.metrics import EngineMetrics
from inferno.core.model_manager import LoadPhase, LoadProgress, ManagerOptions, ModelManager, ModelState
from inferno.core.runtime.served_model import ServedModel
from inferno.engine_settings import EngineSettings
from inferno.errors import InfernoError

SMALL = EngineSettings(parallel_sequences=1, context_length=256, threads=2)
GREEDY = SamplingConfig(0.0, 1.0, 0.0, 0.0, None)


def _catalog(tmp_path: Path, *models: ModelConfig) -> list[ModelEntry]:
    directory = tmp_path / "models"
    directory.mkdir(exist_ok=True)
    for model in models:
        if not (directory / model.path).exists():
            shutil.copy(embedded_model_path(), directory / model.path)
    config = ManagementConfig(models_dirs=(directory,), models=models)
    return [e for e in build_catalog(config, (), SMALL) if e.path.parent == directory.resolve()]


def _manager(entries: list[ModelEntry], **options: object) -> ModelManager:
    metrics = EngineMetrics(CollectorRegistry())
    return ModelManager(entries, ManagerOptions(**options), metrics, EngineFactory(metrics))  # type: ignore[arg-type]


async def _say(engine: ServedModel) -> str:
    request = SequenceRequest(tuple(engine.tokenize("Hello")), 4, (), GREEDY)
    return "".join([event.text async for event in engine.generate(request)])


def test_over_the_budget_a_load_is_refused_and_the_loaded_model_keeps_serving(tmp_path: Path) -> None:
    entries = _catalog(tmp_path, ModelConfig("a.gguf", id="a"), ModelConfig("b.gguf", id="b"))
    budget = entries[0].estimated_memory_bytes() + entries[1].estimated_memory_bytes() // 2

    async def scenario() -> None:
        manager = _manager(entries, memory_budget_bytes=budget)
        engine = await manager.load("a")
        with pytest.raises(InfernoError) as caught:
            await manager.load("b")
        assert caught.value.code == "insufficient_memory"
        assert caught.value.details["required_bytes"] == str(entries[1].estimated_memory_bytes())
        assert manager.model("b").state is ModelState.UNLOADED
        assert await _say(engine)
        await manager.close()

    asyncio.run(scenario())


def test_with_eviction_the_least_recently_used_idle_model_makes_room(tmp_path: Path) -> None:
    entries = _catalog(
        tmp_path, ModelConfig("a.gguf", id="a"), ModelConfig("b.gguf", id="b"), ModelConfig("c.gguf", id="c")
    )
    budget = sum(e.estimated_memory_bytes() for e in entries[:2])

    async def scenario() -> None:
        manager = _manager(entries, memory_budget_bytes=budget, evict_idle=True)
        await manager.load("a")
        b = await manager.load("b")
        await asyncio.sleep(1.1)  # last_used has one-second resolution in wall time
        assert await _say(b)  # b is now more recently used than a
        await manager.load("c")
        assert [manager.model(i).state for i in "abc"] == [
            ModelState.UNLOADED,
            ModelState.LOADED,
            ModelState.LOADED,
        ]
        await manager.close()

    asyncio.run(scenario())


def test_a_corrupt_or_missing_file_fails_alone(tmp_path: Path) -> None:
    entries = _catalog(tmp_path, ModelConfig("good.gguf", id="good"))
    corrupt = tmp_path / "models" / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 200)
    bad = replace(entries[0], id="corrupt", path=corrupt)
    missing = replace(entries[0], id="missing", path=tmp_path / "models" / "gone.gguf")

    async def scenario() -> None:
        manager = _manager([*entries, bad, missing])
        engine = await manager.load("good")
        for model_id in ("corrupt", "missing"):
            with pytest.raises(InfernoError) as caught:
                await manager.load(model_id)
            assert caught.value.code == "model_load_failed"
            assert manager.model(model_id).state is ModelState.FAILED
        assert await _say(engine)
        await manager.close()

    asyncio.run(scenario())


def test_idle_models_unload_after_their_keep_alive(tmp_path: Path) -> None:
    entries = _catalog(tmp_path, ModelConfig("a.gguf", id="a", load=True))
    entries = [replace(entries[0], keep_alive_s=1.0)]

    async def scenario() -> None:
        manager = _manager(entries)
        await manager.start()
        assert manager.model("a").state is ModelState.LOADED
        for _ in range(40):
            await asyncio.sleep(0.25)
            if manager.model("a").state is ModelState.UNLOADED:
                break
        assert manager.model("a").state is ModelState.UNLOADED
        await manager.close()

    asyncio.run(scenario())


def test_unloading_frees_the_memory(tmp_path: Path) -> None:
    """A 2 x 4096-token context holds about 180 MiB of KV cache; the process gives it back on unload."""
    entries = _catalog(tmp_path, ModelConfig("a.gguf", id="a"))
    entries = [replace(entries[0], settings=replace(SMALL, parallel_sequences=2, context_length=4096))]
    process = psutil.Process()

    async def scenario() -> tuple[int, int, int]:
        manager = _manager(entries)
        before = process.memory_info().rss
        engine = await manager.load("a")
        assert await _say(engine)
        loaded = process.memory_info().rss
        await manager.unload("a")
        after = process.memory_info().rss
        await manager.close()
        return before, loaded, after

    before, loaded, after = asyncio.run(scenario())
    assert loaded - before > 150 << 20
    assert loaded - after > 150 << 20


def test_loading_reports_progress_and_concurrent_loads_share_one_engine(tmp_path: Path) -> None:
    entries = _catalog(tmp_path, ModelConfig("a.gguf", id="a"))

    async def scenario() -> list[LoadProgress]:
        manager = _manager(entries)
        updates: asyncio.Queue[LoadProgress] = asyncio.Queue()
        first, second = await asyncio.gather(manager.load("a", updates), manager.load("a"))
        assert first is second
        await manager.close()
        return [updates.get_nowait() for _ in range(updates.qsize())]

    progress = asyncio.run(scenario())
    percents = [p.percent for p in progress]
    assert percents == sorted(percents) and percents[-1] == 100.0
    assert {LoadPhase.READING_WEIGHTS, LoadPhase.CREATING_CONTEXT, LoadPhase.READY} <= {
        p.phase for p in progress
    }


def test_without_auto_load_requests_get_model_not_loaded_or_not_ready(tmp_path: Path) -> None:
    entries = _catalog(tmp_path, ModelConfig("a.gguf", id="a"))

    async def scenario() -> None:
        manager = _manager(entries, auto_load=False)
        with pytest.raises(InfernoError) as caught:
            await manager.engine_for("a")
        assert caught.value.code == "model_not_loaded"
        assert "/v1/models/a/load" in caught.value.details["suggestion"]
        loading = asyncio.create_task(manager.load("a"))
        await asyncio.sleep(0)
        with pytest.raises(InfernoError) as caught:
            await manager.engine_for("a")
        assert caught.value.code == "model_not_ready" and caught.value.message == "Model not ready"
        assert int(caught.value.details["retry_after_s"]) >= 1
        engine = await loading
        assert await manager.engine_for("a") is engine
        await manager.close()

    asyncio.run(scenario())


def test_a_load_does_not_block_requests_to_a_loaded_model(tmp_path: Path) -> None:
    """The big model's 8 x 8192-token KV cache takes a while to allocate and clear; the small model answers
    in the meantime."""
    entries = _catalog(tmp_path, ModelConfig("small.gguf", id="small"), ModelConfig("big.gguf", id="big"))
    entries[1] = replace(entries[1], settings=replace(SMALL, parallel_sequences=8, context_length=8192))

    async def scenario() -> list[ModelState]:
        manager = _manager(entries)
        small = await manager.load("small")
        loading = asyncio.create_task(manager.load("big"))
        states = []
        for _ in range(3):
            assert await _say(small)
            states.append(manager.model("big").state)
        await loading
        await manager.close()
        return states

    assert asyncio.run(scenario())[0] is ModelState.LOADING
