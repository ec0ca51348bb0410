"""Model management end to end: `inferno serve --config` with the embedded model, a second GGUF file and a
broken one; load, unload, auto-load, progress, status, metrics and the CLI against it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
from openai import OpenAI
from prometheus_client.parser import text_string_to_metric_families

from inferno.adapters.humanize import human_bytes
from inferno.core.embedded import (
    EMBEDDED_MODEL_ID,
    EMBEDDING_MODEL_ID,
    embedded_model_path,
    embedding_model_source,
)
from inferno.v1 import model_service_pb2 as pb
from inferno.v1 import model_service_pb2_grpc
from tests.management_helpers import model_state as _status
from tests.management_helpers import unloaded as _unloaded
from tests.servers import RunningServer


def _chat(managed_http: httpx.Client, model_id: str) -> httpx.Response:
    return managed_http.post(
        "/v1/chat/completions",
        json={"model": model_id, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8},
    )


def _core_rss(server: RunningServer) -> int:
    cores = [
        p
        for p in psutil.Process(server.pid).children()
        if "core" in p.cmdline() and "inferno.cli" in p.cmdline()
    ]
    assert len(cores) == 1
    return int(cores[0].memory_info().rss)


def test_every_source_is_listed_with_state_and_estimate(
    models_stub: model_service_pb2_grpc.ModelServiceStub,
) -> None:
    models = {m.id: m for m in models_stub.ListModels(pb.ListModelsRequest()).models}
    # Conversion tests may have added their outputs by now.
    assert {"second", "broken", EMBEDDED_MODEL_ID, EMBEDDING_MODEL_ID} <= set(models)
    assert models[EMBEDDING_MODEL_ID].state == pb.MODEL_STATE_UNLOADED  # converted and loaded on first use
    assert models[EMBEDDED_MODEL_ID].state == pb.MODEL_STATE_LOADED
    assert models["second"].state in (pb.MODEL_STATE_UNLOADED, pb.MODEL_STATE_LOADED)
    second = models["second"]
    assert second.format == "gguf" and second.engine == "llama.cpp" and second.owned_by == "local"
    assert second.estimated_memory_bytes > second.file_size_bytes == embedded_model_path().stat().st_size


def test_load_answers_in_the_seed_shape_and_both_models_serve_at_once(
    managed_http: httpx.Client, managed_server: RunningServer
) -> None:
    _unloaded(managed_http, "second")
    reply = managed_http.post("/v1/models/second/load")
    assert reply.status_code == 200
    body = reply.json()
    assert body["status"] == "success" and body["message"] == "Model loaded successfully"
    assert body["model_id"] == "second" and body["backend"] == "gguf" and body["memory_usage"].endswith("MB")
    assert _status(managed_http, "second") == "loaded"
    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda m: _chat(managed_http, m), ["second", EMBEDDED_MODEL_ID] * 2))
    assert all(r.status_code == 200 and r.json()["choices"][0]["message"]["content"] for r in replies)
    assert {r.json()["model"] for r in replies} == {"second", EMBEDDED_MODEL_ID}


def test_unload_frees_memory_and_a_request_loads_the_model_again(
    managed_http: httpx.Client, managed_server: RunningServer
) -> None:
    if _status(managed_http, "second") != "loaded":
        assert managed_http.post("/v1/models/second/load").status_code == 200
    assert _chat(managed_http, "second").status_code == 200
    loaded_rss = _core_rss(managed_server)
    reply = managed_http.post("/v1/models/second/unload")
    assert reply.status_code == 200
    assert reply.json() == {
        "status": "success",
        "message": "Model unloaded successfully",
        "model_id": "second",
        "cancelled_requests": 0,
    }
    assert _status(managed_http, "second") == "unloaded"
    assert loaded_rss - _core_rss(managed_server) > 50 << 20
    # auto_load is on by default: the next request loads the model (as Ollama does).
    assert _chat(managed_http, "second").status_code == 200
    assert _status(managed_http, "second") == "loaded"


def test_load_progress_streams_over_grpc(
    managed_http: httpx.Client, models_stub: model_service_pb2_grpc.ModelServiceStub
) -> None:
    _unloaded(managed_http, "second")
    updates = list(models_stub.LoadModel(pb.LoadModelRequest(model_id="second")))
    percents = [u.percent for u in updates]
    assert percents == sorted(percents)
    assert updates[-1].phase == pb.LOAD_PHASE_READY and updates[-1].memory_bytes > 0
    phases = [u.phase for u in updates]
    assert pb.LOAD_PHASE_READING_WEIGHTS in phases and pb.LOAD_PHASE_CREATING_CONTEXT in phases


def test_load_progress_streams_over_sse(managed_http: httpx.Client) -> None:
    _unloaded(managed_http, "second")
    with managed_http.stream("POST", "/v1/models/second/load?stream=true") as reply:
        assert reply.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in reply.iter_lines() if line.startswith("data: {")]
    assert events[-1]["type"] == "loaded" and events[-1]["model_id"] == "second"
    progress = [e["progress"] for e in events[:-1]]
    assert progress and progress == sorted(progress)
    assert all(e["status"] == "loading" for e in events[:-1])


def test_a_broken_file_fails_clearly_and_everything_else_keeps_serving(managed_http: httpx.Client) -> None:
    reply = managed_http.post("/v1/models/broken/load")
    assert reply.status_code == 500
    error = reply.json()["error"]
    assert error["code"] == "model_load_failed" and "broken.gguf" in error["message"]
    status = managed_http.get("/v1/models/broken/status").json()
    assert status["status"] == "failed" and "broken.gguf" in status["error"]
    assert _chat(managed_http, EMBEDDED_MODEL_ID).status_code == 200
    assert managed_http.get("/health").status_code == 200


def test_unknown_models_are_404s(managed_http: httpx.Client) -> None:
    for path in ("/v1/models/nope/load", "/v1/models/nope/unload"):
        reply = managed_http.post(path)
        assert reply.status_code == 404 and reply.json()["error"]["code"] == "model_not_found"


def test_load_metrics_and_state_are_exported(managed_http: httpx.Client) -> None:
    if _status(managed_http, "second") != "loaded":
        assert managed_http.post("/v1/models/second/load").status_code == 200
    text = managed_http.get("/metrics").text
    assert 'inferno_model_state{model="second",state="loaded"} 1.0' in text
    assert 'inferno_model_state{model="broken",state="failed"} 1.0' in text
    assert 'inferno_model_load_seconds_count{model="second"}' in text


def test_cli_models_commands(managed_server: RunningServer, managed_http: httpx.Client) -> None:
    def inferno_models(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "inferno.cli", "models", *args, "--core", managed_server.grpc_target]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)

    _unloaded(managed_http, "second")
    listing = inferno_models("list")
    assert listing.returncode == 0
    assert any(line.split()[:2] == ["second", "unloaded"] for line in listing.stdout.splitlines())
    loading = inferno_models("load", "second")
    assert loading.returncode == 0
    # Not a terminal: plain progress lines, not a bar redrawn with carriage returns.
    assert "\r" not in loading.stdout
    assert re.search(r"^\S+ \S+ 100\.0% ready$", loading.stdout, re.MULTILINE), loading.stdout
    assert "loaded second" in loading.stdout
    status = inferno_models("status", "second").stdout
    assert status.startswith("second: loaded, memory ") and "llama.cpp on cpu" in status
    assert inferno_models("unload", "second").returncode == 0
    assert "second: unloaded, not in memory (est. " in inferno_models("status", "second").stdout
    failing = inferno_models("load", "broken")
    assert failing.returncode == 1 and "model_load_failed" in failing.stderr


def _long_chat(managed_http: httpx.Client, tokens: int) -> httpx.Response:
    return managed_http.post(
        "/v1/chat/completions",
        json={
            "model": "second",
            "messages": [{"role": "user", "content": "Count to a thousand."}],
            "max_tokens": tokens,
            "ignore_eos": True,
        },
    )


def _wait_until_running(managed_http: httpx.Client) -> None:
    for _ in range(200):
        status = managed_http.get("/v1/models/second/status").json()
        if status["status"] == "loaded" and status["metrics"]["running_sequences"] > 0:
            return
        time.sleep(0.02)
    raise AssertionError("the request never started")


def test_unload_lets_requests_in_flight_finish(managed_http: httpx.Client) -> None:
    if _status(managed_http, "second") != "loaded":
        assert managed_http.post("/v1/models/second/load").status_code == 200
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(_long_chat, managed_http, 96)
        _wait_until_running(managed_http)
        unload = managed_http.post("/v1/models/second/unload")
        reply = running.result()
    assert unload.json()["cancelled_requests"] == 0
    assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] == 96


def test_forced_unload_cancels_requests_in_flight(managed_http: httpx.Client) -> None:
    if _status(managed_http, "second") != "loaded":
        assert managed_http.post("/v1/models/second/load").status_code == 200
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(_long_chat, managed_http, 400)
        _wait_until_running(managed_http)
        unload = managed_http.post("/v1/models/second/unload?force=true")
        reply = running.result()
    assert unload.json()["cancelled_requests"] == 1
    assert reply.status_code == 503 and reply.json()["error"]["code"] == "model_not_ready"
    assert _chat(managed_http, EMBEDDED_MODEL_ID).status_code == 200


def test_health_is_degraded_while_a_model_failed_to_load(managed_http: httpx.Client) -> None:
    assert managed_http.post("/v1/models/broken/load").status_code == 500
    reply = managed_http.get("/health")
    assert reply.status_code == 200
    body = reply.json()
    assert body["status"] == "degraded" and "broken" in body["reason"]
    assert EMBEDDED_MODEL_ID in body["models_loaded"]


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_errors_by_code_and_inter_token_latency_move(managed_http: httpx.Client) -> None:
    itl_count = ("inferno_engine_inter_token_latency_seconds_count", (("model", EMBEDDED_MODEL_ID),))
    error_count = (
        "inferno_core_errors_total",
        (("code", "model_not_found"), ("method", "CreateChatCompletion")),
    )
    before = _samples(managed_http.get("/metrics").text)
    assert _chat(managed_http, EMBEDDED_MODEL_ID).status_code == 200
    assert _chat(managed_http, "no-such-model").status_code == 404
    after = _samples(managed_http.get("/metrics").text)
    assert after[itl_count] >= before.get(itl_count, 0) + 1
    assert after[error_count] == before.get(error_count, 0) + 1


def test_only_a_loaded_model_reports_memory_in_its_status(
    managed_http: httpx.Client, models_stub: model_service_pb2_grpc.ModelServiceStub
) -> None:
    _unloaded(managed_http, "second")
    estimate = models_stub.GetModel(pb.GetModelRequest(model_id="second")).model.estimated_memory_bytes
    unloaded = managed_http.get("/v1/models/second/status").json()
    assert unloaded["status"] == "unloaded"
    assert unloaded["memory_usage"] is None and unloaded["metrics"]["memory_usage"] is None
    assert unloaded["estimated_memory"] == human_bytes(estimate)
    assert models_stub.GetModelStatus(pb.GetModelStatusRequest(model_id="second")).memory_bytes == 0

    assert managed_http.post("/v1/models/broken/load").status_code == 500
    failed = managed_http.get("/v1/models/broken/status").json()
    assert failed["status"] == "failed" and failed["memory_usage"] is None

    assert managed_http.post("/v1/models/second/load").status_code == 200
    loaded = managed_http.get("/v1/models/second/status").json()
    measured = models_stub.GetModelStatus(pb.GetModelStatusRequest(model_id="second")).memory_bytes
    assert measured > 0
    assert loaded["memory_usage"] == loaded["metrics"]["memory_usage"] == human_bytes(measured)


def test_every_listed_model_has_a_real_created_time(managed_http: httpx.Client, managed_root: Path) -> None:
    created = {m["id"]: m["created"] for m in managed_http.get("/v1/models").json()["data"]}
    assert {"second", "broken", EMBEDDED_MODEL_ID, EMBEDDING_MODEL_ID} <= set(created)
    assert all(isinstance(t, int) and t > 0 for t in created.values()), created
    assert created["second"] == int((managed_root / "models" / "second.gguf").stat().st_mtime)


def test_the_embedding_model_is_dated_by_its_source_before_and_after_conversion(
    managed_http: httpx.Client, http: httpx.Client, openai_client: OpenAI
) -> None:
    source = embedding_model_source()
    assert source is not None
    source_time = int(source.stat().st_mtime)
    # The managed server has not converted it: it is converted on first use.
    assert _status(managed_http, EMBEDDING_MODEL_ID) == "unloaded"
    assert managed_http.get(f"/v1/models/{EMBEDDING_MODEL_ID}").json()["created"] == source_time
    # The suite's server converts it on first use, if nothing did before.
    openai_client.embeddings.create(model=EMBEDDING_MODEL_ID, input="Hello")
    assert http.get(f"/v1/models/{EMBEDDING_MODEL_ID}").json()["created"] == source_time
