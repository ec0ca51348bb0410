"""Thread default on a shared machine: 32-token greedy replies from the embedded model with llama.cpp's
OpenMP threads spinning while they wait (libgomp's default, and the core's), sleeping
(OMP_WAIT_POLICY=passive, opt-in) or spinning less (GOMP_SPINCOUNT), on the machine as found (its load
average is printed) and with a process added that keeps one core busy. Median of runs x rounds per cell,
each round a fresh process per policy (libgomp reads its wait policy once, when it loads).

    python bench/threads.py [--runs 3] [--rounds 1] [--tokens 32]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

# Name -> environment for the worker. libgomp's default spins 300,000 rounds at each barrier before sleeping;
# passive sleeps at once; a short spin count sits in between.
WAIT_POLICIES: dict[str, dict[str, str]] = {
    "default (spin 300k)": {},
    "OMP_WAIT_POLICY=passive": {"OMP_WAIT_POLICY": "passive"},
    "GOMP_SPINCOUNT=1000": {"GOMP_SPINCOUNT": "1000"},
    "GOMP_SPINCOUNT=10000": {"GOMP_SPINCOUNT": "10000"},
    "GOMP_SPINCOUNT=100000": {"GOMP_SPINCOUNT": "100000"},
}

_WORKER = """
import json, os, sys, time
import llama_cpp
from inferno.core.embedded import embedded_model_path
from inferno.core.engines.llamacpp.cpu_path import apply_to_llama_cpp_python, process_cpu_path
apply_to_llama_cpp_python(process_cpu_path().repack)
runs, tokens = int(sys.argv[1]), int(sys.argv[2])
llm = llama_cpp.Llama(str(embedded_model_path()), n_ctx=256, n_threads=os.cpu_count(),
                      n_threads_batch=os.cpu_count(), verbose=False)
prompt = "Write a short story about a lighthouse keeper."
no_eos = {llm.token_eos(): -1000.0}  # every reply is exactly `tokens` long
llm(prompt, max_tokens=4, temperature=0.0, logit_bias=no_eos)  # warm-up
times = []
for _ in range(runs):
    started = time.perf_counter()
    out = llm(prompt, max_tokens=tokens, temperature=0.0, top_k=1, logit_bias=no_eos)
    times.append(time.perf_counter() - started)
    assert out["usage"]["completion_tokens"] == tokens, out["usage"]
print(json.dumps(times))
"""


def _reply_seconds(policy: dict[str, str], runs: int, tokens: int) -> list[float]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(policy)
    done = subprocess.run(
        [sys.executable, "-c", _WORKER, str(runs), str(tokens)],
        capture_output=True, text=True, env=env, check=True, timeout=900,
    )  # fmt: skip
    return [float(t) for t in json.loads(done.stdout.strip().splitlines()[-1])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=1, help="fresh processes per cell, interleaved")
    args = parser.parse_args()
    rows: list[tuple[str, str, float, float]] = []
    for load in ("as found", "plus one busy process"):
        hog = None
        if load != "as found":
            hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(1)
        load_average = os.getloadavg()[0]
        try:
            times: dict[str, list[float]] = {name: [] for name in WAIT_POLICIES}
            for _ in range(args.rounds):
                for name, policy in WAIT_POLICIES.items():
                    times[name] += _reply_seconds(policy, args.runs, args.tokens)
                    print(f"{load:14} {name:24} {times[name]}", file=sys.stderr, flush=True)
            rows += [(load, name, load_average, statistics.median(t)) for name, t in times.items()]
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()
    print(
        f"{os.cpu_count()} CPUs, {os.cpu_count()} llama.cpp threads, {args.tokens}-token greedy replies, "
        f"median of {args.runs * args.rounds}\n"
    )
    print("| machine | load average at start | OpenMP wait | reply (s) |")
    print("|---|---|---|---|")
    for load, name, load_average, seconds in rows:
        print(f"| {load} | {load_average:.1f} | {name} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
