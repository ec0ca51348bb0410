"""ModelService: what the core serves, how each model is doing, and loading and unloading them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc

from inferno.core.model_manager import LoadPhase, LoadProgress, ManagedModel, ModelManager, ModelState
from inferno.v1 import model_service_pb2 as pb
from inferno.v1 import model_service_pb2_grpc

_STATES = {
    ModelState.UNLOADED: pb.MODEL_STATE_UNLOADED,
    ModelState.LOADING: pb.MODEL_STATE_LOADING,
    ModelState.LOADED: pb.MODEL_STATE_LOADED,
    ModelState.FAILED: pb.MODEL_STATE_FAILED,
}
_PHASES = {
    LoadPhase.QUEUED: pb.LOAD_PHASE_QUEUED,
    LoadPhase.READING_WEIGHTS: pb.LOAD_PHASE_READING_WEIGHTS,
    LoadPhase.CREATING_CONTEXT: pb.LOAD_PHASE_CREATING_CONTEXT,
    LoadPhase.READY: pb.LOAD_PHASE_READY,
    LoadPhase.CONVERTING: pb.LOAD_PHASE_CONVERTING,
}


def _model_message(managed: ManagedModel) -> pb.Model:
    entry = managed.entry
    context_length = (
        managed.engine.description.context_length
        if managed.engine is not None
        else entry.settings.context_length
    )
    return pb.Model(
        id=entry.id,
        created=entry.created,
        owned_by=entry.owned_by,
        root=entry.id,
        state=_STATES[managed.state],
        format=entry.format,
        engine=entry.engine,
        context_length=context_length,
        file_size_bytes=entry.file_size_bytes,
        estimated_memory_bytes=managed.estimated_memory_bytes,
    )


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, manager: ModelManager) -> None:
        self._manager = manager

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(models=[_model_message(m) for m in self._manager.models()])

    async def GetModel(
        self, request: pb.GetModelRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetModelResponse:
        return pb.GetModelResponse(model=_model_message(self._manager.model(request.model_id)))

    async def GetModelStatus(
        self, request: pb.GetModelStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetModelStatusResponse:
        managed = self._manager.model(request.model_id)
        reply = pb.GetModelStatusResponse(
            model_id=managed.entry.id,
            state=_STATES[managed.state],
            load_progress=managed.percent if managed.state is ModelState.LOADING else 0.0,
            error=managed.error.message if managed.error is not None else "",
            load_seconds=managed.load_seconds,
            engine=managed.entry.engine,
            model=_model_message(managed),
        )
        # Only a loaded model holds memory (and has figures); the estimate is Model.estimated_memory_bytes.
        if managed.engine is not None and managed.state is ModelState.LOADED:
            s = managed.engine.stats()
            reply.memory_bytes = s.memory_bytes
            memory = managed.engine.memory()
            reply.device = memory.device()
            reply.gpu_memory_bytes = memory.device_bytes
            reply.stats.CopyFrom(
                pb.EngineStats(
                    running_sequences=s.running_sequences,
                    waiting_sequences=s.waiting_sequences,
                    decode_steps=s.decode_steps,
                    max_sequences_per_step=s.max_sequences_per_step,
                    last_step_sequences=s.last_step_sequences,
                    requests_total=s.requests_total,
                    prompt_tokens_total=s.prompt_tokens_total,
                    generated_tokens_total=s.generated_tokens_total,
                    reused_prompt_tokens_total=s.reused_prompt_tokens_total,
                    kv_cache_usage=s.kv_cache_usage,
                    max_parallel_sequences=s.max_parallel_sequences,
                    tokens_per_second=s.tokens_per_second,
                    avg_latency_ms=s.avg_latency_ms,
                    last_used=int(s.last_used),
                )
            )
        return reply

    async def LoadModel(
        self, request: pb.LoadModelRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.LoadModelResponse]:
        managed = self._manager.model(request.model_id)
        updates: asyncio.Queue[LoadProgress] = asyncio.Queue()
        load = asyncio.create_task(self._manager.load(request.model_id, updates))
        getter: asyncio.Future[LoadProgress] | None = None
        try:
            while not load.done() or not updates.empty():
                getter = asyncio.ensure_future(updates.get())
                await asyncio.wait({getter, load}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    continue
                progress = getter.result()
                if progress.phase is not LoadPhase.READY:
                    yield _progress_message(progress, managed)
            engine = load.result()  # raises the load's error
            yield pb.LoadModelResponse(
                model_id=managed.entry.id,
                phase=pb.LOAD_PHASE_READY,
                percent=100.0,
                memory_bytes=engine.stats().memory_bytes,
                format=managed.entry.format,
            )
        finally:
            if getter is not None and not getter.done():  # the caller went away while we waited
                getter.cancel()
            if not load.done():
                # The caller went away; the load goes on for whoever else needs the model.
                with contextlib.suppress(asyncio.CancelledError):
                    load.cancel()

    async def WatchModels(
        self, request: pb.WatchModelsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchModelsResponse]:
        with self._manager.watch() as changes:
            for managed in self._manager.models():
                yield _watch_message(managed.progress())
            while True:
                yield _watch_message(await changes.get())

    async def UnloadModel(
        self, request: pb.UnloadModelRequest, context: grpc.aio.ServicerContext
    ) -> pb.UnloadModelResponse:
        cancelled = await self._manager.unload(request.model_id, force=request.force)
        return pb.UnloadModelResponse(model_id=request.model_id, cancelled_requests=cancelled)


def _watch_message(progress: LoadProgress) -> pb.WatchModelsResponse:
    message = pb.WatchModelsResponse(
        model_id=progress.model_id,
        state=_STATES[progress.state],
        phase=_PHASES[progress.phase],
        progress=progress.percent if progress.state in (ModelState.LOADING, ModelState.LOADED) else 0.0,
        error=progress.error or "",
    )
    if progress.eta_s is not None and progress.state is ModelState.LOADING:
        message.eta_seconds = progress.eta_s
    return message


def _progress_message(progress: LoadProgress, managed: ManagedModel) -> pb.LoadModelResponse:
    message = pb.LoadModelResponse(
        model_id=progress.model_id,
        phase=_PHASES[progress.phase],
        percent=progress.percent,
        format=managed.entry.format,
    )
    if progress.eta_s is not None:
        message.eta_seconds = progress.eta_s
    return message
