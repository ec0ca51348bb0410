"""Soak: concurrent streams with random disconnects, cancels and invalid requests against one `inferno serve`.

    .venv/bin/python bench/soak.py [--seconds 300] [--streams 16] [--seed N] [--json PATH]

Starts `inferno serve` on free ports with the embedded model (`--parallel 16 --ctx-size 1024`), then runs
`--streams` workers for `--seconds`. Each worker loops over, chosen at random:

- an SSE chat or completion read to its end (it must end with `[DONE]`),
- an SSE chat or completion dropped after a few chunks (the client closes the connection),
- a WebSocket with one to three chats, some cancelled with a `cancel` message after a few chunks, some
  sockets closed with chats still running (every chat not abandoned must end with one `chat_done` or `error`),
- a gRPC StreamChatCompletion read to its end or cancelled after a few messages,
- about 10% invalid requests (bad parameters, an unknown model, malformed JSON; over REST, WebSocket and
  gRPC), which must be refused with a 4xx (or the matching gRPC code) and the seed's error body.

Then it checks: zero 5xx (and zero INTERNAL/UNKNOWN over gRPC, zero WebSocket closes with 1011), every error
in the seed's shape, zero leaked sequences (`GET /v1/models/{id}/status` reports no running or waiting
sequence within 10 s of the last request), neither child restarted, RSS growth of the core and the gateway
under the bound below, and that a plain chat still answers. It prints a markdown table and exits 1 if any
check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import platform
import random
import re
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import psutil
from serving import HttpServerSpec, default_model_path, free_port, percentile, running_server

from inferno.errors import error_from_rpc
from inferno.v1 import common_pb2, inference_service_pb2, inference_service_pb2_grpc

PARALLEL = 16
CTX_SIZE = 1024
INVALID_SHARE = 0.10
LEAK_WAIT_S = 10.0
REQUEST_TIMEOUT_S = 120.0
# RSS growth allowed per child (core, gateway) from the start of the soak (after a warm-up) to its end. Runs
# of 15 s to 5 minutes on a 2-core AMD EPYC grew by at most 1.8 MB, with peaks at most 7 MB over the start
# (the core's decode buffers); 32 MB is over four times that swing, and a leak of 16 KB a request (about
# 2,500 requests in 5 minutes there) crosses it.
# The core's prefix cache keeps KV snapshots in host memory up to --prefix-cache-mib by design: its growth
# (read from /metrics) is not counted against the bound.
RSS_GROWTH_BOUND_MB = 32.0
# A WebSocket worker runs up to three chats at once, so 16 workers can hold 48 streams; the default cap (16
# per caller, and every local client is one caller) would refuse some with 429, which counts as a failure.
MAX_CONCURRENT_STREAMS = 64
_BAD_GRPC_CODES = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNAVAILABLE)

Worker = Callable[["Soak", random.Random], Awaitable[None]]


@dataclass
class Tally:
    """What the workers saw; every failure is kept as one line naming the request."""

    outcomes: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    bad_bodies: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    # Seconds each workload took, by workload (its function's name), however it ended.
    durations: dict[str, list[float]] = field(default_factory=dict)

    def fail(self, what: str) -> None:
        self.failures.append(what)

    def first_chunk(self, workload: str, started: float) -> None:
        self.durations.setdefault(f"{workload}, to its first token", []).append(time.monotonic() - started)


def seed_shaped(body: Any) -> bool:
    """The seed's error body: {"error": {"type": str, "code": str, "message": str, "details": dict}}."""
    error = body.get("error") if isinstance(body, dict) else None
    return (
        isinstance(error, dict)
        and all(isinstance(error.get(key), str) for key in ("type", "code", "message"))
        and isinstance(error.get("details"), dict)
    )


