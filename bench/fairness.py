"""Prompt fairness and prefill cost: a short chat's time to first token while a long prompt is processed, and
prefill time (and its cost per token) by prompt length on Inferno, on llama.cpp's llama-server (the peer,
built by bench/build_llama_server.sh) and on a bare llama-cpp-python loop (single llama_decode calls).

    .venv/bin/python bench/fairness.py [--lengths 100,1000,2000,4000,8000] [--threads 2] [--columns NAME,...]

Prompts are token ids (exact lengths). "inferno" runs the default settings but --stream-interval-ms 0, so a
running stream gets a message after every decode step and the gaps measured are the scheduler's, not the
hand-over interval's; "inferno long-prompt-32" adds --long-prompt-tokens-per-step 32 (how a long prompt
beside one decoding stream went before that setting); "inferno 32-token steps" runs with --batch-tokens 32,
which is how a lone prompt was processed before it could take the whole batch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from serving import (
    HttpServerSpec,
    default_model_path,
    free_port,
    inferno_spec,
    llama_server_spec,
    percentile,
    running_server,
)

from inferno.core.engines.llamacpp.cpu_path import process_cpu_path

N_CTX = 8192
PARALLEL = 2


def _tokens(count: int, salt: int) -> list[int]:
    # Ordinary vocabulary ids, different per run, so no prompt reuses another's KV cells.
    return [200 + (i * 7 + salt) % 4000 for i in range(count)]


def _prefill_s(client: httpx.Client, model: str, length: int, salt: int) -> float:
    started = time.monotonic()
    reply = client.post(
        "/v1/completions", json={"model": model, "prompt": _tokens(length, salt), "max_tokens": 1}
    )
    reply.raise_for_status()
    return time.monotonic() - started


def _chat_ttft_s(client: httpx.Client, model: str) -> float:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Say hi."}],
        "max_tokens": 8,
        "stream": True,
    }
    started = time.monotonic()
    with client.stream("POST", "/v1/chat/completions", json=body) as reply:
        for line in reply.iter_lines():
            if line.startswith("data:") and '"content"' in line:
                return time.monotonic() - started
    raise RuntimeError("the chat streamed no content")


def measure_inferno(
    extra: list[str], lengths: list[int], long_length: int, threads: int, logs: Path, fairness: bool = True
) -> dict[str, float]:
    port = free_port()
    spec = inferno_spec(
        port, threads, default_model_path(), N_CTX, PARALLEL, extra, process_cpu_path().repack
    )
    return measure_server(spec, port, lengths, long_length, logs, fairness)


def measure_llama_server(lengths: list[int], long_length: int, threads: int, logs: Path) -> dict[str, float]:
    port = free_port()
    repack = process_cpu_path().repack
    spec = llama_server_spec(port, threads, default_model_path(), N_CTX, PARALLEL, repack)
    return measure_server(spec, port, lengths, long_length, logs)


def measure_server(
    spec: HttpServerSpec, port: int, lengths: list[int], long_length: int, logs: Path, fairness: bool = True
) -> dict[str, float]:
    results: dict[str, float] = {}
    with (
        running_server(spec, port, logs) as model,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client,
    ):
        _prefill_s(client, model, 16, 0)  # warm-up
        for i, length in enumerate(lengths):
            results[f"prefill {length}"] = _prefill_s(client, model, length, i + 1)
        _per_token(results, lengths)
        if fairness:
            results.update(_fairness(client, model, long_length))
    return results


def _per_token(results: dict[str, float], lengths: list[int]) -> None:
    """Milliseconds per prompt token at each length, and the spread of that cost (longest over shortest)."""
    costs = {length: 1000 * results[f"prefill {length}"] / length for length in lengths}
    for length, cost in costs.items():
        results[f"ms per prompt token at {length}"] = cost
    results[f"per-token cost, {max(lengths)} over {min(lengths)} tokens (x)"] = (
        costs[max(lengths)] / costs[min(lengths)]
    )


class _TokenTimes:
    """A streamed completion read on a thread, the arrival time of each chunk kept, until stop is set."""

    def __init__(self, client: httpx.Client, model: str, max_tokens: int) -> None:
        self.times: list[float] = []
        self.stop = threading.Event()
        body = {"model": model, "prompt": "Once upon a time", "max_tokens": max_tokens, "stream": True,
                "temperature": 0, "ignore_eos": True}  # fmt: skip
        self._thread = threading.Thread(target=self._read, args=(client, body))
        self._thread.start()

    def _read(self, client: httpx.Client, body: dict[str, object]) -> None:
        with client.stream("POST", "/v1/completions", json=body) as reply:
            for line in reply.iter_lines():
                if line.startswith("data: {"):
                    self.times.append(time.monotonic())
                if self.stop.is_set():
                    return  # leaving the stream disconnects, and the server cancels the rest

    def join(self) -> None:
        self._thread.join()

    def gaps_ms(self, start: float = 0.0, end: float = float("inf")) -> list[float]:
        """Milliseconds between consecutive chunks that arrived within [start, end]; the first chunk's
        time counts as a gap's end only."""
        pairs = zip(self.times, self.times[1:], strict=False)
        return [1000 * (b - a) for a, b in pairs if start <= b <= end]


