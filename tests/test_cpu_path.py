"""The portable CPU path: the fast path (repacked weights) is probed in a child process and kept where it
runs, dropped where the child dies by a signal; a core that dies by a signal twice in a decode step is not
restarted into a crash loop."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from pathlib import Path

import httpx
import pytest

from inferno.config_file import ConfigError
from inferno.core.engines.base import ModelDescription
from inferno.core.engines.llamacpp import cpu_path, loader
from inferno.core.engines.llamacpp import model as gguf_model
from inferno.core.engines.llamacpp.cpu_path import (
    REPACK_ENV,
    CpuPath,
    apply_to_llama_cpp_python,
    choose_cpu_path,
)
from inferno.core.engines.llamacpp.cpu_probe import SIMULATE_CRASH_ENV, write_probe_model
from inferno.core.engines.loading import EngineLoad
from inferno.engine_settings import EngineSettings
from inferno.inflight import INFLIGHT_FILE_ENV, InflightRecord, RequestShape, read_inflight
from inferno.supervisor import CrashLoopGuard, _Child, supervise
from tests.servers import running_inferno

# A sanity bound only: the probe takes well under a second here; this catches a hang, not a slowdown.
_PROBE_SANITY_S = 30.0


@pytest.fixture(autouse=True)
def _no_cpu_path_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REPACK_ENV, raising=False)
    monkeypatch.delenv(SIMULATE_CRASH_ENV, raising=False)


def _forbid_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_child(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a probe ran: {args}")

    monkeypatch.setattr(cpu_path.subprocess, "run", no_child)


def _cached(cache_dir: Path) -> list[dict[str, object]]:
    return list(json.loads((cache_dir / "cpu-path.json").read_text()).values())


def test_the_fast_path_passes_its_probe_here_and_the_verdict_is_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    probed = choose_cpu_path(tmp_path)
    print(f"\nCPU probe took {probed.probe_seconds:.2f} s; CPU {probed.features}")
    assert (probed.repack, probed.reason) == (True, "probe passed")
    assert 0 < probed.probe_seconds < _PROBE_SANITY_S
    assert "AVX2" in probed.features.split()
    assert [(e["repack"], e["reason"]) for e in _cached(tmp_path)] == [(True, "probe passed")]

    _forbid_probes(monkeypatch)
    cached = choose_cpu_path(tmp_path)
    assert (cached.repack, cached.reason, cached.probe_seconds) == (True, "probe passed", 0.0)


def test_a_probe_that_dies_by_sigill_turns_repacking_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SIMULATE_CRASH_ENV, "sigill")
    path = choose_cpu_path(tmp_path)
    assert path.repack is False
    assert path.reason == "the fast path died with SIGILL in a probe"
    assert path.device == "cpu, weight repacking off (the fast path died with SIGILL in a probe)"
    _forbid_probes(monkeypatch)
    assert choose_cpu_path(tmp_path).repack is False


def test_a_simulated_crash_leaves_no_verdict_for_real_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SIMULATE_CRASH_ENV, "sigill")
    assert choose_cpu_path(tmp_path).repack is False
    monkeypatch.delenv(SIMULATE_CRASH_ENV)
    assert choose_cpu_path(tmp_path).repack is True
    assert sorted(bool(e["repack"]) for e in _cached(tmp_path)) == [False, True]


def test_the_setting_decides_without_a_probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _forbid_probes(monkeypatch)
    monkeypatch.setenv(REPACK_ENV, "off")
    assert choose_cpu_path(tmp_path) == CpuPath(False, f"{REPACK_ENV}=off", cpu_path.cpu_features())
    monkeypatch.setenv(REPACK_ENV, "on")
    assert choose_cpu_path(tmp_path).repack is True
    monkeypatch.setenv(REPACK_ENV, "sometimes")
    with pytest.raises(ConfigError, match=REPACK_ENV):
        choose_cpu_path(tmp_path)
    assert not (tmp_path / "cpu-path.json").exists()


def test_llama_cpp_python_loaders_follow_the_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    import llama_cpp.llama_cpp as llama

    monkeypatch.setattr(llama, "llama_model_default_params", llama.llama_model_default_params)
    assert llama.llama_model_default_params().use_extra_bufts is True
    apply_to_llama_cpp_python(False)
    assert llama.llama_model_default_params().use_extra_bufts is False
    apply_to_llama_cpp_python(True)
    assert llama.llama_model_default_params().use_extra_bufts is True
    vars(llama).pop("_inferno_original_default_params")


@pytest.mark.parametrize(("setting", "repacked"), [("on", True), ("off", False)])
def test_the_loader_loads_weights_as_the_process_chose(
    setting: str,
    repacked: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # llama.cpp says at info level which buffers hold the weights; let that through to the log for once.
    monkeypatch.setitem(gguf_model._FORWARDED_LOG_LEVELS, 2, logging.INFO)
    monkeypatch.setattr(cpu_path, "_chosen", None)
    monkeypatch.setenv(REPACK_ENV, setting)
    path = write_probe_model(tmp_path / "probe.gguf")
    description = ModelDescription("probe", str(path), "gguf", "llama.cpp", "test", 0, 0, 0, 0)
    with caplog.at_level(logging.INFO):
        loaded = loader.load(EngineLoad(description, path, EngineSettings(), lambda *_: None))
    try:
        assert cpu_path.current_cpu_path() == CpuPath(
            repacked, f"{REPACK_ENV}={setting}", cpu_path.cpu_features()
        )
        assert ("CPU_REPACK model buffer size" in caplog.text) is repacked
        # The model's status says how much of its weights took the path, from those same log lines.
        layout = loaded.memory().weight_layout
        assert layout.endswith(" MiB of weights repacked") and layout.startswith("0.0 of") is not repacked
        assert f"probe: {layout}" in caplog.text
    finally:
        assert loaded.generator is not None
        loaded.generator.close()
        loaded.close()


def test_a_server_whose_fast_path_dies_serves_with_the_safe_path(tmp_path: Path) -> None:
    env = {SIMULATE_CRASH_ENV: "sigill", "XDG_CACHE_HOME": str(tmp_path)}
    with running_inferno(env=env) as server, httpx.Client(base_url=server.base_url, timeout=120) as http:
        model_id = http.get("/v1/models").json()["data"][0]["id"]
        body = {"model": model_id, "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 8}
        reply = http.post("/v1/chat/completions", json=body)
        assert reply.status_code == 200, reply.text
        assert reply.json()["usage"]["completion_tokens"] > 0
        device = http.get(f"/v1/models/{model_id}/status").json()["engine"]["device"]
        cpu_path_in_health = http.get("/health").json()["cpu_path"]
        log = server.log_path.read_text()
    assert cpu_path_in_health == "cpu, weight repacking off (the fast path died with SIGILL in a probe)"
    # Nothing repacked: the model's status says so beside the machine's choice.
    assert device == cpu_path_in_health + "; 0.0 of 92.1 MiB of weights repacked"
    assert "llama.cpp CPU path: weight repacking off" in log
    assert "the fast path died with SIGILL in a probe" in log
    assert [(e["repack"], e["reason"]) for e in _cached(tmp_path / "inferno")] == [
        (False, "the fast path died with SIGILL in a probe")
    ]


# ----------------------------------------------------------------------------------------------------
# The supervisor's crash-loop guard

_SHAPE = RequestShape("smollm2", ((40, 16),))


def test_the_core_records_each_step_and_clears_it_after(tmp_path: Path) -> None:
    record = InflightRecord(tmp_path / "inflight.json")
    shape = RequestShape("smollm2", ((40, 16), (3, 7)))
    record.begin(shape)
    assert read_inflight(tmp_path / "inflight.json") == shape
    record.end()
    assert read_inflight(tmp_path / "inflight.json") is None
    record.close()


def test_the_guard_stops_after_two_signal_deaths_in_a_step() -> None:
    guard = CrashLoopGuard(window_s=600)
    assert guard.check(-4, _SHAPE, now=0.0) is None
    message = guard.check(-4, _SHAPE, now=10.0)
    assert message == (
        "inferno: core died with SIGILL (signal 4) twice while serving model smollm2, 1 sequence in flight "
        "(prompt tokens 40, max_tokens 16); not restarting"
    )


def test_the_guard_restarts_a_core_that_exited_or_died_between_steps() -> None:
    guard = CrashLoopGuard(window_s=600)
    assert [guard.check(1, _SHAPE, now=float(t)) for t in range(3)] == [None, None, None]
    assert [guard.check(-9, None, now=float(t)) for t in range(3)] == [None, None, None]
    assert guard.check(-11, _SHAPE, now=0.0) is None
    assert guard.check(-11, _SHAPE, now=700.0) is None  # the first death is outside the window


_FAKE_CORE = """
import os, signal, sys
from pathlib import Path
from inferno.inflight import INFLIGHT_FILE_ENV, InflightRecord, RequestShape
with open(sys.argv[1], "a") as starts:
    starts.write("started\\n")
