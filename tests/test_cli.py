"""The `inferno` command: --model serves other GGUF files under ids from their names; serve stops cleanly."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import httpx
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

from inferno.core.embedded import embedded_model_path
from inferno.v1 import model_service_pb2, model_service_pb2_grpc
from tests.servers import free_port

STARTUP_TIMEOUT_S = 120.0


def _inferno(*args: str, cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "inferno.cli", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=os.environ.copy(),
    )


def _wait_for_grpc(target: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                    return
            except grpc.RpcError:
                time.sleep(0.3)
    raise AssertionError("core did not start")


def test_model_flags_serve_each_file_under_its_own_id(tmp_path: Path) -> None:
    first, second = tmp_path / "Tiny-Chat.Q4_1.gguf", tmp_path / "other_model.gguf"
    shutil.copy(embedded_model_path(), first)
    os.symlink(first, second)
    port = free_port()
    core = _inferno(
        "core", "--grpc-port", str(port), "--parallel", "1", "--ctx-size", "512",
        "--model", str(first), "--model", str(second), cwd=tmp_path,
    )  # fmt: skip
    try:
        _wait_for_grpc(f"127.0.0.1:{port}", core)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = model_service_pb2_grpc.ModelServiceStub(channel)
            models = stub.ListModels(model_service_pb2.ListModelsRequest()).models
        assert [(m.id, m.owned_by, m.context_length) for m in models] == [
            ("tiny-chat.q4_1", "local", 512),
            ("other_model", "local", 512),
        ]
    finally:
        core.send_signal(signal.SIGTERM)
        assert core.wait(timeout=30) == 0


def test_serve_prints_where_it_listens_and_stops_both_processes_on_sigterm(tmp_path: Path) -> None:
    http_port, grpc_port = free_port(), free_port()
    serve = _inferno(
        "serve", "--port", str(http_port), "--grpc-port", str(grpc_port),
        "--parallel", "1", "--ctx-size", "512", cwd=tmp_path,
    )  # fmt: skip
    lines: list[str] = []
    stdout = serve.stdout
    assert stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(line.decode() for line in stdout), daemon=True)
    reader.start()
    banner = f"http://127.0.0.1:{http_port}/v1"
    try:
        # The banner comes once both processes answer (not at the first /health), so wait for it.
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not any(banner in line for line in lines) and time.monotonic() < deadline:
            assert serve.poll() is None, "".join(lines)
            time.sleep(0.2)
        assert httpx.get(f"http://127.0.0.1:{http_port}/health", timeout=10).status_code == 200
        children = psutil.Process(serve.pid).children()
        assert len(children) == 2
    finally:
        serve.send_signal(signal.SIGTERM)
        code = serve.wait(timeout=60)
    reader.join(timeout=10)
    output = "".join(lines)
    assert code == 0, output
    assert banner in output
    assert f"127.0.0.1:{grpc_port}" in output
    assert not any(child.is_running() and child.status() != psutil.STATUS_ZOMBIE for child in children)


def test_an_engine_setting_out_of_range_stops_the_command_with_its_source(tmp_path: Path) -> None:
    env = {**os.environ, "INFERNO_CTX_SIZE": "-5"}
    for argv, message in [
        (["core", "--parallel", "0"], "--parallel must be between 1 and 256, not 0"),
        (["serve", "--threads", "4"], "INFERNO_CTX_SIZE must be between 0 and 1048576, not -5"),
    ]:
        done = subprocess.run(
            [sys.executable, "-m", "inferno.cli", *argv],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
        )
        assert (done.returncode, done.stderr.strip()) == (2, f"inferno: {message}")


def test_engine_settings_reach_the_core_from_the_config_file_and_per_model(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    shutil.copy(embedded_model_path(), tmp_path / "models" / "short.gguf")
    (tmp_path / "inferno.toml").write_text(
        "[engine]\nparallel = 1\ncontext_length = 384\n\n"
        '[[models]]\npath = "short.gguf"\ncontext_length = 256\n'
    )
    port = free_port()
    core = _inferno(
        "core", "--grpc-port", str(port), "--config", str(tmp_path / "inferno.toml"), cwd=tmp_path
    )
    try:
        _wait_for_grpc(f"127.0.0.1:{port}", core)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = model_service_pb2_grpc.ModelServiceStub(channel)
            models = stub.ListModels(model_service_pb2.ListModelsRequest()).models
        contexts = {m.id: m.context_length for m in models}
        assert contexts["short"] == 256 and contexts["smollm2-135m-instruct"] == 384
    finally:
        core.send_signal(signal.SIGTERM)
        assert core.wait(timeout=30) == 0
