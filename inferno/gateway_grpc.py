"""gRPC settings of a gateway process, which gRPC reads from the environment before the process starts."""

from __future__ import annotations

from collections.abc import Mapping

GRPC_EXPERIMENTS_ENV = "GRPC_EXPERIMENTS"
# gRPC's EventEngine client costs a gateway more CPU per streamed message than the client path before it:
# about 20 us a token less without it for `inferno serve`'s gateway (docs/performance.md, "What a token costs
# in gRPC"). On a machine whose cores all run llama.cpp threads, that CPU comes out of the decode.
GATEWAY_GRPC_EXPERIMENTS = "-event_engine_client"


def gateway_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """environ with the gateway's gRPC experiments; a GRPC_EXPERIMENTS the operator set wins."""
    return {GRPC_EXPERIMENTS_ENV: GATEWAY_GRPC_EXPERIMENTS, **environ}
