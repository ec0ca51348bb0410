"""`inferno envoy-config`: the Envoy configuration for N cores and M gateways behind one listener, generated
from one topology (the checked-in envoy/envoy.yaml is the output for the default single-node topology).

Routing keeps KV caches warm: the gateway tags each gRPC call with x-inferno-model and x-inferno-route-key
(adapters/routing_key.py). A call naming a model goes to the cluster of the cores that serve it; within a
cluster a ring hash on the route key sends calls sharing a prompt prefix to the same core, and to the next
core on the ring when that one is unhealthy. Active gRPC health checks take a draining core (NOT_SERVING
from SIGTERM) out of rotation, and outlier detection ejects one that keeps failing.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inferno.config import DEFAULT_GRPC_PORT, DEFAULT_HOST, DEFAULT_HTTP_PORT
from inferno.config_file import ConfigError
from inferno.grpc_services import SERVICE_NAMES
from inferno.plain_yaml import dump_plain
from inferno.security_config import load_security_config

# gRPC metadata (HTTP/2 headers) the gateway sets on its calls to the cores, and Envoy routes on.
MODEL_HEADER = "x-inferno-model"
ROUTE_KEY_HEADER = "x-inferno-route-key"
# Set on every call a gateway makes (its own and its relay's): such calls go straight to a core, others to
# the gateways' gRPC relay when the topology has relays.
GATEWAY_HOP_HEADER = "x-inferno-hop"

DEFAULT_LISTEN_PORT = 10000
DEFAULT_ADMIN_PORT = 9901
DEFAULT_HEALTH_INTERVAL_S = 5.0
# Relative to Envoy's working directory: the checked-in config runs from the repository root.
DEFAULT_DESCRIPTOR = "envoy/inferno.pb"

# The prefix of every extension's typed_config type.
_TYPE = "type.googleapis.com/envoy.extensions."
CORE_CLUSTER = "inferno_core"
GATEWAY_CLUSTER = "inferno_gateway"
RELAY_CLUSTER = "inferno_relay"
_HEALTH_SERVICE = "inferno.v1.InferenceService"


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class CoreEndpoint:
    address: Address
    # The models this core serves; empty: it is taken to serve every model.
    models: tuple[str, ...] = ()

    def serves(self, model: str) -> bool:
        return not self.models or model in self.models


@dataclass(frozen=True)
class EdgeTls:
    """The certificate Envoy's listener presents to clients."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Topology:
    """Everything the generated config depends on."""

    cores: tuple[CoreEndpoint, ...] = (CoreEndpoint(Address(DEFAULT_HOST, DEFAULT_GRPC_PORT)),)
    gateways: tuple[Address, ...] = (Address(DEFAULT_HOST, DEFAULT_HTTP_PORT),)
    # The gateways' gRPC relays (`inferno gateway --grpc-port`); none: gRPC clients reach the cores directly.
    relays: tuple[Address, ...] = ()
    listen: Address = Address(DEFAULT_HOST, DEFAULT_LISTEN_PORT)
    admin_port: int = DEFAULT_ADMIN_PORT
    tls: EdgeTls | None = None
    # The CA Envoy trusts for the cores and gateways; set: Envoy speaks TLS to them.
    upstream_ca: Path | None = None
    descriptor: str = DEFAULT_DESCRIPTOR
    health_interval_s: float = DEFAULT_HEALTH_INTERVAL_S

    def __post_init__(self) -> None:
        if not self.cores:
            raise ConfigError("envoy-config: give at least one --core")
        if not self.gateways:
            raise ConfigError("envoy-config: give at least one --gateway")
        addresses = [str(core.address) for core in self.cores]
        repeated = sorted({address for address in addresses if addresses.count(address) > 1})
        if repeated:
            raise ConfigError(f"--core: {', '.join(repeated)} given more than once")

    @property
    def models(self) -> tuple[str, ...]:
        """Every model some core names, in the order they are first named."""
        return tuple(dict.fromkeys(model for core in self.cores for model in core.models))