@dataclass
class Soak:
    base_url: str
    grpc_target: str
    model_id: str
    session: aiohttp.ClientSession
    # gRPC calls run on a blocking channel in threads: grpc.aio calls sharing this busy event loop with the
    # HTTP workers saw their first message up to 45 s late, while a separate process saw it within 2.5 s.
    channel: grpc.Channel
    grpc_pool: ThreadPoolExecutor
    tally: Tally = field(default_factory=Tally)

    def chat_body(self, rng: random.Random, max_tokens: int, stream: bool) -> dict[str, Any]:
        topic = rng.choice(("ships", "rivers", "bread", "owls", "clocks", "winter", "bridges", "tea"))
        return {
            "model": self.model_id,
            "messages": [
                {"role": "user", "content": f"Tell me something about {topic} (#{rng.random():.6f})."}
            ],
            "max_tokens": max_tokens,
            "temperature": rng.choice((0.0, 0.7, 1.0)),
            "stream": stream,
        }

    def completion_body(self, rng: random.Random, max_tokens: int) -> dict[str, Any]:
        return {
            "model": self.model_id,
            "prompt": f"Once upon a time, number {rng.randrange(10**6)},",
            "max_tokens": max_tokens,
            "temperature": 0.8,
            "stream": True,
        }

    async def check_http_error(self, label: str, resp: aiohttp.ClientResponse, want_4xx: bool) -> None:
        text = await resp.text()
        if resp.status >= 500:
            self.tally.server_errors.append(f"{label}: {resp.status} {text[:200]}")
            return
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        if not seed_shaped(body):
            self.tally.bad_bodies.append(f"{label}: {resp.status} {text[:200]}")
        elif not want_4xx:
            self.tally.fail(f"{label}: {resp.status} {text[:200]}")


# ----------------------------------------------------------------------------------------------------
# Workloads


async def sse_stream(soak: Soak, rng: random.Random) -> None:
    chat = rng.random() < 0.6
    drop_after = rng.randint(1, 5) if rng.random() < 0.5 else None
    # A dropped stream asks for more tokens than it reads, so the server is still generating when it goes.
    max_tokens = 64 if drop_after else rng.randint(4, 16)
    path = "/v1/chat/completions" if chat else "/v1/completions"
    body = soak.chat_body(rng, max_tokens, True) if chat else soak.completion_body(rng, max_tokens)
    label = f"SSE {'chat' if chat else 'completion'} {'dropped' if drop_after else 'full'}"
    started = time.monotonic()
    async with soak.session.post(soak.base_url + path, json=body) as resp:
        if resp.status != 200:
            await soak.check_http_error(label, resp, want_4xx=False)
            return
        chunks, done, texts = 0, False, 0
        async for raw in resp.content:
            line = raw.strip()
            if line.startswith(b"event: error"):
                soak.tally.fail(f"{label}: error event mid-stream")
            if not line.startswith(b"data:"):
                continue
            if line[5:].strip() == b"[DONE]":
                done = True
                break
            chunks += 1
            choices = json.loads(line[5:]).get("choices") or [{}]
            if choices[0].get("text") or (choices[0].get("delta") or {}).get("content"):
                texts += 1
                if texts == 1:
                    soak.tally.first_chunk("sse_stream", started)
            if drop_after is not None and chunks >= drop_after:
                resp.close()  # drops the connection mid-stream
                soak.tally.outcomes[label] += 1
                return
        if not done:
            soak.tally.fail(f"{label}: stream ended without [DONE] after {chunks} chunks")
            return
    soak.tally.outcomes[label] += 1


async def ws_chats(soak: Soak, rng: random.Random) -> None:
    count = rng.randint(1, 3)
    cancel_after = {i: rng.randint(1, 4) for i in range(count) if rng.random() < 0.5}
    abandon = rng.random() < 0.2
    async with soak.session.ws_connect(soak.base_url.replace("http", "ws", 1) + "/ws") as ws:
        for i in range(count):
            await ws.send_json(
                {"type": "chat", "id": i, "data": soak.chat_body(rng, 48 if i in cancel_after else 12, True)}
            )
        chunks: Counter[int] = Counter()
        ended: Counter[int] = Counter()
        while len(ended) < count:
            message = await ws.receive(timeout=REQUEST_TIMEOUT_S)
            if message.type is not aiohttp.WSMsgType.TEXT:
                soak.tally.fail(
                    f"WS: socket closed ({message.type.name}, code {ws.close_code}) with chats running"
                )
                if ws.close_code == aiohttp.WSCloseCode.INTERNAL_ERROR:
                    soak.tally.server_errors.append("WS: close code 1011")
                return
            frame = json.loads(message.data)
            chat_id = frame.get("id")
            if frame["type"] == "chat_chunk":
                chunks[chat_id] += 1
                if chunks[chat_id] == cancel_after.get(chat_id):
                    await ws.send_json({"type": "cancel", "id": chat_id})
                if abandon and sum(chunks.values()) >= 2:
                    soak.tally.outcomes["WS closed with chats running"] += 1
                    return  # leaving the block closes the socket; the server must cancel the chats
            elif frame["type"] in ("chat_done", "error"):
                ended[chat_id] += 1
                if frame["type"] == "error":
                    code = frame.get("data", {}).get("error", {}).get("code")
                    if not seed_shaped(frame.get("data")):
                        soak.tally.bad_bodies.append(f"WS error frame: {message.data[:200]}")
                    elif code == "internal_error":
                        soak.tally.server_errors.append(f"WS: {message.data[:200]}")
                    else:
                        soak.tally.fail(f"WS chat refused: {message.data[:200]}")
                    continue
                reason = frame["data"].get("finish_reason")
                soak.tally.outcomes[f"WS chat {'cancelled' if reason == 'cancelled' else 'done'}"] += 1
        if any(n != 1 for n in ended.values()):
            soak.tally.fail(f"WS: a chat ended more than once: {dict(ended)}")


