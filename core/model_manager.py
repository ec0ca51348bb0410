"""Loads and unloads models on demand under a memory budget, and hands requests the engine of a model.

Each loaded model has its own engine (and engine thread). Loading runs in a worker thread and reports
progress, coalesced for watchers to about ten updates a second per model (every change of state kept);
several callers asking for the same model share one load. Unload rule: the model stops taking new requests
at once, requests in flight get drain_timeout_s to finish, then the rest are cancelled (they end with
model_not_ready). Idle models unload after their keep-alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from enum import Enum

from inferno.core.catalog import ModelEntry
from inferno.core.engines.factory import EngineFactory
from inferno.core.metrics import EngineMetrics
from inferno.core.runtime.served_model import ServedModel
from inferno.errors import InfernoError

log = logging.getLogger(__name__)

_REAP_INTERVAL_S = 0.5
# Watchers get a model's load progress at most this often; a change of state or phase goes out at once.
PROGRESS_INTERVAL_S = 0.1


class ModelState(Enum):
    UNLOADED = "unloaded"
    LOADING = "loading"
    LOADED = "loaded"
    FAILED = "failed"


class LoadPhase(Enum):
    QUEUED = "queued"
    READING_WEIGHTS = "reading_weights"
    CREATING_CONTEXT = "creating_context"
    READY = "ready"
    CONVERTING = "converting"


@dataclass(frozen=True)
class LoadProgress:
    model_id: str
    phase: LoadPhase
    # 0 to 100.
    percent: float
    # Seconds left, from the rate so far; None before there is a rate.
    eta_s: float | None
    state: ModelState
    # Why the last load failed, in state FAILED.
    error: str | None = None


@dataclass(eq=False)
class ProgressPacing:
    """What one model's watchers were last sent, and when; the send held back to keep to the interval."""

    sent: LoadProgress | None = None
    sent_at: float = 0.0
    held_back: asyncio.TimerHandle | None = None


@dataclass(frozen=True)
class ManagerOptions:
    auto_load: bool = True
    memory_budget_bytes: int | None = None
    evict_idle: bool = False
    drain_timeout_s: float = 30.0


@dataclass(eq=False)
class ManagedModel:
    entry: ModelEntry
    estimated_memory_bytes: int
    state: ModelState = ModelState.UNLOADED
    engine: ServedModel | None = None
    phase: LoadPhase = LoadPhase.QUEUED
    percent: float = 0.0
    load_started: float = 0.0
    loaded_at: float = 0.0
    load_seconds: float = 0.0
    error: InfernoError | None = None
    load_task: asyncio.Task[ServedModel] | None = None
    watchers: list[asyncio.Queue[LoadProgress]] = field(default_factory=list)
    pacing: ProgressPacing = field(default_factory=ProgressPacing)

    def progress(self) -> LoadProgress:
        elapsed = time.monotonic() - self.load_started
        eta = elapsed * (100 - self.percent) / self.percent if 0 < self.percent < 100 else None
        error = self.error.message if self.error is not None else None
        return LoadProgress(self.entry.id, self.phase, self.percent, eta, self.state, error)

    def last_used(self) -> float:
        """Monotonic-free wall seconds of the last request, or of the load when there was none."""
        used = self.engine.stats().last_used if self.engine is not None else 0.0
        return max(used, self.loaded_at)

    def busy(self) -> bool:
        if self.engine is None:
            return False
        stats = self.engine.stats()
        return stats.running_sequences + stats.waiting_sequences > 0