def parse_address(text: str, flag: str) -> Address:
    """HOST:PORT (IPv6 in brackets); ConfigError naming the flag otherwise."""
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{flag}: {text!r} is not HOST:PORT")
    return Address(host, int(port))


def parse_core(text: str) -> CoreEndpoint:
    """HOST:PORT, or HOST:PORT=MODEL[,MODEL...] naming the models that core serves."""
    address, sep, models = text.partition("=")
    names = tuple(name.strip() for name in models.split(",") if name.strip())
    if sep and not names:
        raise ConfigError(f"--core: {text!r} names no model after '='")
    return CoreEndpoint(parse_address(address, "--core"), names)


def model_cluster(topology: Topology, model: str) -> str:
    """The name of the cluster of the cores serving model (unique even where two ids sanitise alike)."""
    index = topology.models.index(model)
    return f"{CORE_CLUSTER}_{index}_{re.sub(r'[^A-Za-z0-9_-]', '_', model)}"


def core_name(topology: Topology, core: CoreEndpoint) -> str:
    """The core's name on the hash ring: core-0, core-1, ... in --core order."""
    return f"core-{topology.cores.index(core)}"


def build_config(topology: Topology) -> dict[str, Any]:
    """The Envoy bootstrap configuration, as the data structure Envoy's YAML/JSON loader reads."""
    return {
        "admin": {"address": _socket(Address("127.0.0.1", topology.admin_port))},
        # Envoy warns at startup without a connection limit.
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": {
                        "@type": _TYPE
                        + "resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                        "max_active_downstream_connections": 10000,
                    },
                }
            ]
        },
        "static_resources": {
            "listeners": [_listener(topology)],
            "clusters": [
                _core_cluster(topology, CORE_CLUSTER, topology.cores),
                *(
                    _core_cluster(
                        topology,
                        model_cluster(topology, model),
                        tuple(core for core in topology.cores if core.serves(model)),
                    )
                    for model in topology.models
                ),
                _gateway_cluster(topology),
                *([_relay_cluster(topology)] if topology.relays else []),
            ],
        },
    }


def render_yaml(topology: Topology) -> str:
    """The config as YAML, under a header naming the topology and how to regenerate it."""
    lines = [
        "# Generated by `inferno envoy-config` (inferno/envoy_config.py); edit the generator, not this file.",
        f"# Listener {topology.listen} ({'TLS' if topology.tls else 'plain'}):",
        *(
            ["#   gRPC from clients             -> the gateways' gRPC relays -> back here (x-inferno-hop)"]
            if topology.relays
            else []
        ),
        "#   gRPC, grpc-web, /api/v1/ JSON -> cores",
        "#     (x-inferno-model picks the cores serving a model, x-inferno-route-key one by ring hash)",
        "#   /v1/, /health, /metrics, /ws   -> gateways",
        *(f"# core    {core.address}  {', '.join(core.models) or 'every model'}" for core in topology.cores),
        *(f"# gateway {gateway}" for gateway in topology.gateways),
        *(f"# relay   {relay}" for relay in topology.relays),
        "# A listener off loopback is written only for cores that authenticate (API keys, JWT, admin key).",
        f"# Admin interface on 127.0.0.1:{topology.admin_port}. Run from the directory the descriptor set "
        f"{topology.descriptor} is relative to.",
        "",
    ]
    body = dump_plain(build_config(topology))
    return "\n".join(lines) + body


def _socket(address: Address) -> dict[str, Any]:
    return {"socket_address": {"address": address.host, "port_value": address.port}}


def _listener(topology: Topology) -> dict[str, Any]:
    chain: dict[str, Any] = {"filters": [_connection_manager(topology)]}
    if topology.tls is not None:
        chain["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": _TYPE + "transport_sockets.tls.v3.DownstreamTlsContext",
                "common_tls_context": {
                    "tls_certificates": [
                        {
                            "certificate_chain": {"filename": str(topology.tls.cert.resolve())},
                            "private_key": {"filename": str(topology.tls.key.resolve())},
                        }
                    ],
                    # h2 for gRPC, HTTP/1.1 for REST, SSE and WebSocket.
                    "alpn_protocols": ["h2", "http/1.1"],
                },
            },
        }
    return {"name": "inferno", "address": _socket(topology.listen), "filter_chains": [chain]}