def _stream_during_long_prompt(client: httpx.Client, model: str, long_length: int) -> dict[str, float]:
    """Inter-token gaps of a running stream alone, then while a long prompt is processed beside it."""
    alone = _TokenTimes(client, model, 120)
    alone.join()
    running = _TokenTimes(client, model, 2000)
    time.sleep(1.0)
    started = time.monotonic()
    _prefill_s(client, model, long_length, 98)
    ended = time.monotonic()
    running.stop.set()
    running.join()
    during = running.gaps_ms(started, ended)
    return {
        "running stream, ms between tokens alone, median": statistics.median(alone.gaps_ms()),
        f"running stream, ms between tokens during a {long_length}-token prompt, median": statistics.median(
            during
        ),
        f"running stream, ms between tokens during a {long_length}-token prompt, p95": percentile(
            during, 0.95
        ),
        f"running stream, longest gap during a {long_length}-token prompt, ms": max(during),
        f"that {long_length}-token prompt beside the stream, total": ended - started,
    }


def _fairness(client: httpx.Client, model: str, long_length: int) -> dict[str, float]:
    results = {"short chat TTFT alone": _chat_ttft_s(client, model)}
    long_done: list[float] = []
    started = time.monotonic()

    def long_prompt() -> None:
        _prefill_s(client, model, long_length, 99)
        long_done.append(time.monotonic() - started)

    worker = threading.Thread(target=long_prompt)
    worker.start()
    time.sleep(1.0)
    results[f"short chat TTFT, sent 1 s into a {long_length}-token prompt"] = _chat_ttft_s(client, model)
    worker.join()
    results[f"that {long_length}-token prompt, total"] = long_done[0]
    results.update(_stream_during_long_prompt(client, model, long_length))
    return results


def measure_bare(lengths: list[int], threads: int, chunk: int) -> dict[str, float]:
    import llama_cpp.llama_cpp as llc

    llc.llama_backend_init()
    model = llc.llama_model_load_from_file(
        str(default_model_path()).encode(), llc.llama_model_default_params()
    )
    params = llc.llama_context_default_params()
    params.n_ctx, params.n_batch, params.n_ubatch = N_CTX // PARALLEL, 512, 512
    params.n_threads = params.n_threads_batch = threads
    ctx = llc.llama_init_from_model(model, params)
    batch = llc.llama_batch_init(512, 0, 1)
    results: dict[str, float] = {}
    try:
        for i, length in enumerate(lengths):
            llc.llama_memory_clear(llc.llama_get_memory(ctx), True)
            tokens = _tokens(length, i + 1)
            started = time.monotonic()
            for start in range(0, length, chunk):
                part = tokens[start : start + chunk]
                for j, token in enumerate(part):
                    batch.token[j], batch.pos[j], batch.n_seq_id[j] = token, start + j, 1
                    batch.seq_id[j][0] = 0
                    batch.logits[j] = int(start + j == length - 1)
                batch.n_tokens = len(part)
                if llc.llama_decode(ctx, batch) != 0:
                    raise RuntimeError("llama_decode failed")
            results[f"prefill {length}"] = time.monotonic() - started
        _per_token(results, lengths)
    finally:
        llc.llama_batch_free(batch)
        llc.llama_free(ctx)
        llc.llama_model_free(model)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="100,1000,2000,4000,8000")
    parser.add_argument("--long", type=int, default=4000, help="the long prompt of the fairness run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--columns", default="", help="comma-separated subset of the six runs (default: all, in table order)"
    )
    args = parser.parse_args()
    lengths = [int(n) for n in args.lengths.split(",")]
    runs = {
        "inferno": lambda logs: measure_inferno(
            ["--stream-interval-ms", "0"], lengths, args.long, args.threads, logs
        ),
        "llama-server": lambda logs: measure_llama_server(lengths, args.long, args.threads, logs),
        "inferno long-prompt-32": lambda logs: measure_inferno(
            ["--long-prompt-tokens-per-step", "32", "--stream-interval-ms", "0"],
            lengths,
            args.long,
            args.threads,
            logs,
        ),
        "inferno 32-token steps": lambda logs: measure_inferno(
            ["--batch-tokens", "32", "--stream-interval-ms", "0"],
            lengths,
            args.long,
            args.threads,
            logs,
            fairness=False,
        ),
        "bare 512-token decodes": lambda _logs: measure_bare(lengths, args.threads, 512),
        "bare 32-token decodes": lambda _logs: measure_bare(lengths, args.threads, 32),
    }
    chosen = args.columns.split(",") if args.columns else list(runs)
    columns: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as logs:
        for name in chosen:
            columns[name] = runs[name](Path(logs))
            print(f"{name}: {json.dumps(columns[name])}", file=sys.stderr, flush=True)
    rows = list(dict.fromkeys(row for column in columns.values() for row in column))
    print("| seconds (ms where named) | " + " | ".join(columns) + " |")
    print("| --- |" + " ---: |" * len(columns))
    for row in rows:
        cells = [f"{c[row]:.2f}" if row in c else "" for c in columns.values()]
        print(f"| {row} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
