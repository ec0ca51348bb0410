"""ModelService: what the core serves and how each engine is doing."""

from __future__ import annotations

import grpc

from inferno.core.engines.base import Engine
from inferno.core.registry import ModelRegistry
from inferno.v1 import model_service_pb2 as pb
from inferno.v1 import model_service_pb2_grpc


def _model_message(engine: Engine) -> pb.Model:
    d = engine.description
    return pb.Model(
        id=d.id,
        created=d.created,
        owned_by=d.owned_by,
        root=d.id,
        state=pb.MODEL_STATE_LOADED,
        format=d.format,
        engine=d.engine,
        context_length=d.context_length,
        file_size_bytes=d.file_size_bytes,
    )


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, registry: ModelRegistry) -> None:
        self._registry = registry

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(models=[_model_message(e) for e in self._registry.engines()])

    async def GetModel(
        self, request: pb.GetModelRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetModelResponse:
        return pb.GetModelResponse(model=_model_message(self._registry.get(request.model_id)))

    async def GetModelStatus(
        self, request: pb.GetModelStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetModelStatusResponse:
        engine = self._registry.get(request.model_id)
        s = engine.stats()
        return pb.GetModelStatusResponse(
            model_id=engine.description.id,
            state=pb.MODEL_STATE_LOADED,
            memory_bytes=s.memory_bytes,
            stats=pb.EngineStats(
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
            ),
        )