def _connection_manager(topology: Topology) -> dict[str, Any]:
    transcoder = {
        "@type": _TYPE + "filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
        "proto_descriptor": topology.descriptor,
        "services": list(SERVICE_NAMES),
        # Route on the /api/v1/... path the client sent, not on the gRPC path it becomes.
        "match_incoming_request_route": True,
        "print_options": {
            "always_print_primitive_fields": True,
            "always_print_enums_as_ints": False,
            "preserve_proto_field_names": True,
        },
        # gRPC errors become an HTTP status and google.rpc.Status JSON.
        "convert_grpc_status": True,
        # An /api/v1/ path with no rule is a 404, an unknown query parameter a 400 (not a reset stream).
        "request_validation_options": {
            "reject_unknown_method": True,
            "reject_unknown_query_parameters": True,
        },
    }
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": _TYPE + "filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "inferno",
            "codec_type": "AUTO",
            # Envoy appends the address each caller connected from to X-Forwarded-For; a gateway that lists
            # Envoy in trusted_proxies counts the client by it, not by Envoy's address.
            "use_remote_address": True,
            # WebSocket is off here and switched on for /ws alone.
            "upgrade_configs": [{"upgrade_type": "websocket", "enabled": False}],
            "access_log": [
                {
                    "name": "envoy.access_loggers.stdout",
                    "typed_config": {"@type": _TYPE + "access_loggers.stream.v3.StdoutAccessLog"},
                }
            ],
            "http_filters": [
                # CORS is off (no policy on the virtual host); first, so preflights get answered once one is.
                {
                    "name": "envoy.filters.http.cors",
                    "typed_config": {"@type": _TYPE + "filters.http.cors.v3.Cors"},
                },
                {
                    "name": "envoy.filters.http.grpc_web",
                    "typed_config": {"@type": _TYPE + "filters.http.grpc_web.v3.GrpcWeb"},
                },
                # Enabled by the /api/v1/ route alone.
                {
                    "name": "envoy.filters.http.grpc_json_transcoder",
                    "disabled": True,
                    "typed_config": transcoder,
                },
                {
                    "name": "envoy.filters.http.router",
                    "typed_config": {"@type": _TYPE + "filters.http.router.v3.Router"},
                },
            ],
            "route_config": {
                "name": "inferno",
                "virtual_hosts": [
                    {"name": "inferno", "domains": ["*"], "routes": _routes(topology, transcoder)}
                ],
            },
        },
    }


# Every gateway route but /ws starts with one of these (tests/test_envoy_config.py walks the app's router).
GATEWAY_PREFIXES = (
    "/v1/",
    "/health",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/dashboard",
    "/tokenize",
    "/detokenize",
    "/tokenizer_info",
)