async def grpc_stream(soak: Soak, rng: random.Random) -> None:
    cancel_after = rng.randint(1, 5) if rng.random() < 0.6 else None
    params = inference_service_pb2.ChatCompletionParams(
        model=soak.model_id,
        messages=[
            inference_service_pb2.ChatMessage(role="user", content=f"Describe a harbour #{rng.random()}.")
        ],
        sampling=common_pb2.SamplingParams(temperature=0.8),
        limits=common_pb2.GenerationLimits(max_tokens=64 if cancel_after else 12),
    )
    label = f"gRPC stream {'cancelled' if cancel_after else 'full'}"
    loop = asyncio.get_running_loop()
    request = inference_service_pb2.StreamChatCompletionRequest(params=params)
    error, first_s = await loop.run_in_executor(soak.grpc_pool, _grpc_stream, soak, request, cancel_after)
    if first_s is not None:
        soak.tally.durations.setdefault("grpc_stream, to its first token", []).append(first_s)
    if error is None:
        soak.tally.outcomes[label] += 1
        return
    what = f"{label}: {error.code().name} {error.details()}"
    (soak.tally.server_errors if error.code() in _BAD_GRPC_CODES else soak.tally.failures).append(what)


def _grpc_stream(
    soak: Soak, request: inference_service_pb2.StreamChatCompletionRequest, cancel_after: int | None
) -> tuple[grpc.RpcError | None, float | None]:
    """One gRPC stream on a blocking channel: read to its end or cancelled after `cancel_after` messages."""
    stub = inference_service_pb2_grpc.InferenceServiceStub(soak.channel)
    started = time.monotonic()
    call = stub.StreamChatCompletion(request, timeout=REQUEST_TIMEOUT_S)
    first_s: float | None = None
    received = 0
    try:
        for message in call:
            received += 1
            if first_s is None and message.delta.content:
                first_s = time.monotonic() - started
            if cancel_after is not None and received >= cancel_after:
                call.cancel()
                break
    except grpc.RpcError as error:
        return error, first_s
    return None, first_s


_INVALID_BODIES: tuple[tuple[str, Callable[[dict[str, Any]], dict[str, Any]]], ...] = (
    ("temperature 9", lambda b: {**b, "temperature": 9}),
    ("temperature as text", lambda b: {**b, "temperature": "hot"}),
    ("max_tokens -1", lambda b: {**b, "max_tokens": -1}),
    ("unknown model", lambda b: {**b, "model": "no-such-model"}),
    ("messages missing", lambda b: {k: v for k, v in b.items() if k != "messages"}),
    ("message without role", lambda b: {**b, "messages": [{"content": "hi"}]}),
    ("top_p 2", lambda b: {**b, "top_p": 2}),
    ("n 0", lambda b: {**b, "n": 0}),
)


