"""Speculative decoding from the prompt: Inferno with prompt-lookup drafts (the default) against itself with
--draft-tokens 0, and llama-server as a reference, on an input-copying workload (rewrite or extract from a
given text) and on the distinct-prompt chat workload of bench/serving.py.

Single stream (and 4 streams for the chat workload), greedy, medians of --repeats. The three servers run side
by side and take turns, workload by workload. The drafted replies must be token for token the undrafted ones:
the script checks the texts are equal.

    .venv/bin/python bench/speculative.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from chat_prompts import QUESTIONS, render_prompt
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
PARALLEL = 4
DOCUMENTS = (
    "Invoice 4471 was issued on 3 March 2025 to Northwind Traders, 12 Harbour Street, Bristol, for 40 units "
    "of part A-113 at 12.50 each and 15 units of part B-207 at 31.00 each. Payment is due within 30 days. "
    "The contact person is Maria Lopez, maria.lopez@northwind.example, phone 0117 496 0321.",
    "The meeting on Tuesday covered three topics. First, the new warehouse in Leeds opens in June and needs "
    "twelve more staff. Second, the delivery vans will be replaced by electric ones over the next two years. "
    "Third, the customer portal gets a new login page, which the web team will test with fifty customers.",
    "To reset the router, unplug it from the power socket, wait thirty seconds, and plug it back in. When "
    "the front light turns green, open a browser and go to the setup page. Enter the password printed on the "
    "label under the router, then choose a new network name and a new password of at least twelve "
    "characters.",
)
INSTRUCTIONS = (
    "Repeat the following text exactly, word for word:",
    "Rewrite the following text with every sentence on its own line, keeping the words unchanged:",
)


def copying_prompts() -> list[str]:
    return [
        f"<|im_start|>user\n{instruction}\n\n{document}<|im_end|>\n<|im_start|>assistant\n"
        for document in DOCUMENTS
        for instruction in INSTRUCTIONS
    ]


async def _run(
    base_url: str,
    model: str,
    prompts: list[str],
    max_tokens: int,
    fixed_length: dict[str, Any] | None,
    streams: int,
) -> tuple[list[TextStream], float]:
    """fixed_length: the server's request fields for replies of exactly max_tokens (its spec's extra_body), or
    None to let replies end at an end of generation."""
    body = {"model": model, "temperature": 0, "max_tokens": max_tokens, **(fixed_length or {})}
    results: list[TextStream] = []
    async with client_session() as session:
        loop = asyncio.get_running_loop()
        started = loop.time()
        for start in range(0, len(prompts), streams):
            batch = prompts[start : start + streams]
            results += await asyncio.gather(
                *(stream_text(session, base_url, {**body, "prompt": p}) for p in batch)
            )
        return results, loop.time() - started


def _workloads() -> dict[str, tuple[list[str], int, bool, int]]:
    """Workload -> (prompts, max_tokens, ignore_eos, concurrent streams)."""
    chat = [render_prompt(q, i) for i, q in enumerate(QUESTIONS)]
    return {
        "input copying, 1 stream": (copying_prompts(), 200, False, 1),
        "distinct chat prompts, 1 stream": (chat[:4], 96, True, 1),
        "distinct chat prompts, 4 streams": (chat, 96, True, 4),
    }


def measure(
    specs: dict[str, tuple[HttpServerSpec, int]], logs: Path, repeats: int
) -> dict[str, dict[str, tuple[float, list[str]]]]:
    """Server -> workload -> (median tok/s over the repeats, the texts of the last repeat). The servers run
    side by side and take turns (reversed every other repeat), so a drift in the machine's speed weighs on
    all of them alike."""
    rates: dict[str, dict[str, list[float]]] = {name: {} for name in specs}
    texts: dict[str, dict[str, list[str]]] = {name: {} for name in specs}
    with servers_side_by_side(specs, logs) as targets:
        for target in targets.values():
            asyncio.run(_run(*target, [render_prompt(QUESTIONS[0])], 8, None, 1))  # warm-up
        for workload, (prompts, max_tokens, ignore_eos, streams) in _workloads().items():
            for repeat in range(repeats):
                for name in turn_order(list(specs), repeat):
                    fixed_length = specs[name][0].extra_body if ignore_eos else None
                    results, wall = asyncio.run(
                        _run(*targets[name], prompts, max_tokens, fixed_length, streams)
                    )
                    rates[name].setdefault(workload, []).append(sum(r.tokens for r in results) / wall)
                    texts[name][workload] = [r.text for r in results]
            for name in specs:
                print(f"  {name} {workload}: {rates[name][workload]}", file=sys.stderr, flush=True)
    return {
        name: {w: (statistics.median(r), texts[name][w]) for w, r in by_workload.items()}
        for name, by_workload in rates.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--draft-tokens", type=int, default=8)
    args = parser.parse_args()
    repack = process_cpu_path().repack
    model = default_model_path()
    runs = {
        f"inferno, drafts of {args.draft_tokens}": lambda port: inferno_spec(
            port, args.threads, model, N_CTX, PARALLEL, ["--draft-tokens", str(args.draft_tokens)], repack
        ),
        "inferno, no drafts": lambda port: inferno_spec(
            port, args.threads, model, N_CTX, PARALLEL, ["--draft-tokens", "0"], repack
        ),
        "llama-server": lambda port: llama_server_spec(port, args.threads, model, N_CTX, PARALLEL, repack),
    }
    ports = {name: free_port() for name in runs}
    specs = {name: (make(ports[name]), ports[name]) for name, make in runs.items()}
    with tempfile.TemporaryDirectory(prefix="inferno-spec-") as logs:
        columns = measure(specs, Path(logs), args.repeats)
    drafted, plain = list(columns)[:2]
    facts = machine_facts()
    print(f"{facts['cpu_model']}, {facts['nproc']} CPUs, {args.threads} threads, greedy, "
          f"median of {args.repeats}\n")  # fmt: skip
    names = list(columns)
    print("| workload | " + " | ".join(f"{n} tok/s" for n in names) + " | drafts / no drafts | same text |")
    print("|---|" + "---:|" * len(names) + "---:|---|")
    for workload in columns[drafted]:
        rates = [columns[n][workload][0] for n in names]
        same = columns[drafted][workload][1] == columns[plain][workload][1]
        cells = " | ".join(f"{r:.1f}" for r in rates)
        print(f"| {workload} | {cells} | {rates[0] / rates[1]:.2f}x | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