def _routes(topology: Topology, transcoder: dict[str, Any]) -> list[dict[str, Any]]:
    grpc = {"prefix": "/", "grpc": {}}
    grpc_web = {
        "prefix": "/",
        "headers": [{"name": "content-type", "string_match": {"prefix": "application/grpc-web"}}],
    }
    # A client's gRPC call to Inferno's services passes a gateway's relay, which turns a core dying mid-call
    # into UNAVAILABLE (Envoy could only reset the stream); the gateways' own calls carry the hop header.
    routes = [
        {
            "match": {
                "prefix": f"/{service}/",
                "grpc": {},
                "headers": [{"name": GATEWAY_HOP_HEADER, "present_match": False}],
            },
            "route": _relay_route(),
        }
        for service in SERVICE_NAMES
        if topology.relays
    ]
    routes += [
        # A call naming a model goes only to the cores that serve it.
        {
            "match": {**match, "headers": [*match.get("headers", []), _model_header(model)]},
            "route": _core_route(model_cluster(topology, model)),
        }
        for model in topology.models
        for match in (grpc, grpc_web)
    ]
    routes += [
        {"match": grpc, "route": _core_route(CORE_CLUSTER)},
        {"match": grpc_web, "route": _core_route(CORE_CLUSTER)},
        {
            "match": {"prefix": "/api/v1/"},
            "route": _core_route(CORE_CLUSTER),
            "typed_per_filter_config": {
                "envoy.filters.http.grpc_json_transcoder": {
                    "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
                    "config": transcoder,
                }
            },
        },
        *({"match": {"prefix": prefix}, "route": _gateway_route()} for prefix in GATEWAY_PREFIXES),
        {
            "match": {"prefix": "/ws"},
            "route": {
                **_gateway_route(),
                "upgrade_configs": [{"upgrade_type": "websocket", "enabled": True}],
            },
        },
    ]
    return routes


def _model_header(model: str) -> dict[str, Any]:
    return {"name": MODEL_HEADER, "string_match": {"exact": model}}


def _retry_policy(retry_on: str) -> dict[str, Any]:
    """Retries on another host of the cluster, for failures before the upstream answered: a refused
    connection, a stream reset before headers, or (cores) UNAVAILABLE from a draining core."""
    return {
        "retry_on": retry_on,
        "num_retries": 2,
        "retry_host_predicate": [
            {
                "name": "envoy.retry_host_predicates.previous_hosts",
                "typed_config": {"@type": _TYPE + "retry.host.previous_hosts.v3.PreviousHostsPredicate"},
            }
        ],
        "host_selection_retry_max_attempts": 5,
    }


def _core_route(cluster: str) -> dict[str, Any]:
    return {
        "cluster": cluster,
        "timeout": "0s",  # streams last as long as generation does
        "max_stream_duration": {"grpc_timeout_header_max": "0s"},  # honour grpc-timeout
        # Calls sharing a prompt prefix hash to the same core; calls without the header to a random one.
        "hash_policy": [{"header": {"header_name": ROUTE_KEY_HEADER}}],
        "retry_policy": _retry_policy("connect-failure,refused-stream,reset,unavailable"),
    }


def _gateway_route() -> dict[str, Any]:
    return {
        "cluster": GATEWAY_CLUSTER,
        "timeout": "0s",  # SSE streams last as long as generation does
        "retry_policy": _retry_policy("connect-failure,refused-stream,reset"),
    }


def _relay_route() -> dict[str, Any]:
    return {
        "cluster": RELAY_CLUSTER,
        "timeout": "0s",  # streams last as long as generation does
        "max_stream_duration": {"grpc_timeout_header_max": "0s"},  # honour grpc-timeout
        "retry_policy": _retry_policy("connect-failure,refused-stream,reset"),
    }


def _upstream_tls(topology: Topology, alpn: str) -> dict[str, Any] | None:
    if topology.upstream_ca is None:
        return None
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": _TYPE + "transport_sockets.tls.v3.UpstreamTlsContext",
            "common_tls_context": {
                "validation_context": {"trusted_ca": {"filename": str(topology.upstream_ca.resolve())}},
                "alpn_protocols": [alpn],
            },
        },
    }


def _duration(seconds: float) -> str:
    return f"{seconds:g}s"


# A host that keeps failing leaves the rotation for 30 s (longer each time) even while its health check still
# passes; never more than half a cluster (so never a cluster's only host).
_EJECTION = {"interval": "5s", "base_ejection_time": "30s", "max_ejection_percent": 50}
# Cores: 3 gateway errors in a row (502/503/504, refused or reset connections, gRPC UNAVAILABLE) or 5 of any
# 5xx (gRPC INTERNAL...).
_CORE_OUTLIERS = {
    "consecutive_5xx": 5,
    "consecutive_gateway_failure": 3,
    "enforcing_consecutive_gateway_failure": 100,  # Envoy's default, 0, only counts them
    **_EJECTION,
}
# Gateways: only their own connection failures count. A gateway's 503 mostly relays the cores' state, which
# another gateway would relay just the same.
_GATEWAY_OUTLIERS = {
    "split_external_local_origin_errors": True,
    "consecutive_local_origin_failure": 3,
    "enforcing_consecutive_local_origin_failure": 100,
    "enforcing_consecutive_5xx": 0,
    "enforcing_success_rate": 0,
    **_EJECTION,
}