async def invalid_request(soak: Soak, rng: random.Random) -> None:
    where = rng.random()
    if where < 0.6:
        if rng.random() < 0.2:
            label = "invalid REST: malformed JSON"
            data = b'{"model": "' + soak.model_id.encode() + b'", "messages": [{"role": "user", '
            request = soak.session.post(soak.base_url + "/v1/chat/completions", data=data, headers=_JSON)
        else:
            name, spoil = rng.choice(_INVALID_BODIES)
            label = f"invalid REST: {name}"
            body = spoil(soak.chat_body(rng, 8, rng.random() < 0.5))
            request = soak.session.post(soak.base_url + "/v1/chat/completions", json=body)
        async with request as resp:
            if 400 <= resp.status < 500:
                soak.tally.outcomes["invalid REST refused 4xx"] += 1
            await soak.check_http_error(label, resp, want_4xx=400 <= resp.status < 500)
    elif where < 0.8:
        name, spoil = rng.choice(_INVALID_BODIES)
        async with soak.session.ws_connect(soak.base_url.replace("http", "ws", 1) + "/ws") as ws:
            await ws.send_json({"type": "chat", "id": "bad", "data": spoil(soak.chat_body(rng, 8, True))})
            message = await ws.receive(timeout=REQUEST_TIMEOUT_S)
            if message.type is not aiohttp.WSMsgType.TEXT:
                soak.tally.fail(f"invalid WS {name}: socket closed ({message.type.name})")
                return
            frame = json.loads(message.data)
            if frame.get("type") != "error" or not seed_shaped(frame.get("data")):
                soak.tally.bad_bodies.append(f"invalid WS {name}: {message.data[:200]}")
            elif frame["data"]["error"]["code"] == "internal_error":
                soak.tally.server_errors.append(f"invalid WS {name}: {message.data[:200]}")
            else:
                soak.tally.outcomes["invalid WS refused"] += 1
    else:
        params = inference_service_pb2.ChatCompletionParams(
            model=rng.choice((soak.model_id, "no-such-model")),
            messages=[inference_service_pb2.ChatMessage(role="user", content="hi")],
            sampling=common_pb2.SamplingParams(temperature=9.0),
        )
        stub = inference_service_pb2_grpc.InferenceServiceStub(soak.channel)
        invalid = inference_service_pb2.CreateChatCompletionRequest(params=params)
        try:
            await asyncio.get_running_loop().run_in_executor(
                soak.grpc_pool, partial(stub.CreateChatCompletion, invalid, timeout=REQUEST_TIMEOUT_S)
            )
            soak.tally.fail("invalid gRPC: temperature 9 was accepted")
        except grpc.RpcError as error:
            if error.code() in _BAD_GRPC_CODES:
                soak.tally.server_errors.append(f"invalid gRPC: {error.code().name} {error.details()}")
            elif not error_from_rpc(error).code:
                soak.tally.bad_bodies.append(f"invalid gRPC: {error.code().name} without ErrorInfo")
            else:
                soak.tally.outcomes["invalid gRPC refused"] += 1


_JSON = {"Content-Type": "application/json"}
_VALID: tuple[Worker, ...] = (sse_stream, sse_stream, ws_chats, grpc_stream)


async def worker(soak: Soak, rng: random.Random, deadline: float) -> None:
    while time.monotonic() < deadline:
        action = invalid_request if rng.random() < INVALID_SHARE else rng.choice(_VALID)
        started = time.monotonic()
        try:
            await action(soak, rng)
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            soak.tally.fail(f"{action.__name__}: {type(error).__name__}: {error}")
        soak.tally.durations.setdefault(action.__name__, []).append(time.monotonic() - started)


# ----------------------------------------------------------------------------------------------------
# Checks


@dataclass(frozen=True)
class Children:
    core: psutil.Process
    gateway: psutil.Process

    @classmethod
    def find(cls) -> Children:
        found: dict[str, psutil.Process] = {}
        for proc in psutil.Process().children(recursive=True):
            try:
                cmdline = proc.cmdline()
            except psutil.Error:
                continue
            if "inferno.cli" in " ".join(cmdline):
                for role in ("core", "gateway"):
                    if role in cmdline:
                        found[role] = proc
        return cls(found["core"], found["gateway"])

    def rss_mb(self) -> tuple[float, float]:
        return self.core.memory_info().rss / 2**20, self.gateway.memory_info().rss / 2**20

    def alive(self) -> bool:
        return self.core.is_running() and self.gateway.is_running()


async def prefix_cache_mb(soak: Soak) -> float:
    """The core's prefix-cache snapshots (inferno_engine_prefix_cache_bytes, all models), in MB."""
    async with soak.session.get(f"{soak.base_url}/metrics") as resp:
        text = await resp.text()
    held = re.findall(r"^inferno_engine_prefix_cache_bytes\{[^}]*\} (\S+)$", text, re.MULTILINE)
    return sum(float(value) for value in held) / 2**20


async def sequences_in_flight(soak: Soak) -> int:
    async with soak.session.get(f"{soak.base_url}/v1/models/{soak.model_id}/status") as resp:
        engine = (await resp.json())["engine"]
        return int(engine["running_sequences"]) + int(engine["waiting_sequences"])


