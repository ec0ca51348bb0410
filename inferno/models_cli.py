"""`inferno models list|load|unload|status`: model management against a running core, over gRPC."""

from __future__ import annotations

import sys
from typing import TextIO

import grpc

from inferno.core_channel import Metadata, command_metadata
from inferno.errors import error_from_rpc
from inferno.model_names import phase_name, state_name
from inferno.progress import ProgressLine
from inferno.v1 import model_service_pb2 as pb
from inferno.v1 import model_service_pb2_grpc


def run_models_command(
    core: str, action: str, model_id: str | None, force: bool, out: TextIO = sys.stdout
) -> int:
    metadata = command_metadata(f"models {action}")
    with grpc.insecure_channel(core) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        try:
            if action == "list":
                _list(stub, out, metadata)
            elif action == "status":
                _status(stub, _required(model_id), out, metadata)
            elif action == "load":
                _load(stub, _required(model_id), out, metadata)
            else:
                request = pb.UnloadModelRequest(model_id=_required(model_id), force=force)
                reply = stub.UnloadModel(request, metadata=metadata)
                out.write(f"unloaded {reply.model_id} ({reply.cancelled_requests} requests cancelled)\n")
        except grpc.RpcError as rpc_error:
            error = error_from_rpc(rpc_error)
            print(f"inferno models {action}: {error.code}: {error.message}", file=sys.stderr)
            return 1
    return 0


def _required(model_id: str | None) -> str:
    if not model_id:
        raise SystemExit("inferno models: this action needs a model id")
    return model_id


def _list(stub: model_service_pb2_grpc.ModelServiceStub, out: TextIO, metadata: Metadata) -> None:
    models = stub.ListModels(pb.ListModelsRequest(), metadata=metadata).models
    out.write(f"{'ID':32} {'STATE':9} {'ENGINE':10} {'SIZE':>9} {'EST. MEMORY':>11}\n")
    for model in models:
        out.write(
            f"{model.id:32} {state_name(model.state):9} {model.engine:10} "
            f"{_mib(model.file_size_bytes):>9} {_mib(model.estimated_memory_bytes):>11}\n"
        )


def _status(
    stub: model_service_pb2_grpc.ModelServiceStub, model_id: str, out: TextIO, metadata: Metadata
) -> None:
    status = stub.GetModelStatus(pb.GetModelStatusRequest(model_id=model_id), metadata=metadata)
    stats = status.stats
    memory = (
        f"memory {_mib(status.memory_bytes)}"
        if status.state == pb.MODEL_STATE_LOADED
        else f"not in memory (est. {_mib(status.model.estimated_memory_bytes)} loaded)"
    )
    engine = f", {status.engine} on {status.device}" if status.device else ""
    out.write(f"{status.model_id}: {state_name(status.state)}, {memory}{engine}\n")
    if status.error:
        out.write(f"  error: {status.error}\n")
    if status.HasField("stats"):
        out.write(
            f"  requests {stats.requests_total}, running {stats.running_sequences}, "
            f"waiting {stats.waiting_sequences}, {stats.tokens_per_second:.1f} tok/s, "
            f"avg latency {stats.avg_latency_ms:.0f} ms\n"
        )


def _load(
    stub: model_service_pb2_grpc.ModelServiceStub, model_id: str, out: TextIO, metadata: Metadata
) -> None:
    line = ProgressLine(out)
    try:
        for update in stub.LoadModel(pb.LoadModelRequest(model_id=model_id), metadata=metadata):
            if update.phase == pb.LOAD_PHASE_READY:
                line.finish("ready")
                out.write(f"loaded {update.model_id} ({_mib(update.memory_bytes)})\n")
            else:
                line.update(update.percent, phase_name(update.phase).replace("_", " "))
    finally:
        line.interrupt()  # an error then starts on a line of its own


def _mib(count: int) -> str:
    return f"{count / (1 << 20):.1f} MiB"
