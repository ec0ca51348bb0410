"""What is written just before a kill -9 is there after the restart: a key created, a key revoked and a
conversion job queued over REST, with the core killed (the supervisor restarts it) or the whole
`inferno serve` killed (a fresh one starts on the same data directory)."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from inferno.core.convert.converter import ConversionResult, Progress
from inferno.core.convert.jobs import JobRunner, JobStatus, JobStore
from tests.servers import RunningServer, inferno_process
from tests.tiny_llama import write_tiny_llama

ADMIN_KEY = "admin-key-for-the-durability-tests"
_RECOVERY_TIMEOUT_S = 120.0


@dataclass
class _Written:
    """What the clients were told was stored, just before the kill."""

    kept_secret: str
    revoked_secret: str
    job_id: str


def _serve(root: Path) -> contextlib.AbstractContextManager[tuple[RunningServer, subprocess.Popen[bytes]]]:
    """`inferno serve` with API keys on, its data and models under root."""
    args = ["--api-keys", "--data-dir", str(root / "data"), "--models-dir", str(root / "models")]
    args += ["--parallel", "1", "--ctx-size", "256"]
    return inferno_process(*args, env={"INFERNO_ADMIN_KEY": ADMIN_KEY})


def _admin(server: RunningServer) -> httpx.Client:
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    return httpx.Client(base_url=server.base_url, headers=headers, timeout=60)


def _status_with(server: RunningServer, secret: str) -> int:
    headers = {"Authorization": f"Bearer {secret}"}
    return httpx.get(server.base_url + "/v1/models", headers=headers, timeout=30).status_code


def _write_just_before_the_kill(server: RunningServer) -> _Written:
    with _admin(server) as admin:
        revoked = admin.post("/v1/auth/keys", json={"name": "revoked", "permissions": ["inference"]})
        assert revoked.status_code == 201, revoked.text
        assert _status_with(server, revoked.json()["api_key"]) == 200
        kept = admin.post("/v1/auth/keys", json={"name": "kept", "permissions": ["inference"]})
        assert kept.status_code == 201, kept.text
        gone = admin.delete(f"/v1/auth/keys/{revoked.json()['key_id']}")
        assert gone.status_code == 200, gone.text
        job = admin.post("/v1/convert", json={"source_model": "tiny-llama", "quantization": "q8_0"})
        assert job.status_code == 201, job.text
    return _Written(kept.json()["api_key"], revoked.json()["api_key"], job.json()["job_id"])


def _assert_still_there(server: RunningServer, written: _Written) -> None:
    assert _status_with(server, written.kept_secret) == 200, server.log_tail()
    assert _status_with(server, written.revoked_secret) == 401, server.log_tail()
    with _admin(server) as admin:
        jobs = {job["job_id"]: job for job in admin.get("/v1/convert").json()["data"]}
    assert written.job_id in jobs, jobs
    job = jobs[written.job_id]
    # Finished before the kill, or failed as interrupted (by the shutdown the kill set off, or at restart):
    # never lost, never left "processing", never shown as cancelled by the client.
    interrupted = job["status"] == "failed" and "interrupted by a server" in str(job.get("error", ""))
    assert job["status"] == "completed" or interrupted, job


def _new_root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="inferno-durability-data-"))
    write_tiny_llama(root / "models" / "tiny-llama")
    return root


def _core_of(process: subprocess.Popen[bytes]) -> psutil.Process:
    for child in psutil.Process(process.pid).children():
        with contextlib.suppress(psutil.Error):
            if "core" in child.cmdline():
                return child
    raise AssertionError("no core child")


def test_writes_before_a_kill_9_of_the_core_are_there_after_its_restart() -> None:
    root = _new_root()
    with _serve(root) as (server, process):
        written = _write_just_before_the_kill(server)
        _core_of(process).kill()
        deadline = time.monotonic() + _RECOVERY_TIMEOUT_S
        while "core recovered in" not in server.log_path.read_text(errors="replace"):
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(0.2)
        _assert_still_there(server, written)


def test_writes_before_a_kill_9_of_inferno_serve_are_there_in_a_fresh_one() -> None:
    root = _new_root()
    with _serve(root) as (server, process):
        written = _write_just_before_the_kill(server)
        children = psutil.Process(process.pid).children()
        process.kill()
        process.wait(timeout=10)
        _gone, alive = psutil.wait_procs(children, timeout=30)
        assert not alive, server.log_tail()
    with _serve(root) as (server, _process):
        _assert_still_there(server, written)


def test_a_job_stopped_by_a_shutdown_fails_as_interrupted_not_cancelled(tmp_path: Path) -> None:
    # kill -9 of `inferno serve` makes its core shut down (it dies with its parent): the job it was running is
    # stopped by the server, not cancelled by a client.
    started, stop = threading.Event(), threading.Event()

    def converter(source: Path, output: Path, quantization: str, progress: Progress) -> ConversionResult:
        started.set()
        while True:
            progress(0.5, "converting tensors")
            stop.wait(0.01)

    store = JobStore(tmp_path / "db.sqlite")
    runner = JobRunner(store, lambda path: path.stem, converter)
    source = write_tiny_llama(tmp_path / "tiny")
    running = runner.submit(source, "tiny", tmp_path / "a.gguf", "a.gguf", "gguf", "f16")
    queued = runner.submit(source, "tiny", tmp_path / "b.gguf", "b.gguf", "gguf", "f16")
    assert started.wait(30)
    runner.close()
    stop.set()
    stopped = store.get(running.job_id)
    assert stopped is not None and stopped.status is JobStatus.FAILED, stopped
    assert stopped.error == "interrupted by a server shutdown"
    store.close()
    # The next start marks the job that never ran failed too.
    reopened = JobStore(tmp_path / "db.sqlite")
    never_ran = reopened.get(queued.job_id)
    assert never_ran is not None and never_ran.status is JobStatus.FAILED
    assert never_ran.error == "interrupted by a server restart"
    reopened.close()