def _cluster(
    topology: Topology,
    name: str,
    endpoints: list[dict[str, Any]],
    health_check: dict[str, Any],
    outliers: dict[str, Any],
    alpn: str,
) -> dict[str, Any]:
    interval = _duration(topology.health_interval_s)
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STRICT_DNS",
        "connect_timeout": "2s",
        "common_lb_config": {
            # Without this, Envoy sends to every host, unhealthy ones included, once under half are healthy.
            "healthy_panic_threshold": {"value": 0},
            # Envoy holds a health change back for up to 1 s (its default merge window) when another came
            # within the last second: its workers went on sending to a core the checks had found dead, or
            # left out one they had found back (the admin page already said healthy). A fleet of a few
            # cores gains nothing from merging.
            "update_merge_window": "0s",
        },
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": endpoints}]},
        "health_checks": [
            {
                "timeout": "2s",
                "interval": interval,
                # Envoy checks every 60 s until a cluster's first request unless told otherwise.
                "no_traffic_interval": interval,
                "unhealthy_threshold": 2,
                "healthy_threshold": 1,
                **health_check,
            }
        ],
        "outlier_detection": outliers,
    }
    transport = _upstream_tls(topology, alpn)
    if transport is not None:
        cluster["transport_socket"] = transport
    return cluster


def _core_cluster(topology: Topology, name: str, cores: tuple[CoreEndpoint, ...]) -> dict[str, Any]:
    endpoints = [
        {
            "endpoint": {"address": _socket(core.address)},
            # A core's place on the ring is its place in the --core list, the same in every cluster: a core
            # restarted on another address keeps its conversations (and a fleet's placement is reproducible).
            "metadata": {"filter_metadata": {"envoy.lb": {"hash_key": core_name(topology, core)}}},
        }
        for core in cores
    ]
    cluster = _cluster(
        topology,
        name,
        endpoints,
        # grpc.health.v1 for the inference service: SERVING while the core takes requests, NOT_SERVING
        # from SIGTERM on (core/server.py).
        {"grpc_health_check": {"service_name": _HEALTH_SERVICE}},
        _CORE_OUTLIERS,
        "h2",
    )
    cluster["lb_policy"] = "RING_HASH"
    cluster["ring_hash_lb_config"] = {"minimum_ring_size": 1024}
    cluster["typed_extension_protocol_options"] = _HTTP2_ONLY
    return cluster


_HTTP2_ONLY = {
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": _TYPE + "upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": {"http2_protocol_options": {}},
    }
}


def _gateway_cluster(topology: Topology) -> dict[str, Any]:
    endpoints = [{"endpoint": {"address": _socket(gateway)}} for gateway in topology.gateways]
    # /openapi.json is static: it answers while the gateway itself runs whatever the cores do, and is a 503
    # once the gateway drains. (/health would take every gateway out whenever the cores are down.)
    cluster = _cluster(
        topology,
        GATEWAY_CLUSTER,
        endpoints,
        {"http_health_check": {"path": "/openapi.json"}},
        _GATEWAY_OUTLIERS,
        "http/1.1",
    )
    cluster["lb_policy"] = "LEAST_REQUEST"
    return cluster


def _relay_cluster(topology: Topology) -> dict[str, Any]:
    endpoints = [{"endpoint": {"address": _socket(relay)}} for relay in topology.relays]
    # The relay's grpc.health.v1 server status: SERVING until its gateway drains.
    cluster = _cluster(
        topology,
        RELAY_CLUSTER,
        endpoints,
        {"grpc_health_check": {"service_name": ""}},
        _GATEWAY_OUTLIERS,
        "h2",
    )
    cluster["lb_policy"] = "LEAST_REQUEST"
    cluster["typed_extension_protocol_options"] = _HTTP2_ONLY
    return cluster


