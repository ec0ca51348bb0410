"""GPU throughput: aggregate generated tokens per second at 1, 8 and 32 concurrent streams, Inferno's core
(the ExLlamaV2 engine) over gRPC against transformers' own batched `generate` on the same model folder.

Both sides get the same prompts as token ids (chat prompts rendered once, tokenized by the folder's
tokenizer), generate exactly --max-tokens tokens per stream greedily (the core with ignore_eos, transformers
with min_new_tokens), and are timed from the first request to the last token, prompt processing included. The
core runs N concurrent StreamCompletion calls; transformers runs one left-padded batch of N. Median of
--repeats runs after a warm-up. scripts/gpu-check.sh runs it against the core it started:

    python bench/gpu_throughput.py --core 127.0.0.1:50051 --model-dir HF_DIR --json OUT.json --markdown OUT.md

A CPU rehearsal (e.g. against a llama.cpp core on the embedded GGUF and an FP32 transformers baseline):

    python bench/gpu_throughput.py --core 127.0.0.1:50051 --model-dir HF_DIR --device cpu --dtype float32 \\
        --streams 1,2 --max-tokens 8 --repeats 1
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib.metadata
import json
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
from chat_prompts import QUESTIONS, render_prompt

from inferno.v1 import (
    common_pb2,
    inference_service_pb2,
    inference_service_pb2_grpc,
    model_service_pb2,
    model_service_pb2_grpc,
)

STREAM_TIMEOUT_S = 300.0


def _numbered_prompt(number: int) -> str:
    return render_prompt(QUESTIONS[number % len(QUESTIONS)], number)


@dataclass(frozen=True)
class BenchConfig:
    core: str | None
    model_id: str | None
    model_dir: Path | None
    streams: tuple[int, ...]
    max_tokens: int
    repeats: int
    device: str
    dtype: str
    # The core's column heading: which engine serves the model.
    core_label: str = "Inferno core (ExLlamaV2)"


@dataclass
class Run:
    seconds: float
    tokens: int
    # Per stream, seconds from the start of the run to its first generated text (the core only).
    first_token_s: list[float] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Level:
    streams: int
    runs: list[Run]

    @property
    def median_tokens_per_s(self) -> float:
        return statistics.median(run.tokens_per_s for run in self.runs)

    @property
    def median_first_token_s(self) -> float | None:
        times = [t for run in self.runs for t in run.first_token_s]
        return statistics.median(times) if times else None


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the core, over gRPC ------------------------------------------------------------------------------------


def _completion_request(
    model_id: str, prompt: Sequence[int] | str, max_tokens: int
) -> inference_service_pb2.StreamCompletionRequest:
    if isinstance(prompt, str):
        message = inference_service_pb2.Prompt(text=prompt)
    else:
        message = inference_service_pb2.Prompt(tokens=inference_service_pb2.TokenIds(ids=list(prompt)))
    return inference_service_pb2.StreamCompletionRequest(
        params=inference_service_pb2.CompletionParams(
            model=model_id,
            prompts=[message],
            sampling=common_pb2.SamplingParams(temperature=0.0),
            limits=common_pb2.GenerationLimits(max_tokens=max_tokens, ignore_eos=True),
        )
    )


async def _one_stream(
    stub: inference_service_pb2_grpc.InferenceServiceAsyncStub,
    request: inference_service_pb2.StreamCompletionRequest,
    started: float,
) -> tuple[int, float]:
    """(completion tokens from the final usage, seconds from `started` to the first text)."""
    first = float("nan")
    tokens = 0
    async for message in stub.StreamCompletion(request, timeout=STREAM_TIMEOUT_S):
        if message.text and first != first:  # nan: nothing yet
            first = time.perf_counter() - started
        if message.HasField("usage"):
            tokens = message.usage.completion_tokens
    return tokens, first


async def _core_run(
    stub: inference_service_pb2_grpc.InferenceServiceAsyncStub,
    model_id: str,
    prompts: Sequence[Sequence[int] | str],
    max_tokens: int,
) -> Run:
    requests = [_completion_request(model_id, prompt, max_tokens) for prompt in prompts]
    started = time.perf_counter()
    results = await asyncio.gather(*(_one_stream(stub, request, started) for request in requests))
    seconds = time.perf_counter() - started
    tokens = sum(count for count, _ in results)
    expected = len(prompts) * max_tokens
    if tokens != expected:
        raise RuntimeError(f"the core generated {tokens} tokens, not {expected}: is ignore_eos honoured?")
    return Run(seconds, tokens, [first for _, first in results])


async def _first_model_id(channel: grpc.aio.Channel) -> str:
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    listed = await stub.ListModels(model_service_pb2.ListModelsRequest(), timeout=10)
    if not listed.models:
        raise RuntimeError("the core lists no models")
    return str(listed.models[0].id)


async def bench_core(config: BenchConfig, prompts: Sequence[Sequence[int] | str]) -> tuple[str, list[Level]]:
    assert config.core is not None
    async with grpc.aio.insecure_channel(config.core) as channel:
        model_id = config.model_id or await _first_model_id(channel)
        stub = inference_service_pb2_grpc.InferenceServiceStub(channel)
        _progress(f"core {config.core}, model {model_id}: warm-up")
        await _core_run(stub, model_id, prompts[:1], config.max_tokens)
        levels = []
        for streams in config.streams:
            runs = []
            for repeat in range(config.repeats):
                run = await _core_run(stub, model_id, prompts[:streams], config.max_tokens)
                _progress(f"core {streams} streams, run {repeat + 1}: {run.tokens_per_s:.1f} tok/s")
                runs.append(run)
            levels.append(Level(streams, runs))
    return model_id, levels


# --- transformers, in process -------------------------------------------------------------------------------


class TransformersBaseline:
    """The folder loaded by transformers; one left-padded `generate` per batch."""

    def __init__(self, model_dir: Path, device: str, dtype: str) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        torch_dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[dtype]
        self.device = device
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch_dtype)
        self.model.to(device)  # type: ignore[arg-type]  # transformers types its wrapped `to` oddly
        self.model.eval()
        eos = self.model.generation_config.eos_token_id
        self.pad_id = int(eos[0] if isinstance(eos, list) else eos if eos is not None else 0)

    def _synchronize(self) -> None:
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.synchronize()

    def run(self, prompts: Sequence[Sequence[int]], max_tokens: int) -> Run:
        import torch

        width = max(len(p) for p in prompts)
        ids = torch.tensor([[self.pad_id] * (width - len(p)) + list(p) for p in prompts], device=self.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        self._synchronize()
        started = time.perf_counter()
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=ids,
                attention_mask=mask,
                do_sample=False,
                max_new_tokens=max_tokens,
                min_new_tokens=max_tokens,
                pad_token_id=self.pad_id,
            )
        self._synchronize()
        seconds = time.perf_counter() - started
        generated = int(output.shape[1] - width) * len(prompts)
        if generated != len(prompts) * max_tokens:
            raise RuntimeError(f"transformers generated {generated} tokens, not {len(prompts) * max_tokens}")
        return Run(seconds, generated)


def bench_transformers(config: BenchConfig, prompts: Sequence[Sequence[int]]) -> list[Level]:
    assert config.model_dir is not None
    _progress(f"transformers on {config.device} ({config.dtype}): loading {config.model_dir}")
    baseline = TransformersBaseline(config.model_dir, config.device, config.dtype)
    baseline.run(prompts[:1], config.max_tokens)
    levels = []
    for streams in config.streams:
        runs = []
        for repeat in range(config.repeats):
            run = baseline.run(prompts[:streams], config.max_tokens)
            _progress(f"transformers batch {streams}, run {repeat + 1}: {run.tokens_per_s:.1f} tok/s")
            runs.append(run)
        levels.append(Level(streams, runs))
    return levels


# --- report -------------------------------------------------------------------------------------------------


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_facts(device: str) -> dict[str, Any]:
    import torch

    on_gpu = device.startswith("cuda") and torch.cuda.is_available()
    cpu = f"CPU ({platform.processor() or platform.machine()})"
    return {
        "device": torch.cuda.get_device_name() if on_gpu else cpu,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": _version("transformers"),
        "exllamav2": _version("exllamav2"),
        "grpcio": _version("grpcio"),
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _cell(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render_markdown(
    config: BenchConfig, facts: dict[str, Any], core: list[Level] | None, baseline: list[Level] | None
) -> str:
    by_streams_core = {level.streams: level for level in core or []}
    by_streams_base = {level.streams: level for level in baseline or []}
    lines = [
        f"### GPU throughput on {facts['device']}",
        "",
        f"SmolLM2-135M-Instruct exported to {config.dtype} from the embedded GGUF; {config.max_tokens} "
        f"tokens per stream, greedy, median of {config.repeats} runs. torch {facts['torch']} "
        f"(CUDA {facts['cuda']}), transformers {facts['transformers']}, exllamav2 {facts['exllamav2']}, "
        f"{facts['date']}.",
        "",
        f"| streams | {config.core_label} tok/s | TTFT p50 | transformers generate tok/s | ratio |",
        "|---:|---:|---:|---:|---:|",
    ]
    for streams in config.streams:
        ours = by_streams_core.get(streams)
        theirs = by_streams_base.get(streams)
        ours_rate = ours.median_tokens_per_s if ours else None
        theirs_rate = theirs.median_tokens_per_s if theirs else None
        first = ours.median_first_token_s if ours else None
        ratio = f"{ours_rate / theirs_rate:.2f}x" if ours_rate and theirs_rate else "-"
        ttft = f"{first * 1000:.0f} ms" if first is not None else "-"
        lines.append(f"| {streams} | {_cell(ours_rate)} | {ttft} | {_cell(theirs_rate)} | {ratio} |")
    return "\n".join(lines) + "\n"


def to_json(
    config: BenchConfig,
    facts: dict[str, Any],
    model_id: str | None,
    core: list[Level] | None,
    baseline: list[Level] | None,
) -> dict[str, Any]:
    def levels(found: list[Level] | None) -> list[dict[str, Any]] | None:
        if found is None:
            return None
        return [
            {
                "streams": level.streams,
                "median_tokens_per_s": level.median_tokens_per_s,
                "median_first_token_s": level.median_first_token_s,
                "runs": [asdict(run) for run in level.runs],
            }
            for level in found
        ]

    settings = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}
    return {
        "config": settings,
        "machine": facts,
        "model_id": model_id,
        "core": levels(core),
        "transformers": levels(baseline),
    }


# --- command line -------------------------------------------------------------------------------------------


def _prompts(config: BenchConfig) -> tuple[list[Sequence[int] | str], list[Sequence[int]] | None]:
    """The prompts for the core and, with a model folder, the same as token ids for transformers."""
    count = max(config.streams)
    texts = [_numbered_prompt(number) for number in range(count)]
    if config.model_dir is None:
        return list(texts), None
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(config.model_dir))
    ids: list[Sequence[int]] = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    return list(ids), ids


def parse_args(argv: Sequence[str] | None = None) -> tuple[BenchConfig, Path | None, Path | None]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--core", metavar="HOST:PORT", help="a running core (omit: transformers only)")
    parser.add_argument("--model-id", help="the core's model (default: the first it lists)")
    parser.add_argument("--core-label", default=BenchConfig.core_label, help="the core's column heading")
    parser.add_argument("--model-dir", type=Path, help="the Hugging Face folder (omit: the core only)")
    parser.add_argument("--streams", default="1,8,32", help="concurrent streams / batch sizes")
    parser.add_argument("--max-tokens", type=int, default=128, help="tokens generated per stream")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per level (median reported)")
    parser.add_argument("--device", default="cuda", help="transformers' device")
    parser.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    parser.add_argument("--json", type=Path, help="write the full results here")
    parser.add_argument("--markdown", type=Path, help="write the table here")
    args = parser.parse_args(argv)
    if args.core is None and args.model_dir is None:
        parser.error("give --core, --model-dir or both")
    config = BenchConfig(
        core=args.core,
        model_id=args.model_id,
        model_dir=args.model_dir,
        streams=tuple(int(s) for s in args.streams.split(",")),
        max_tokens=args.max_tokens,
        repeats=args.repeats,
        device=args.device,
        dtype=args.dtype,
        core_label=args.core_label,
    )
    return config, args.json, args.markdown


def main(argv: Sequence[str] | None = None) -> int:
    config, json_path, markdown_path = parse_args(argv)
    core_prompts, baseline_prompts = _prompts(config)
    model_id, core = asyncio.run(bench_core(config, core_prompts)) if config.core else (None, None)
    baseline = bench_transformers(config, baseline_prompts) if baseline_prompts is not None else None
    facts = machine_facts(config.device)
    table = render_markdown(config, facts, core, baseline)
    print(table)
    if markdown_path:
        markdown_path.write_text(table)
    if json_path:
        json_path.write_text(json.dumps(to_json(config, facts, model_id, core, baseline), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