if sys.argv[2] == "in-step":
    InflightRecord(Path(os.environ[INFLIGHT_FILE_ENV])).begin(RequestShape("fake", ((40, 16),)))
os.kill(os.getpid(), signal.SIGILL)
"""


def _supervise_fake_core(tmp_path: Path, where: str) -> tuple[int, int]:
    """Runs the supervisor over a core that kills itself with SIGILL; (exit status, core starts)."""
    inflight = tmp_path / "inflight.json"
    inflight.write_bytes(b"")
    starts = tmp_path / "starts"
    core_env = {**os.environ, INFLIGHT_FILE_ENV: str(inflight)}
    core = _Child("core", [sys.executable, "-c", _FAKE_CORE, str(starts), where], env=core_env)
    gateway = _Child("gateway", [sys.executable, "-c", "import time; time.sleep(120)"])
    stop = threading.Event()
    watchdog = threading.Timer(90.0, stop.set)
    watchdog.start()
    try:
        core.start()
        assert core.process is not None
        core.process.wait(timeout=30)
        status = supervise(core, gateway, stop, inflight)
    finally:
        watchdog.cancel()
        core.stop()
        gateway.stop()
    assert not stop.is_set(), "the supervisor kept restarting until the watchdog stopped it"
    return status, starts.read_text().count("started")


def test_the_supervisor_does_not_restart_a_core_that_dies_twice_in_a_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, starts = _supervise_fake_core(tmp_path, "in-step")
    err = capsys.readouterr().err
    assert (status, starts) == (1, 2)
    shape = "model fake, 1 sequence in flight (prompt tokens 40, max_tokens 16)"
    assert f"inferno: core died with SIGILL (signal 4) while serving {shape}; restarting" in err
    assert f"inferno: core died with SIGILL (signal 4) twice while serving {shape}; not restarting" in err


def test_a_core_that_dies_between_steps_is_restarted_up_to_the_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, starts = _supervise_fake_core(tmp_path, "between-steps")
    err = capsys.readouterr().err
    assert (status, starts) == (1, 6)
    assert err.count("inferno: core died with SIGILL (signal 4); restarting") == 5
    assert "inferno: core keeps exiting; giving up" in err
