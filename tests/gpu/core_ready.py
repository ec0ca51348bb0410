"""Waits until a starting `inferno core` serves, loads its model if needed, and prints the model's id.

    python -m tests.gpu.core_ready 127.0.0.1:50051 --timeout 180 [--pid PID]

Exits 1 with the reason when the core does not get there in time (or its process, --pid, ends first).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from inferno.v1 import model_service_pb2, model_service_pb2_grpc

_POLL_S = 0.5


class CoreNotReady(Exception):
    pass


def _alive(pid: int | None) -> bool:
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_serving(channel: grpc.Channel, deadline: float, pid: int | None) -> None:
    """Until the health service answers SERVING for the whole server."""
    health = health_pb2_grpc.HealthStub(channel)
    last = "no answer"
    while time.monotonic() < deadline:
        if not _alive(pid):
            raise CoreNotReady(f"the core (pid {pid}) exited while starting")
        try:
            status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2).status
            if status == health_pb2.HealthCheckResponse.SERVING:
                return
            last = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
        except grpc.RpcError as error:
            last = f"{error.code().name}: {error.details()}"
        time.sleep(_POLL_S)
    raise CoreNotReady(f"health never SERVING (last: {last})")


def ready_model_id(channel: grpc.Channel, deadline: float) -> str:
    """The id of the core's first model, loaded (LoadModel, followed to the end) if it is not yet."""
    models = model_service_pb2_grpc.ModelServiceStub(channel)
    listed = models.ListModels(model_service_pb2.ListModelsRequest(), timeout=10).models
    if not listed:
        raise CoreNotReady("the core lists no models")
    model = listed[0]
    if model.state != model_service_pb2.MODEL_STATE_LOADED:
        remaining = max(deadline - time.monotonic(), 1.0)
        for _ in models.LoadModel(model_service_pb2.LoadModelRequest(model_id=model.id), timeout=remaining):
            pass
    return model.id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address", help="HOST:PORT of the core")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait in all")
    parser.add_argument("--pid", type=int, help="the core's process: stop waiting if it exits")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.timeout
    try:
        with grpc.insecure_channel(args.address) as channel:
            wait_serving(channel, deadline, args.pid)
            print(ready_model_id(channel, deadline))
    except (CoreNotReady, grpc.RpcError) as error:
        print(f"core at {args.address} not ready: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
