"""Conversion jobs: over REST on the managed server (a folder in its models directory becomes a model it
serves), and the job runner's queue, cancellation and restart handling on their own."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from inferno.core.convert.converter import ConversionResult, Progress, convert_checkpoint
from inferno.core.convert.jobs import ConversionJob, JobRunner, JobStatus, JobStore
from inferno.core.database.heartbeat import ABANDONED_AFTER_S, beat
from inferno.core.database.open import open_sqlite
from inferno.errors import InfernoError
from tests.tiny_llama import write_tiny_llama


def _wait_for_job(http: httpx.Client, job_id: str, timeout: float = 120) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = http.get(f"/v1/convert/{job_id}").json()
        if job["status"] in ("completed", "failed", "cancelled"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


def test_a_converted_folder_becomes_a_served_model(managed_http: httpx.Client, managed_root: Path) -> None:
    write_tiny_llama(managed_root / "models" / "tiny-llama")
    created = managed_http.post(
        "/v1/convert",
        json={
            "source_model": "tiny-llama",
            "target_format": "gguf",
            "quantization": "q8_0",
            "optimization": "balanced",
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["job_id"].startswith("conv_") and body["status"] in ("queued", "processing", "completed")
    assert 0 <= body["progress"] <= 100
    job = _wait_for_job(managed_http, body["job_id"])
    assert job["status"] == "completed", job
    assert job["output_file"] == "tiny-llama.q8_0.gguf" and job["progress"] == 100.0
    assert job["size_reduction"].endswith("%") and job["duration"]
    assert (managed_root / "models" / "tiny-llama.q8_0.gguf").is_file()
    model_id = job["model_id"]
    assert model_id in [m["id"] for m in managed_http.get("/v1/models").json()["data"]]
    reply = managed_http.post(
        "/v1/completions", json={"model": model_id, "prompt": [5, 77, 120], "max_tokens": 4}
    )
    assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] >= 1
    listed = managed_http.get("/v1/convert").json()["data"]
    assert any(j["job_id"] == body["job_id"] for j in listed)


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"source_model": "../outside"}, 400, "source_model"),
        ({"source_model": "/etc"}, 400, "source_model"),
        ({"source_model": "tiny-llama", "output_file": "../escape.gguf"}, 400, "output_file"),
        ({"source_model": "tiny-llama", "quantization": "q2_k"}, 400, "quantization"),
        ({"source_model": "does-not-exist"}, 400, "source_model"),
        ({"source_model": "tiny-llama", "optimization": "turbo"}, 400, "optimization"),
    ],
)
def test_bad_jobs_are_refused_at_once(
    managed_http: httpx.Client, managed_root: Path, body: dict[str, str], status: int, param: str
) -> None:
    if not (managed_root / "models" / "tiny-llama").exists():
        write_tiny_llama(managed_root / "models" / "tiny-llama")
    reply = managed_http.post("/v1/convert", json=body)
    assert reply.status_code == status, reply.text
    assert reply.json()["error"]["details"]["param"] == param


def test_unsupported_architectures_fail_at_once(managed_http: httpx.Client, managed_root: Path) -> None:
    folder = managed_root / "models" / "gpt2-like"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text('{"architectures": ["GPT2LMHeadModel"]}')
    (folder / "model.safetensors").write_bytes(b"")
    reply = managed_http.post("/v1/convert", json={"source_model": "gpt2-like"})
    assert reply.status_code == 400 and "LlamaForCausalLM" in reply.json()["error"]["message"]


def _slow_converter(gate: threading.Event) -> object:
    def convert(source: Path, output: Path, quantization: str, progress: Progress) -> ConversionResult:
        for step in range(200):
            progress(step / 200, "converting tensors")
            if gate.is_set():
                time.sleep(0.01)
            else:
                gate.wait(5)
        return convert_checkpoint(source, output, quantization, progress)

    return convert


def test_runner_cancels_queued_and_running_jobs(tmp_path: Path) -> None:
    source = write_tiny_llama(tmp_path / "tiny")
    gate = threading.Event()
    runner = JobRunner(JobStore(tmp_path / "db.sqlite"), lambda path: path.stem, _slow_converter(gate))  # type: ignore[arg-type]
    running = runner.submit(source, "tiny", tmp_path / "a.gguf", "a.gguf", "gguf", "f16")
    queued = runner.submit(source, "tiny", tmp_path / "b.gguf", "b.gguf", "gguf", "f16")
    assert runner.cancel(queued.job_id).status is JobStatus.CANCELLED
    deadline = time.monotonic() + 10
    while runner.get(running.job_id).status is not JobStatus.PROCESSING and time.monotonic() < deadline:
        time.sleep(0.01)
    runner.cancel(running.job_id)
    gate.set()
    while runner.get(running.job_id).status is JobStatus.PROCESSING and time.monotonic() < deadline:
        time.sleep(0.01)
    assert runner.get(running.job_id).status is JobStatus.CANCELLED
    assert not (tmp_path / "a.gguf").exists() and not (tmp_path / "a.gguf.partial").exists()
    runner.close()


def test_jobs_persist_and_a_restart_marks_unfinished_ones_failed(tmp_path: Path) -> None:
    source = write_tiny_llama(tmp_path / "tiny")
    gate = threading.Event()
    store = JobStore(tmp_path / "db.sqlite")
    runner = JobRunner(store, lambda path: path.stem, _slow_converter(gate))  # type: ignore[arg-type]
    finished = JobRunner(store, lambda path: path.stem)
    done = finished.submit(source, "tiny", tmp_path / "done.gguf", "done.gguf", "gguf", "f32")
    deadline = time.monotonic() + 30
    while finished.get(done.job_id).status is not JobStatus.COMPLETED and time.monotonic() < deadline:
        time.sleep(0.02)
    stuck = runner.submit(source, "tiny", tmp_path / "stuck.gguf", "stuck.gguf", "gguf", "f16")
    while runner.get(stuck.job_id).status is not JobStatus.PROCESSING and time.monotonic() < deadline:
        time.sleep(0.01)
    store.save(runner.get(stuck.job_id))  # what a crash leaves behind: a row saying processing
    reopened = JobStore(tmp_path / "db.sqlite")  # the next start
    assert reopened.get(done.job_id).status is JobStatus.COMPLETED  # type: ignore[union-attr]
    interrupted = reopened.get(stuck.job_id)
    assert interrupted is not None and interrupted.status is JobStatus.FAILED
    assert "restart" in interrupted.error
    gate.set()
    runner.close()
    finished.close()


def test_the_jobs_of_a_core_that_stopped_beating_are_failed_by_another(tmp_path: Path) -> None:
    """A core that never comes back under its name: once its heartbeat is ABANDONED_AFTER_S old, another
    core fails its unfinished jobs, and leaves its finished ones and those of live cores alone."""
    database = open_sqlite(tmp_path / "db.sqlite")
    gone, alive = JobStore(database, owner="pod-1:/d"), JobStore(database, owner="pod-2:/d")

    def job(job_id: str, status: JobStatus) -> ConversionJob:
        return ConversionJob(job_id, "src", "gguf", "f16", status, 10.0, 1.0, 1.0, None, f"{job_id}.gguf")

    gone.save(job("running", JobStatus.PROCESSING))
    gone.save(job("done", JobStatus.COMPLETED))
    alive.save(job("live", JobStatus.QUEUED))
    start = 1_000_000.0
    beat(database, "pod-1:/d", now=start)
    assert alive.fail_abandoned(beat(database, "pod-2:/d", now=start + ABANDONED_AFTER_S - 1)) == 0
    assert alive.fail_abandoned(beat(database, "pod-2:/d", now=start + ABANDONED_AFTER_S + 1)) == 1
    failed = alive.get("running")
    assert failed is not None and failed.status is JobStatus.FAILED and "stopped" in failed.error
    assert [alive.get(j).status for j in ("done", "live")] == [JobStatus.COMPLETED, JobStatus.QUEUED]  # type: ignore[union-attr]
    database.close()


def test_the_runner_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    runner = JobRunner(JobStore(tmp_path / "db.sqlite"), lambda path: path.stem)
    for target, quantization, param in [("onnx", "f16", "target_format"), ("exl2", "f16", "quantization")]:
        with pytest.raises(InfernoError) as caught:
            runner.submit(tmp_path, "x", tmp_path / "x.out", "x.out", target, quantization)
        assert caught.value.code == "invalid_parameters" and caught.value.details == {"param": param}
    assert runner.all() == []
    runner.close()


def test_a_conversion_never_overwrites_a_served_model(managed_http: httpx.Client, managed_root: Path) -> None:
    write_tiny_llama(managed_root / "models" / "tiny-llama-2")
    served = managed_root / "models" / "second.gguf"
    before = served.stat().st_mtime_ns
    refused = managed_http.post(
        "/v1/convert",
        json={
            "source_model": "tiny-llama-2",
            "target_format": "gguf",
            "quantization": "f16",
            "output_file": "second.gguf",
        },
    )
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["details"]["param"] == "output_file" and "the server serves" in error["message"], error
    assert served.stat().st_mtime_ns == before
