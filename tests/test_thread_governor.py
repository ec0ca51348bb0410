"""The automatic thread count gives up a thread per core another process keeps busy, and takes it back once
the neighbour is gone: unit checks on a fake clock, and the real core next to a busy process."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx

from inferno.core.engines.llamacpp.thread_governor import ThreadGovernor, available_cores
from tests.servers import running_inferno


class _Machine:
    def __init__(self) -> None:
        self.now = 0.0
        self.busy = 0.0
        self.own = 0.0

    def run(self, seconds: float, foreign_cores: float, own_cores: float = 2.0) -> None:
        self.now += seconds
        self.own += own_cores * seconds
        self.busy += (foreign_cores + own_cores) * seconds


def _governor(machine: _Machine, cores: int) -> ThreadGovernor:
    return ThreadGovernor(cores, lambda: machine.busy, lambda: machine.own, lambda: machine.now)


def test_a_busy_neighbour_takes_a_thread_and_gives_it_back_when_gone() -> None:
    machine = _Machine()
    governor = _governor(machine, cores=2)
    machine.run(0.6, foreign_cores=0.2)
    assert governor.poll() is None, "light foreign load (a client, a shell) keeps every thread"
    machine.run(0.6, foreign_cores=1.0)
    assert governor.poll() == 1
    machine.run(0.1, foreign_cores=0.0)
    assert governor.poll() is None, "measured at most twice a second"
    for _ in range(2):
        machine.run(0.6, foreign_cores=0.0)
        assert governor.poll() is None, "threads come back only after a quiet spell"
    machine.run(0.6, foreign_cores=0.0)
    assert governor.poll() == 2


def test_never_fewer_than_one_thread() -> None:
    machine = _Machine()
    governor = _governor(machine, cores=4)
    machine.run(1.0, foreign_cores=7.5)
    assert governor.poll() == 1


def test_the_core_gives_up_a_thread_to_a_busy_process_and_keeps_answering() -> None:
    """With the automatic default, a process spinning on one core makes the core run one thread fewer."""
    cores = available_cores()
    with running_inferno("--parallel", "1", "--ctx-size", "512") as server:
        model = httpx.get(server.base_url + "/v1/models", timeout=30).json()["data"][0]["id"]
        body = {"model": model, "prompt": "Once upon a time", "max_tokens": 48, "temperature": 0}
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                response = httpx.post(server.base_url + "/v1/completions", json=body, timeout=120)
                assert response.status_code == 200, response.text
                if f"llama.cpp threads {cores} -> {cores - 1}" in server.log_path.read_text(errors="replace"):
                    break
            else:
                raise AssertionError(f"the core kept {cores} threads:\n{server.log_tail()}")
        finally:
            spinner.kill()
            spinner.wait()
