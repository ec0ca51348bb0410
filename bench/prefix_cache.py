"""Prefix caching: Inferno against llama.cpp's llama-server on two workloads where prompts share prefixes.

- shared system prompt: waves of N concurrent requests (8 and 16) that share a ~400-token system prompt and
  differ in the question; one untimed warm wave first, then --repeats timed waves per level.
- multi-turn chat: 8 conversations at once, each turn resending the whole history (system prompt, earlier
  questions and the engine's own earlier replies) plus a new question, --turns turns.

Both servers get the same rendered ChatML text on /v1/completions at temperature 0, --max-tokens tokens per
reply (ignore_eos; Inferno also gets the ban on end-of-generation tokens that llama-server's ignore_eos is,
serving.inferno_fixed_length_body), the same threads, slots and KV cells, and the CPU path Inferno's core
chooses. They run side by side and take turns wave by wave (reversed every other wave), each idle while the
other is measured.

    .venv/bin/python bench/prefix_cache.py [--repeats 3] [--turns 4] [--servers inferno,llama-server]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serving import (
    HttpServerSpec,
    default_model_path,
    free_port,
    inferno_spec,
    llama_server_spec,
    machine_facts,
    servers_side_by_side,
    turn_order,
)
from text_streams import TextStream, client_session, stream_text

from inferno.core.engines.llamacpp.cpu_path import process_cpu_path

N_CTX = 4096
PARALLEL = 16
SYSTEM_PROMPT = (
    "You are the support assistant of Northwind Traders, a wholesaler of kitchen equipment. "
    + " ".join(
        f"Policy {i}: orders of category {i} ship within {i % 5 + 1} working days, returns of category {i} "
        f"are accepted for {10 + i} days, and questions about category {i} go to desk {100 + i}."
        for i in range(1, 13)
    )
)
QUESTIONS = (
    "Where is my order?", "Can I change my delivery address?", "Do you ship abroad?", "How do I pay?",
    "Can I return a blender?", "Who answers questions about ovens?", "How long does shipping take?",
    "Do you sell spare parts?", "Is there a discount for schools?", "Can I cancel an order?",
    "What is your phone number?", "Do you have a catalogue?", "How do I open an account?",
    "Can I pick up an order?", "Are prices without tax?", "Do you deliver on Saturdays?",
)  # fmt: skip


def render(turns: list[tuple[str, str]], question: str) -> str:
    """ChatML with the shared system prompt, earlier (question, reply) turns and a new question."""
    parts = [f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n"]
    for asked, answered in turns:
        parts.append(f"<|im_start|>user\n{asked}<|im_end|>\n<|im_start|>assistant\n{answered}<|im_end|>\n")
    parts.append(f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n")
    return "".join(parts)


@dataclass
class Measured:
    # Per timed wave or turn: aggregate tok/s, and every stream's time to first token.
    tok_s: list[float] = field(default_factory=list)
    ttft_s: list[float] = field(default_factory=list)

    def add(self, streams: list[TextStream], wall_s: float) -> None:
        self.tok_s.append(sum(s.tokens for s in streams) / wall_s)
        self.ttft_s.extend(s.ttft_s for s in streams)

    def row(self) -> tuple[float, float]:
        return statistics.median(self.tok_s), 1000 * statistics.median(self.ttft_s)


async def _wave(
    base_url: str, model: str, extra_body: dict[str, Any], prompts: list[str], max_tokens: int
) -> tuple[list[TextStream], float]:
    body = {"model": model, "temperature": 0, "max_tokens": max_tokens, **extra_body}
    async with client_session() as session:
        loop = asyncio.get_running_loop()
        started = loop.time()
        streams = await asyncio.gather(
            *(stream_text(session, base_url, {**body, "prompt": p}) for p in prompts)
        )
        return list(streams), loop.time() - started


Target = tuple[str, str, dict[str, Any]]  # (base URL, model id, the server's extra request fields)


def shared_system_prompt(targets: dict[str, Target], level: int, repeats: int, max_tokens: int
                         ) -> dict[str, Measured]:  # fmt: skip
    measured = {name: Measured() for name in targets}
    for target in targets.values():
        asyncio.run(_wave(*target, [render([], q) for q in QUESTIONS[:level]], 4))  # warm wave
    for repeat in range(repeats):
        prompts = [render([], f"Request {repeat}-{i}. {QUESTIONS[i % len(QUESTIONS)]}") for i in range(level)]
        for name in turn_order(list(targets), repeat):
            streams, wall = asyncio.run(_wave(*targets[name], prompts, max_tokens))
            measured[name].add(streams, wall)
    return measured


def multi_turn(targets: dict[str, Target], conversations: int, turns: int, max_tokens: int
               ) -> dict[str, Measured]:  # fmt: skip
    """Turn 1 is the warm-up; turns 2 onwards are timed (they resend the history, each server its own)."""
    measured = {name: Measured() for name in targets}
    histories: dict[str, list[list[tuple[str, str]]]] = {
        name: [[] for _ in range(conversations)] for name in targets
    }
    for turn in range(turns):
        questions = [f"Turn {turn}. {QUESTIONS[(c + turn) % len(QUESTIONS)]}" for c in range(conversations)]
        for name in turn_order(list(targets), turn):
            history = histories[name]
            prompts = [render(history[c], questions[c]) for c in range(conversations)]
            streams, wall = asyncio.run(_wave(*targets[name], prompts, max_tokens))
            for c, stream in enumerate(streams):
                history[c].append((questions[c], stream.text))
            if turn:
                measured[name].add(streams, wall)
    return measured


def run_servers(specs: dict[str, tuple[HttpServerSpec, int]], logs: Path, args: argparse.Namespace
                ) -> dict[str, dict[str, Measured]]:  # fmt: skip
    """The servers side by side, taking turns wave by wave, so a drift in the machine's speed weighs on all
    of them alike; each keeps its own caches."""
    results: dict[str, dict[str, Measured]] = {name: {} for name in specs}
    with servers_side_by_side(specs, logs) as started:
        targets = {name: (*started[name], spec.extra_body) for name, (spec, _) in specs.items()}
        for level in (8, 16):
            workload = f"shared system prompt, {level} streams"
            for name, measured in shared_system_prompt(targets, level, args.repeats, args.max_tokens).items():
                results[name][workload] = measured
                print(f"  {name} shared @{level}: {measured.row()}", file=sys.stderr, flush=True)
        for name, measured in multi_turn(targets, 8, args.turns, args.max_tokens).items():
            results[name]["multi-turn chat, 8 conversations"] = measured
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default="inferno,llama-server")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    repack = process_cpu_path().repack
    model_path = default_model_path()
    specs: dict[str, Callable[[int], HttpServerSpec]] = {
        "inferno": lambda port: inferno_spec(port, args.threads, model_path, N_CTX, PARALLEL, [], repack),
        "llama-server": lambda port: llama_server_spec(
            port, args.threads, model_path, N_CTX, PARALLEL, repack
        ),
    }
    ports = {name: free_port() for name in args.servers.split(",")}
    with tempfile.TemporaryDirectory(prefix="inferno-prefix-") as logs:
        columns = run_servers(
            {name: (specs[name](port), port) for name, port in ports.items()}, Path(logs), args
        )
    facts = machine_facts()
    names = list(columns)
    waves = f"{args.repeats} waves per level; turns 2-{args.turns} of the chat"
    print(f"{facts['cpu_model']}, {facts['nproc']} CPUs, {args.threads} threads, "
          f"{args.max_tokens} tokens per reply, medians ({waves})\n")  # fmt: skip
    header = ["workload", *(f"{n} tok/s" for n in names), *(f"{n} TTFT p50 ms" for n in names)]
    if len(names) == 2:
        header += [f"{names[0]}/{names[1]} tok/s", f"{names[0]}/{names[1]} TTFT"]
    print("| " + " | ".join(header) + " |")
    print("|---|" + "---:|" * (len(header) - 1))
    for workload in columns[names[0]]:
        rows = [columns[n][workload].row() for n in names]
        cells = [f"{r[0]:.1f}" for r in rows] + [f"{r[1]:.0f}" for r in rows]
        if len(rows) == 2:
            cells += [f"{rows[0][0] / rows[1][0]:.2f}x", f"{rows[0][1] / rows[1][1]:.2f}x"]
        print(f"| {workload} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
