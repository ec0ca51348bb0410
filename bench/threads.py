"""Thread default on a shared machine: 32-token greedy replies from `inferno serve` on the embedded model
with the automatic thread count (`--threads 0`, the default: one thread per core other processes leave free,
core/engines/llamacpp/thread_governor.py), with every core fixed (`--threads N`, the old default), and with
every core and OpenMP's passive wait (`OMP_WAIT_POLICY=passive`), on the machine as found (its load is
printed) and with a process added that keeps one core busy. Median of --runs replies per cell.

    python bench/threads.py [--runs 9] [--tokens 32]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from serving import ForeignCpuMeter, default_model_path, free_port, inferno_spec, running_server

from inferno.core.engines.llamacpp.thread_governor import available_cores


def _settings(cores: int) -> dict[str, tuple[str, dict[str, str]]]:
    """Name -> (--threads value, extra environment)."""
    return {
        "automatic (--threads 0, default)": ("0", {}),
        f"fixed (--threads {cores})": (str(cores), {}),
        f"fixed, OMP_WAIT_POLICY=passive (--threads {cores})": (str(cores), {"OMP_WAIT_POLICY": "passive"}),
    }


def _reply_seconds(base_url: str, model: str, runs: int, tokens: int) -> list[float]:
    body = {"model": model, "prompt": "Write a short story about a lighthouse keeper.", "temperature": 0}
    with httpx.Client(base_url=base_url, timeout=600) as client:
        client.post("/v1/completions", json={**body, "max_tokens": 4})  # warm-up
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            reply = client.post("/v1/completions", json={**body, "max_tokens": tokens, "ignore_eos": True})
            times.append(time.perf_counter() - started)
            assert reply.json()["usage"]["completion_tokens"] == tokens, reply.text
            time.sleep(0.6)  # lets the governor see the machine between replies, as between requests
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--tokens", type=int, default=32)
    args = parser.parse_args()
    cores = available_cores()
    meter = ForeignCpuMeter()
    rows: list[tuple[str, float, str, float]] = []
    with tempfile.TemporaryDirectory(prefix="inferno-threads-") as tmp:
        for load in ("as found", "plus one busy process"):
            hog = None
            if load != "as found":
                hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            try:
                for name, (threads, env) in _settings(cores).items():
                    foreign = meter.foreign_cores_over(1.0)
                    port = free_port()
                    spec = inferno_spec(port, int(threads), default_model_path(), 512, 1, [])
                    spec = type(spec)(spec.name, spec.command, spec.extra_body, spec.cwd, {**spec.env, **env})
                    with running_server(spec, port, Path(tmp)) as model:
                        times = _reply_seconds(f"http://127.0.0.1:{port}", model, args.runs, args.tokens)
                    rows.append((load, foreign, name, statistics.median(times)))
                    print(f"{load:22} {name:50} {times}", file=sys.stderr, flush=True)
            finally:
                if hog is not None:
                    hog.kill()
                    hog.wait()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{cores} CPUs, {args.tokens}-token greedy replies, median of {args.runs}, load average {load}\n")
    print("| machine | other load, the busy process aside (cores) | threads | reply (s) |")
    print("|---|---:|---|---:|")
    for load, foreign, name, seconds in rows:
        print(f"| {load} | {foreign:.1f} | {name} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