class ModelManager:
    def __init__(
        self,
        entries: list[ModelEntry],
        options: ManagerOptions,
        metrics: EngineMetrics,
        factory: EngineFactory,
    ) -> None:
        self._factory = factory
        self._models = {e.id: ManagedModel(e, e.estimated_memory_bytes()) for e in entries}
        self._options = options
        self._metrics = metrics
        self._reaper: asyncio.Task[None] | None = None
        self._watchers: set[asyncio.Queue[LoadProgress]] = set()

    @property
    def default_model_id(self) -> str:
        loaded = [m.entry.id for m in self._models.values() if m.state is ModelState.LOADED]
        return loaded[0] if loaded else next(iter(self._models))

    def ids(self) -> list[str]:
        return list(self._models)

    def models(self) -> list[ManagedModel]:
        return list(self._models.values())

    def loaded_engines(self) -> list[ServedModel]:
        return [
            m.engine for m in self._models.values() if m.engine is not None and m.state is ModelState.LOADED
        ]

    def model(self, model_id: str) -> ManagedModel:
        managed = self._models.get(model_id)
        if managed is None:
            raise InfernoError(
                "model_not_found",
                f"The requested model '{model_id}' was not found",
                {
                    "available_models": self.ids(),
                    "suggestion": "Use 'GET /v1/models' to see available models",
                },
            )
        return managed

    def register(self, entry: ModelEntry) -> str:
        """Adds a model made while serving (a conversion's output); an id already serving the same file is
        kept. Returns the id it is served under."""
        existing = self._models.get(entry.id)
        if existing is not None and existing.entry.path == entry.path:
            return entry.id
        model_id, n = entry.id, 2
        while model_id in self._models:
            model_id, n = f"{entry.id}-{n}", n + 1
        entry = replace(entry, id=model_id)
        self._models[model_id] = ManagedModel(entry, entry.estimated_memory_bytes())
        self._set_state(self._models[model_id], ModelState.UNLOADED)
        log.info("registered %s from %s", model_id, entry.path)
        return model_id

    async def start(self) -> None:
        """Loads the models marked load-at-start (one after another) and starts the keep-alive reaper."""
        for managed in self._models.values():
            if managed.entry.load_at_start:
                await self.load(managed.entry.id)
        self._reaper = asyncio.create_task(self._reap_idle_models())

    async def engine_for(self, model_id: str) -> ServedModel:
        """The engine serving model_id, loading it first when auto_load is on."""
        managed = self.model(model_id)
        if managed.state is ModelState.LOADED and managed.engine is not None:
            return managed.engine
        if managed.state is ModelState.LOADING and not self._options.auto_load:
            eta = managed.progress().eta_s
            raise InfernoError(
                "model_not_ready",
                "Model not ready",
                {"model_id": model_id, "retry_after_s": str(max(1, round(eta or 5)))},
            )
        if not self._options.auto_load:
            raise InfernoError(
                "model_not_loaded",
                f"The model '{model_id}' exists but is not loaded",
                {"model_id": model_id, "suggestion": f"Load it with 'POST /v1/models/{model_id}/load'"},
            )
        return await self.load(model_id)

    async def load(self, model_id: str, watcher: asyncio.Queue[LoadProgress] | None = None) -> ServedModel:
        """Loads the model (or joins the load under way); watcher gets every progress update."""
        managed = self.model(model_id)
        if watcher is not None:
            managed.watchers.append(watcher)
        try:
            if managed.state is ModelState.LOADED and managed.engine is not None:
                if watcher is not None:
                    watcher.put_nowait(managed.progress())
                return managed.engine
            if managed.load_task is None:
                evicted = self._make_room_for(managed)
                # LOADING from now on, so requests arriving before the task runs see it.
                managed.error = None
                managed.phase, managed.percent = LoadPhase.QUEUED, 0.0
                managed.load_started = time.monotonic()
                self._set_state(managed, ModelState.LOADING)
                managed.load_task = asyncio.create_task(self._load(managed, evicted))
            return await asyncio.shield(managed.load_task)
        finally:
            if watcher is not None:
                managed.watchers.remove(watcher)

    async def unload(self, model_id: str, force: bool = False) -> int:
        """Unloads by the rule above; returns how many requests were cancelled."""
        managed = self.model(model_id)
        if managed.state is ModelState.LOADING:
            raise InfernoError(
                "model_not_ready", f"The model '{model_id}' is still loading", {"model_id": model_id}
            )
        engine = managed.engine
        if engine is None:
            managed.error = None
            self._set_state(managed, ModelState.UNLOADED)
            return 0
        managed.engine = None
        self._set_state(managed, ModelState.UNLOADED)
        deadline = time.monotonic() + (0 if force else self._options.drain_timeout_s)
        while time.monotonic() < deadline and _in_flight(engine):
            await asyncio.sleep(0.05)
        cancelled = _in_flight(engine)
        await asyncio.to_thread(engine.close)
        log.info("unloaded %s (%d requests cancelled)", model_id, cancelled)
        return cancelled

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        for managed in self._models.values():
            if managed.load_task is not None:
                with contextlib.suppress(Exception):
                    await managed.load_task
            if managed.engine is not None:
                await asyncio.to_thread(managed.engine.close)
                managed.engine = None

    # --- loading ----------------------------------------------------------------------------------------

    def _make_room_for(self, managed: ManagedModel) -> list[ServedModel]:
        """Checks the budget; with eviction, takes idle models out of service and returns their engines for
        the load to close (off the event loop) before it builds its own."""
        evicted: list[ServedModel] = []
        budget = self._options.memory_budget_bytes
        if budget is None:
            return evicted
        needed = managed.estimated_memory_bytes
        while needed + self._committed_bytes() > budget:
            victim = self._least_recently_used_idle() if self._options.evict_idle else None
            if victim is None:
                raise InfernoError(
                    "insufficient_memory",
                    f"Loading '{managed.entry.id}' needs about {needed >> 20} MiB; the memory budget is "
                    f"{budget >> 20} MiB with {self._committed_bytes() >> 20} MiB in use",
                    {
                        "model_id": managed.entry.id,
                        "required_bytes": str(needed),
                        "budget_bytes": str(budget),
                        "in_use_bytes": str(self._committed_bytes()),
                        "suggestion": "Unload a model, or raise [server] memory_budget",
                    },
                )
            # The engine is idle, so nothing is cancelled.
            if victim.engine is not None:
                evicted.append(victim.engine)
            victim.engine = None
            self._set_state(victim, ModelState.UNLOADED)
            log.info("evicted %s to make room for %s", victim.entry.id, managed.entry.id)
        return evicted

    def _committed_bytes(self) -> int:
        return sum(
            m.estimated_memory_bytes
            for m in self._models.values()
            if m.state in (ModelState.LOADED, ModelState.LOADING)
        )

    def _least_recently_used_idle(self) -> ManagedModel | None:
        idle = [m for m in self._models.values() if m.state is ModelState.LOADED and not m.busy()]
        return min(idle, key=ManagedModel.last_used, default=None)

    async def _load(self, managed: ManagedModel, evicted: list[ServedModel]) -> ServedModel:
        loop = asyncio.get_running_loop()

        def report(phase: str, fraction: float) -> None:
            def apply() -> None:
                managed.phase = LoadPhase(phase)
                managed.percent = max(managed.percent, round(100 * fraction, 1))
                self._notify(managed)

            loop.call_soon_threadsafe(apply)

        try:
            for victim in evicted:
                await asyncio.to_thread(victim.close)
            engine, entry = await asyncio.to_thread(self._factory.build, managed.entry, report)
        except InfernoError as error:
            managed.error = error
            self._set_state(managed, ModelState.FAILED)
            log.error("loading %s failed: %s", managed.entry.id, error.message)
            raise
        except Exception as exc:
            log.exception("loading %s failed", managed.entry.id)
            failure = InfernoError("model_load_failed", f"loading '{managed.entry.id}' failed: {exc}")
            managed.error = failure
            self._set_state(managed, ModelState.FAILED)
            raise failure from exc
        finally:
            managed.load_task = None
        if entry is not managed.entry:
            managed.entry = entry
            managed.estimated_memory_bytes = entry.estimated_memory_bytes()
        managed.engine = engine
        managed.phase, managed.percent = LoadPhase.READY, 100.0
        managed.loaded_at = time.time()
        managed.load_seconds = time.monotonic() - managed.load_started
        self._metrics.observe_load(managed.entry.id, managed.load_seconds)
        self._set_state(managed, ModelState.LOADED)
        log.info("loaded %s from %s in %.1f s", managed.entry.id, managed.entry.path, managed.load_seconds)
        return engine

    def _set_state(self, managed: ManagedModel, state: ModelState) -> None:
        managed.state = state
        self._metrics.set_model_state(managed.entry.id, state.value)
        self._notify(managed)

    def _notify(self, managed: ManagedModel) -> None:
        """Hands the model's progress to the watchers of its load and to every watcher of all models,
        coalesced: a change of state or phase (loading started, loaded, failed) goes out at once; percent
        steps at most every PROGRESS_INTERVAL_S, the latest one when the interval is over."""
        progress = managed.progress()
        pacing = managed.pacing
        last = pacing.sent
        if last is not None and (last.state, last.phase) == (progress.state, progress.phase):
            if (last.percent, last.error) == (progress.percent, progress.error):
                return  # nothing but the clock moved
            wait = pacing.sent_at + PROGRESS_INTERVAL_S - time.monotonic()
            if wait > 0:
                if pacing.held_back is None:
                    loop = asyncio.get_running_loop()
                    pacing.held_back = loop.call_later(wait, self._send_held_back, managed)
                return
        if pacing.held_back is not None:
            pacing.held_back.cancel()
            pacing.held_back = None
        pacing.sent, pacing.sent_at = progress, time.monotonic()
        for watcher in (*managed.watchers, *self._watchers):
            watcher.put_nowait(progress)

    def _send_held_back(self, managed: ManagedModel) -> None:
        managed.pacing.held_back = None
        self._notify(managed)

    @contextlib.contextmanager
    def watch(self) -> Iterator[asyncio.Queue[LoadProgress]]:
        """A queue of every model's state and load progress changes while the block runs."""
        queue: asyncio.Queue[LoadProgress] = asyncio.Queue()
        self._watchers.add(queue)
        try:
            yield queue
        finally:
            self._watchers.discard(queue)

    # --- keep-alive ------------------------------------------------------------------------------------

    async def _reap_idle_models(self) -> None:
        while True:
            await asyncio.sleep(_REAP_INTERVAL_S)
            now = time.time()
            for managed in list(self._models.values()):
                keep_alive = managed.entry.keep_alive_s
                if (
                    keep_alive is not None
                    and managed.state is ModelState.LOADED
                    and not managed.busy()
                    and now - managed.last_used() > keep_alive
                ):
                    log.info("%s idle for %.0f s: unloading", managed.entry.id, keep_alive)
                    await self.unload(managed.entry.id)


def _in_flight(engine: ServedModel) -> int:
    stats = engine.stats()
    return stats.running_sequences + stats.waiting_sequences
