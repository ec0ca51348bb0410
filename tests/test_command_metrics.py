"""The seed's custom metrics: inferno_command_total (counter) and inferno_command_duration_ms (gauge), by
command, counted by the core for `inferno` CLI commands run against a server and for HTTP requests that name a
command; label values stay within the CLI's known commands."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time

import grpc
import httpx

from inferno.cli import build_parser
from inferno.core_channel import COMMAND_METADATA, OTHER_COMMAND, SERVER_COMMANDS
from inferno.v1 import model_service_pb2 as pb
from inferno.v1 import model_service_pb2_grpc
from tests.management_helpers import unloaded
from tests.servers import RunningServer


def _samples(http: httpx.Client, family: str) -> dict[str, float]:
    """{command: value} of one command family on /metrics."""
    text = http.get("/metrics").text
    pattern = re.compile(rf'^{family}\{{command="([^"]*)"\}} (\S+)$', re.MULTILINE)
    return {command: float(value) for command, value in pattern.findall(text)}


def _counts(http: httpx.Client) -> dict[str, float]:
    return _samples(http, "inferno_command_total")


def _inferno(server: RunningServer, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """Runs `inferno ARGS --core <server>`; returns the process and its wall time in ms."""
    command = [sys.executable, "-m", "inferno.cli", *args, "--core", server.grpc_target]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    return done, 1000 * (time.perf_counter() - started)


def test_the_known_commands_are_the_clis_server_actions() -> None:
    subcommands = next(
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    ).choices
    actions = {
        f"{name} {action}"
        for name in ("models", "keys")
        for action in next(a for a in subcommands[name]._actions if a.dest == "action").choices or ()
    }
    assert set(SERVER_COMMANDS) == actions


def test_metrics_name_and_type_both_families_as_the_seed(managed_http: httpx.Client) -> None:
    text = managed_http.get("/metrics").text
    assert "# TYPE inferno_command_total counter" in text
    assert "# TYPE inferno_command_duration_ms gauge" in text
    assert set(_counts(managed_http)) >= set(SERVER_COMMANDS)


def test_cli_models_commands_are_counted_and_timed_by_the_core(
    managed_server: RunningServer, managed_http: httpx.Client
) -> None:
    unloaded(managed_http, "second")
    before = _counts(managed_http)
    listing, _ = _inferno(managed_server, "models", "list")
    loading, load_wall_ms = _inferno(managed_server, "models", "load", "second")
    assert listing.returncode == 0 and loading.returncode == 0, listing.stderr + loading.stderr
    after = _counts(managed_http)
    assert after["models list"] == before["models list"] + 1
    assert after["models load"] == before["models load"] + 1
    assert after["models unload"] == before["models unload"]
    durations = _samples(managed_http, "inferno_command_duration_ms")
    load_seconds = managed_http.get("/v1/models/second/status").json()["load_seconds"]
    # The load call lasts the whole load and no longer than the command that made it.
    assert 1000 * load_seconds * 0.9 <= durations["models load"] <= load_wall_ms
    assert 0 < durations["models list"] < durations["models load"]


def test_a_failing_keys_command_against_a_server_is_counted_too(
    managed_server: RunningServer, managed_http: httpx.Client
) -> None:
    before = _counts(managed_http)
    # The managed server has no API keys: the command fails, and it still ran against the server.
    listing, _ = _inferno(managed_server, "keys", "list")
    assert listing.returncode == 1 and "keys list" in listing.stderr
    assert _counts(managed_http)["keys list"] == before["keys list"] + 1


def test_unknown_command_names_count_as_other(
    managed_server: RunningServer, managed_http: httpx.Client
) -> None:
    before = _counts(managed_http)
    with grpc.insecure_channel(managed_server.grpc_target) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        for name in ("drop tables", "models  LIST", "x" * 300):
            stub.ListModels(pb.ListModelsRequest(), metadata=((COMMAND_METADATA, name),))
        stub.ListModels(pb.ListModelsRequest())  # names no command: not counted
    after = _counts(managed_http)
    assert after[OTHER_COMMAND] == before.get(OTHER_COMMAND, 0) + 2
    assert after["models list"] == before["models list"] + 1  # case and spacing do not matter
    assert set(after) == set(SERVER_COMMANDS) | {OTHER_COMMAND}


def test_http_requests_naming_a_command_are_counted_once(managed_http: httpx.Client) -> None:
    before = _counts(managed_http)
    headers = {"X-Inferno-Command": "models list"}
    assert managed_http.get("/v1/models", headers=headers).status_code == 200
    # /health asks the core twice (health check, server status); the request is still one command.
    assert managed_http.get("/health", headers=headers).status_code == 200
    assert managed_http.get("/v1/models").status_code == 200  # names none
    after = _counts(managed_http)
    assert after["models list"] == before["models list"] + 2
    assert sum(after.values()) == sum(before.values()) + 2
    assert _samples(managed_http, "inferno_command_duration_ms")["models list"] > 0
