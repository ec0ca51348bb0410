"""Embeddings benchmark: Inferno's /v1/embeddings (all-MiniLM-L6-v2 as GGUF f16 through llama.cpp) against
sentence-transformers running the same model in-process, on the same CPU and thread count.

For 1, 32 and 256 inputs per request it reports the median embeddings per second over --repeats runs (after
one warm-up), and the ratio. Inferno is measured through HTTP (JSON encoding included); sentence-transformers
with encode(batch_size=64), its usual call.

    .venv/bin/python bench/embeddings.py            # prints a Markdown table
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

SIZES = (1, 32, 256)
MODEL_ID = "all-minilm-l6-v2"


def _sentences(count: int) -> list[str]:
    words = ("inference", "server", "model", "token", "batch", "stream", "vector", "cosine", "latency")
    return [
        " ".join(words[(i + j) % len(words)] for j in range(8 + i % 9)) + f" number {i}."
        for i in range(count)
    ]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _median_rate(run: object, count: int, repeats: int) -> float:
    run()  # type: ignore[operator]
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return count / statistics.median(times)


def bench_inferno(threads: int, repeats: int) -> dict[int, float]:
    port, grpc_port = _free_port(), _free_port()
    data = tempfile.mkdtemp(prefix="inferno-bench-")
    env = {**os.environ, "INFERNO_RATE_LIMIT": "0", "INFERNO_DATA_DIR": data}
    command = [
        sys.executable, "-m", "inferno.cli", "serve", "--port", str(port), "--grpc-port", str(grpc_port),
        "--threads", str(threads), "--parallel", "1", "--ctx-size", "512",
    ]  # fmt: skip
    log = Path(data) / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=data)
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=300) as client:
            for _ in range(600):
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            rates = {}
            for size in SIZES:
                body: dict[str, object] = {"model": MODEL_ID, "input": _sentences(size)}

                def run(body: dict[str, object] = body) -> None:
                    reply = client.post("/v1/embeddings", json=body)
                    reply.raise_for_status()

                rates[size] = _median_rate(run, size, repeats)
            return rates
    finally:
        process.terminate()
        process.wait(timeout=30)


def bench_sentence_transformers(threads: int, repeats: int) -> dict[int, float]:
    import torch
    from sentence_transformers import SentenceTransformer

    from inferno.core.embedded import embedding_model_source

    torch.set_num_threads(threads)
    model = SentenceTransformer(str(embedding_model_source()), device="cpu")
    rates = {}
    for size in SIZES:
        sentences = _sentences(size)
        rates[size] = _median_rate(
            lambda s=sentences: model.encode(s, batch_size=64, normalize_embeddings=True), size, repeats
        )
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    inferno = bench_inferno(args.threads, args.repeats)
    reference = bench_sentence_transformers(args.threads, args.repeats)
    print(f"all-MiniLM-L6-v2, {args.threads} threads, median of {args.repeats} runs, embeddings per second\n")
    print("| inputs per request | Inferno (HTTP, GGUF f16) | sentence-transformers (in-process) | ratio |")
    print("|---:|---:|---:|---:|")
    for size in SIZES:
        ratio = inferno[size] / reference[size]
        print(f"| {size} | {inferno[size]:.1f} | {reference[size]:.1f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