# --- the command ---------------------------------------------------------------------------------------


def add_envoy_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--core",
        action="append",
        default=[],
        metavar="HOST:PORT[=MODEL,...]",
        help="a core (repeatable); =MODEL,... names the models it serves (default: every model); "
        f"none given: {DEFAULT_HOST}:{DEFAULT_GRPC_PORT}",
    )
    parser.add_argument(
        "--gateway",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help=f"a gateway (repeatable); none given: {DEFAULT_HOST}:{DEFAULT_HTTP_PORT}",
    )
    parser.add_argument(
        "--relay",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="a gateway's gRPC relay (`inferno gateway --grpc-port`, repeatable); none given: gRPC clients "
        "reach the cores directly, and a core that dies mid-stream resets their streams",
    )
    parser.add_argument(
        "--listen",
        default=f"{DEFAULT_HOST}:{DEFAULT_LISTEN_PORT}",
        metavar="HOST:PORT",
        help="Envoy's listener; a non-loopback address needs cores that authenticate (default: %(default)s)",
    )
    parser.add_argument("--admin-port", type=int, default=DEFAULT_ADMIN_PORT, help="admin on 127.0.0.1")
    parser.add_argument(
        "--tls-cert", type=Path, help="PEM certificate the listener presents (TLS to clients)"
    )
    parser.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    parser.add_argument(
        "--upstream-ca", type=Path, help="PEM CA to trust for cores and gateways (TLS to them)"
    )
    parser.add_argument(
        "--descriptor",
        default=DEFAULT_DESCRIPTOR,
        help="the proto descriptor set path (default: %(default)s)",
    )
    parser.add_argument(
        "--health-interval",
        type=float,
        default=DEFAULT_HEALTH_INTERVAL_S,
        metavar="SECONDS",
        help="health check interval (default: %(default)s)",
    )
    parser.add_argument("--out", type=Path, help="write here instead of stdout")
    auth = parser.add_argument_group("the cores' authentication (decides whether --listen may be public)")
    auth.add_argument("--config", type=Path, help="the cores' inferno.toml: its [security] table")
    auth.add_argument("--api-keys", action=argparse.BooleanOptionalAction, default=None)
    auth.add_argument("--allow-unauthenticated", action=argparse.BooleanOptionalAction, default=None)


def topology_from_arguments(args: argparse.Namespace) -> Topology:
    """The topology the flags describe; ConfigError for a flag that does not parse or a public listener in
    front of cores without authentication (the rule of `inferno serve`'s bind check)."""
    if (args.tls_cert is None) != (args.tls_key is None):
        raise ConfigError("envoy-config: --tls-cert and --tls-key go together")
    if args.health_interval <= 0:
        raise ConfigError("envoy-config: --health-interval must be more than 0 seconds")
    listen = parse_address(args.listen, "--listen")
    overrides = {"api_keys": args.api_keys, "allow_unauthenticated": args.allow_unauthenticated}
    load_security_config(args.config, overrides).check_bind(listen.host)
    defaults = Topology()
    return Topology(
        cores=tuple(parse_core(text) for text in args.core) or defaults.cores,
        gateways=tuple(parse_address(text, "--gateway") for text in args.gateway) or defaults.gateways,
        relays=tuple(parse_address(text, "--relay") for text in args.relay),
        listen=listen,
        admin_port=args.admin_port,
        tls=EdgeTls(args.tls_cert, args.tls_key) if args.tls_cert is not None else None,
        upstream_ca=args.upstream_ca,
        descriptor=args.descriptor,
        health_interval_s=args.health_interval,
    )


def run_envoy_config_command(args: argparse.Namespace) -> int:
    text = render_yaml(topology_from_arguments(args))
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text)
    return 0
