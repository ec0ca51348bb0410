"""`inferno envoy-config`: the checked-in envoy/envoy.yaml is its default output, Envoy accepts what it
generates for larger topologies and TLS, and it refuses a public listener in front of cores without
authentication (the rule of `inferno serve`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from inferno.envoy_config import (
    CORE_CLUSTER,
    GATEWAY_HOP_HEADER,
    MODEL_HEADER,
    RELAY_CLUSTER,
    ROUTE_KEY_HEADER,
    Address,
    CoreEndpoint,
    EdgeTls,
    Topology,
    model_cluster,
    parse_core,
    render_yaml,
)
from inferno.grpc_services import SERVICE_NAMES
from tests.crypto_helpers import write_self_signed_certificate
from tests.tools import require_tool

REPO_ROOT = Path(__file__).resolve().parent.parent
CHECKED_IN = REPO_ROOT / "envoy" / "envoy.yaml"


@pytest.fixture(scope="module")
def envoy_bin() -> str:
    return require_tool("envoy", "ENVOY")


def _validate(envoy_bin: str, config: Path) -> None:
    result = subprocess.run(
        [envoy_bin, "--mode", "validate", "-c", str(config), "--disable-hot-restart"],
        cwd=REPO_ROOT,  # the descriptor set is named relative to the repository root
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _envoy_config(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("INFERNO_")}
    return subprocess.run(
        [sys.executable, "-m", "inferno.cli", "envoy-config", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **(env or {})},
        check=False,
    )


def _clusters(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {cluster["name"]: cluster for cluster in config["static_resources"]["clusters"]}


def _hosts(cluster: dict[str, Any]) -> list[str]:
    endpoints = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    return [
        f"{e['endpoint']['address']['socket_address']['address']}:"
        f"{e['endpoint']['address']['socket_address']['port_value']}"
        for e in endpoints
    ]


def test_the_checked_in_config_is_the_default_topologys_output() -> None:
    assert CHECKED_IN.read_text() == render_yaml(Topology()), (
        "envoy/envoy.yaml is stale: run `inferno envoy-config --out envoy/envoy.yaml`"
    )


def test_the_command_writes_the_checked_in_config_by_default() -> None:
    result = _envoy_config()
    assert result.returncode == 0, result.stderr
    assert result.stdout == CHECKED_IN.read_text()


def test_envoy_accepts_the_checked_in_config(envoy_bin: str) -> None:
    _validate(envoy_bin, CHECKED_IN)


def test_envoy_accepts_a_fleet_with_models_and_tls(envoy_bin: str, tmp_path: Path) -> None:
    cert, key = write_self_signed_certificate(tmp_path)
    out = tmp_path / "envoy.yaml"
    result = _envoy_config(
        "--core=127.0.0.1:50051=smollm2,qwen/7b:q4",
        "--core=127.0.0.1:50052=smollm2",
        "--core=127.0.0.1:50053",
        "--gateway=127.0.0.1:8080",
        "--gateway=127.0.0.1:8081",
        "--relay=127.0.0.1:8091",
        f"--tls-cert={cert}",
        f"--tls-key={key}",
        f"--upstream-ca={cert}",
        "--health-interval=1",
        f"--out={out}",
    )
    assert result.returncode == 0, result.stderr
    _validate(envoy_bin, out)
    config = yaml.safe_load(out.read_text())
    listener = config["static_resources"]["listeners"][0]
    assert listener["filter_chains"][0]["transport_socket"]["name"] == "envoy.transport_sockets.tls"
    clusters = _clusters(config)
    assert all(
        cluster["transport_socket"]["name"] == "envoy.transport_sockets.tls" for cluster in clusters.values()
    )
    assert _hosts(clusters[CORE_CLUSTER]) == ["127.0.0.1:50051", "127.0.0.1:50052", "127.0.0.1:50053"]
    assert _hosts(clusters["inferno_gateway"]) == ["127.0.0.1:8080", "127.0.0.1:8081"]
    assert _hosts(clusters[RELAY_CLUSTER]) == ["127.0.0.1:8091"]


def _routes(topology: Topology) -> list[dict[str, Any]]:
    config = yaml.safe_load(render_yaml(topology))
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    routes: list[dict[str, Any]] = manager["route_config"]["virtual_hosts"][0]["routes"]
    return routes


def test_clients_grpc_goes_through_the_relays_and_the_gateways_own_calls_to_the_cores() -> None:
    topology = Topology(relays=(Address("10.0.0.9", 8081),))
    routes = _routes(topology)
    relayed = [route for route in routes if route["route"]["cluster"] == RELAY_CLUSTER]
    assert [route["match"]["prefix"] for route in relayed] == [f"/{name}/" for name in SERVICE_NAMES]
    for route in relayed:
        assert route["match"]["grpc"] == {}
        assert route["match"]["headers"] == [{"name": GATEWAY_HOP_HEADER, "present_match": False}]
    # First: a call without the hop header never reaches a core route, one with it never a relay route.
    assert routes[: len(relayed)] == relayed
    clusters = _clusters(yaml.safe_load(render_yaml(topology)))
    assert clusters[RELAY_CLUSTER]["health_checks"][0]["grpc_health_check"] == {"service_name": ""}
    # Without relays, gRPC clients reach the cores directly (the single-node config).
    assert all(route["route"]["cluster"] != RELAY_CLUSTER for route in _routes(Topology()))
    assert RELAY_CLUSTER not in _clusters(yaml.safe_load(render_yaml(Topology())))


def test_a_model_goes_only_to_the_cores_that_serve_it() -> None:
    topology = Topology(
        cores=(
            parse_core("10.0.0.1:50051=a,b"),
            parse_core("10.0.0.2:50051=b"),
            parse_core("10.0.0.3:50051"),  # no list: serves every model
        )
    )
    clusters = _clusters(yaml.safe_load(render_yaml(topology)))
    assert _hosts(clusters[model_cluster(topology, "a")]) == ["10.0.0.1:50051", "10.0.0.3:50051"]
    assert _hosts(clusters[model_cluster(topology, "b")]) == [
        "10.0.0.1:50051",
        "10.0.0.2:50051",
        "10.0.0.3:50051",
    ]
    for cluster in clusters.values():
        if cluster["name"].startswith(CORE_CLUSTER):
            assert cluster["lb_policy"] == "RING_HASH"
            assert cluster["common_lb_config"]["healthy_panic_threshold"]["value"] == 0
            assert cluster["common_lb_config"]["update_merge_window"] == "0s"
            assert "grpc_health_check" in cluster["health_checks"][0]
            assert cluster["outlier_detection"]["consecutive_gateway_failure"] >= 1


def test_grpc_calls_are_routed_on_the_model_and_hashed_on_the_route_key() -> None:
    topology = Topology(cores=(parse_core("10.0.0.1:50051=a"), parse_core("10.0.0.2:50051=b")))
    routes = _routes(topology)
    by_model = {
        header["string_match"]["exact"]: route["route"]["cluster"]
        for route in routes
        for header in route["match"].get("headers", [])
        if header["name"] == MODEL_HEADER
    }
    assert by_model == {"a": model_cluster(topology, "a"), "b": model_cluster(topology, "b")}
    core_routes = [route["route"] for route in routes if route["route"]["cluster"].startswith(CORE_CLUSTER)]
    assert all(
        route["hash_policy"] == [{"header": {"header_name": ROUTE_KEY_HEADER}}] for route in core_routes
    )
    assert all("unavailable" in route["retry_policy"]["retry_on"] for route in core_routes)


def test_edge_tls_names_the_certificate(tmp_path: Path) -> None:
    cert, key = write_self_signed_certificate(tmp_path)
    text = render_yaml(Topology(tls=EdgeTls(cert, key), upstream_ca=cert))
    assert str(cert.resolve()) in text and str(key.resolve()) in text


def test_a_public_listener_without_authentication_is_refused() -> None:
    result = _envoy_config("--listen=0.0.0.0:10000")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("inferno: refusing to listen on 0.0.0.0 with no authentication")
    assert not result.stdout


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--api-keys"], {}),
        (["--allow-unauthenticated"], {}),
        ([], {"INFERNO_JWT_SECRET": "a-secret-the-cores-share"}),
    ],
)
def test_a_public_listener_in_front_of_authenticating_cores_is_written(
    args: list[str], env: dict[str, str]
) -> None:
    result = _envoy_config("--listen=0.0.0.0:10000", *args, env=env)
    assert result.returncode == 0, result.stderr
    listener = yaml.safe_load(result.stdout)["static_resources"]["listeners"][0]
    assert listener["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 10000}


def test_the_cores_config_file_decides_too(tmp_path: Path) -> None:
    config = tmp_path / "inferno.toml"
    config.write_text("[security]\napi_keys = true\n")
    assert _envoy_config("--listen=0.0.0.0:10000", f"--config={config}").returncode == 0


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--core=nowhere"], "--core"),
        (["--core=127.0.0.1:50051="], "names no model"),
        (["--gateway=127.0.0.1:99999"], "--gateway"),
        (["--tls-cert=cert.pem"], "--tls-key"),
        (["--health-interval=0"], "--health-interval"),
        (["--core=127.0.0.1:50051", "--core=127.0.0.1:50051=m"], "more than once"),
    ],
)
def test_a_bad_flag_is_one_line_naming_it(args: list[str], named: str) -> None:
    result = _envoy_config(*args)
    assert result.returncode == 2
    assert result.stderr.startswith("inferno: ") and named in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_core_endpoints_parse_with_their_models() -> None:
    assert parse_core("[::1]:50051=a,b") == CoreEndpoint(Address("::1", 50051), ("a", "b"))
    assert parse_core("core-2:50051") == CoreEndpoint(Address("core-2", 50051), ())


def test_every_gateway_route_is_routed_to_the_gateways() -> None:
    """A route added to the gateway is reachable through Envoy: its path starts with a gateway prefix."""
    from inferno.adapters.app import build_app
    from inferno.envoy_config import GATEWAY_PREFIXES

    for resource in build_app("127.0.0.1:1").router.resources():
        path = resource.canonical
        if path == "/ws":
            continue
        assert path.startswith(GATEWAY_PREFIXES), f"{path} is not routed to the gateways by Envoy"
