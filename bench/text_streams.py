"""Streamed completions that keep their text, for the workloads whose next request depends on the reply
(multi-turn chat) or whose output is compared (speculative decoding): one SSE stream, timed from its send."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass(frozen=True)
class TextStream:
    text: str
    ttft_s: float
    total_s: float
    tokens: int


async def completion_chunks(resp: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    """The parsed `data:` events of an OpenAI-style SSE response, up to [DONE]."""
    async for raw in resp.content:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            return
        yield json.loads(data)


async def stream_text(
    session: aiohttp.ClientSession,
    base_url: str,
    body: dict[str, Any],
) -> TextStream:
    """POST /v1/completions with stream=true; the reply's text, time to its first text and to its end."""
    started = time.perf_counter()
    first: float | None = None
    parts: list[str] = []
    tokens: int | None = None
    payload = {**body, "stream": True, "stream_options": {"include_usage": True}}
    async with session.post(base_url + "/v1/completions", json=payload) as resp:
        if resp.status != 200:
            raise RuntimeError(f"POST /v1/completions -> {resp.status}: {await resp.text()}")
        async for chunk in completion_chunks(resp):
            for choice in chunk.get("choices") or ():
                if choice.get("text"):
                    first = first if first is not None else time.perf_counter() - started
                    parts.append(choice["text"])
            if chunk.get("usage"):
                tokens = int(chunk["usage"]["completion_tokens"])
    total = time.perf_counter() - started
    if first is None:
        first = total
    return TextStream("".join(parts), first, total, tokens if tokens is not None else len(parts))


def client_session() -> aiohttp.ClientSession:
    timeout = aiohttp.ClientTimeout(total=None, sock_read=600)
    return aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0))


def median_ms(values: Sequence[float]) -> float:
    return 1000 * statistics.median(values)