async def wait_for_no_sequences(soak: Soak) -> tuple[int, float]:
    started = time.monotonic()
    left = await sequences_in_flight(soak)
    while left and time.monotonic() - started < LEAK_WAIT_S:
        await asyncio.sleep(0.25)
        left = await sequences_in_flight(soak)
    return left, time.monotonic() - started


async def plain_chat_answers(soak: Soak) -> bool:
    body = {"model": soak.model_id, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8}
    async with soak.session.post(soak.base_url + "/v1/chat/completions", json=body) as resp:
        if resp.status != 200:
            return False
        reply = await resp.json()
        return bool(reply["choices"][0]["message"]["content"])


async def warm_up(soak: Soak) -> None:
    rng = random.Random(0)
    for action in (sse_stream, ws_chats, grpc_stream, invalid_request):
        for _ in range(3):
            await action(soak, rng)
    soak.tally = Tally()


@dataclass
class Report:
    seconds: float
    streams: int
    seed: int
    outcomes: dict[str, int]
    server_errors: list[str]
    bad_bodies: list[str]
    failures: list[str]
    durations: dict[str, list[float]]
    rss_start_mb: dict[str, float]
    rss_end_mb: dict[str, float]
    rss_peak_mb: dict[str, float]
    # The core's prefix-cache snapshots at the start and at the end.
    prefix_cache_mb: tuple[float, float]
    leaked_sequences: int
    drained_in_s: float
    restarted: bool
    plain_chat_ok: bool
    machine: str
    date: str

    def checks(self) -> list[tuple[str, bool, str]]:
        growth = {k: self.rss_end_mb[k] - self.rss_start_mb[k] for k in self.rss_start_mb}
        cache_growth = self.prefix_cache_mb[1] - self.prefix_cache_mb[0]
        growth["core"] -= cache_growth
        cache_note = {"core": f"; prefix cache {cache_growth:+.1f} not counted", "gateway": ""}
        return [
            ("zero 5xx (HTTP 5xx, gRPC INTERNAL/UNKNOWN/UNAVAILABLE, WS 1011 or internal_error)",
             not self.server_errors, str(len(self.server_errors))),
            ("every error in the seed's body shape", not self.bad_bodies, f"{len(self.bad_bodies)} not"),
            ("no other failure (stream without final event, refused valid request, client error)",
             not self.failures, str(len(self.failures))),
            ("zero leaked sequences", self.leaked_sequences == 0,
             f"{self.leaked_sequences} left, idle after {self.drained_in_s:.1f} s"),
            ("core and gateway never restarted", not self.restarted,
             "restarted" if self.restarted else "same pids"),
            *(
                (f"{name} RSS growth under {RSS_GROWTH_BOUND_MB:.0f} MB", growth[name] < RSS_GROWTH_BOUND_MB,
                 f"{self.rss_start_mb[name]:.0f} -> {self.rss_end_mb[name]:.0f} MB ({growth[name]:+.1f}"
                 f"{cache_note[name]}; peak {self.rss_peak_mb[name]:.0f})")
                for name in ("core", "gateway")
            ),
            ("a plain chat still answers", self.plain_chat_ok, "yes" if self.plain_chat_ok else "no"),
        ]  # fmt: skip

    @property
    def passed(self) -> bool:
        return all(ok for _, ok, _ in self.checks())

    def markdown(self) -> str:
        total = sum(self.outcomes.values())
        lines = [
            f"Soak: {self.seconds:.0f} s, {self.streams} concurrent workers, seed {self.seed}; "
            f"{self.machine}; {self.date}",
            "",
            "| requests by outcome | count |",
            "| --- | ---: |",
            *(f"| {name} | {count} |" for name, count in sorted(self.outcomes.items())),
            f"| **all** | **{total}** |",
            "",
            "| workload | runs | p50 s | p95 s | max s |",
            "| --- | ---: | ---: | ---: | ---: |",
            *(
                f"| {name} | {len(times)} | {percentile(times, 0.5):.2f} | {percentile(times, 0.95):.2f} "
                f"| {max(times):.2f} |"
                for name, times in sorted(self.durations.items())
            ),
            "",
            "| check | result | value |",
            "| --- | --- | --- |",
            *(f"| {name} | {'pass' if ok else '**FAIL**'} | {value} |" for name, ok, value in self.checks()),
        ]
        listed = (("5xx", self.server_errors), ("bad bodies", self.bad_bodies), ("failures", self.failures))
        for title, items in listed:
            if items:
                lines += ["", f"{title} ({len(items)}, first 10):", *(f"- {item}" for item in items[:10])]
        return "\n".join(lines)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {psutil.cpu_count()} cores"


async def soak_server(base_url: str, grpc_target: str, model_id: str, args: argparse.Namespace) -> Report:
    with (
        grpc.insecure_channel(grpc_target) as channel,
        ThreadPoolExecutor(max_workers=args.streams, thread_name_prefix="soak-grpc") as pool,
    ):
        return await _soak(base_url, grpc_target, model_id, args, channel, pool)


async def _soak(
    base_url: str,
    grpc_target: str,
    model_id: str,
    args: argparse.Namespace,
    channel: grpc.Channel,
    pool: ThreadPoolExecutor,
) -> Report:
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
        soak = Soak(base_url, grpc_target, model_id, session, channel, pool)
        children = Children.find()
        await warm_up(soak)
        rss_start = children.rss_mb()
        cache_start = await prefix_cache_mb(soak)
        peak = list(rss_start)
        started = time.monotonic()
        deadline = started + args.seconds
        master = random.Random(args.seed)
        tasks = [
            asyncio.create_task(worker(soak, random.Random(master.randrange(2**32)), deadline))
            for _ in range(args.streams)
        ]
        while not all(task.done() for task in tasks):
            await asyncio.sleep(1.0)
            if children.alive():
                peak = [max(p, now) for p, now in zip(peak, children.rss_mb(), strict=True)]
        for task in tasks:
            if task.exception() is not None:
                soak.tally.fail(f"worker crashed: {task.exception()!r}")
        elapsed = time.monotonic() - started
        restarted = not children.alive()
        leaked, drained = await wait_for_no_sequences(soak)
        plain_ok = await plain_chat_answers(soak)
        rss_end = children.rss_mb() if not restarted else (float("nan"), float("nan"))
        cache_end = await prefix_cache_mb(soak) if not restarted else cache_start
    names = ("core", "gateway")
    return Report(
        seconds=elapsed,
        streams=args.streams,
        seed=args.seed,
        outcomes=dict(soak.tally.outcomes),
        server_errors=soak.tally.server_errors,
        bad_bodies=soak.tally.bad_bodies,
        failures=soak.tally.failures,
        durations=soak.tally.durations,
        rss_start_mb=dict(zip(names, rss_start, strict=True)),
        rss_end_mb=dict(zip(names, rss_end, strict=True)),
        rss_peak_mb=dict(zip(names, peak, strict=True)),
        prefix_cache_mb=(cache_start, cache_end),
        leaked_sequences=leaked,
        drained_in_s=drained,
        restarted=restarted,
        plain_chat_ok=plain_ok,
        machine=machine(),
        date=datetime.date.today().isoformat(),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, help="`inferno serve --threads` (default: its own)")
    parser.add_argument("--json", type=Path, default=None, help="also write the report as JSON here")
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the server this started is stopped too (it runs in its own session).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    http_port, grpc_port = free_port(), free_port()
    launcher = Path(sys.executable).parent / "inferno"
    base = [str(launcher)] if launcher.exists() else [sys.executable, "-m", "inferno.cli"]
    command = [
        *base, "serve", "--port", str(http_port), "--grpc-port", str(grpc_port),
        "--model", str(default_model_path()), "--ctx-size", str(CTX_SIZE), "--parallel", str(PARALLEL),
    ]  # fmt: skip
    if args.threads is not None:
        command += ["--threads", str(args.threads)]
    with tempfile.TemporaryDirectory(prefix="inferno-soak-") as tmp:
        config = Path(tmp) / "inferno.toml"
        config.write_text(f"[security]\nmax_concurrent_streams = {MAX_CONCURRENT_STREAMS}\n")
        command += ["--config", str(config)]
        spec = HttpServerSpec("inferno", command, {}, Path(tmp))
        with running_server(spec, http_port, Path(tmp)) as model_id:
            report = asyncio.run(
                soak_server(f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}", model_id, args)
            )
            log = (Path(tmp) / "inferno.log").read_text(errors="replace")
    print(report.markdown())
    tracebacks = log.count("Traceback (most recent call last)")
    print(f"\nserver log: {tracebacks} tracebacks")
    if args.json is not None:
        args.json.write_text(json.dumps({**report.__dict__, "log_tracebacks": tracebacks}, indent=2) + "\n")
    sys.exit(0 if report.passed else 1)


if __name__ == "__main__":
    main()
