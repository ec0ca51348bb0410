"""The scripted model: its vocabulary (one token per byte, plus EOS), its replies, its log-probabilities."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from inferno.core.chat_template import ChatTemplate
from inferno.core.engines.base import ModelDescription, TokenLogprobs
from inferno.core.engines.capabilities import EngineCapabilities
from inferno.core.engines.loading import DeviceMemory, EngineLoad, LoadedEngine
from inferno.core.runtime.protocol import BatchDecoder, SelfScheduler

EOS = 256
N_VOCAB = 257
CONTEXT_LENGTH = 4096
# Plain text, no special tokens: what a template renders is exactly the prompt's bytes.
TEMPLATE = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}assistant:"


@dataclass(frozen=True)
class Rule:
    when: str
    reply: str


@dataclass(frozen=True)
class Script:
    """Replies: the first rule whose `when` is in the prompt, else the default. Each step sleeps delay_s.
    chat_template replaces the plain TEMPLATE (a model whose template thinks in <think> tags, say)."""

    rules: tuple[Rule, ...]
    default: str
    delay_s: float = 0.0
    chat_template: str = TEMPLATE

    @staticmethod
    def read(path: Path) -> Script:
        raw = json.loads(path.read_text())
        rules = tuple(Rule(r["when"], r["reply"]) for r in raw.get("rules", []))
        return Script(
            rules, raw["default"], float(raw.get("delay_s", 0.0)), raw.get("chat_template", TEMPLATE)
        )

    def reply_for(self, prompt: tuple[int, ...]) -> bytes:
        text = bytes(t for t in prompt if t < 256).decode("utf-8", errors="replace")
        reply = next((r.reply for r in self.rules if r.when in text), self.default)
        return reply.encode()


class ByteVocabulary:
    n_vocab = N_VOCAB

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        return list(text.encode())

    def token_bytes(self, token: int) -> bytes:
        return bytes([token]) if token < 256 else b""

    def is_end_of_generation(self, token: int) -> bool:
        return token == EOS


def reply_token(reply: bytes, index: int) -> int:
    """The index-th token of a reply: its bytes, then EOS forever (ignore_eos starts the reply over)."""
    if index < len(reply):
        return reply[index]
    return EOS


def sampled_logprob(seed: int | None, token: int, top_n: int) -> TokenLogprobs:
    """A made-up but deterministic distribution: the sampled token's log-probability depends on the seed (so
    best_of has something to rank), alternatives are the next token ids, each 1 nat less likely."""
    logprob = -0.1 * (1 + (seed or 0) % 5)
    top = tuple(((token + k) % N_VOCAB, logprob - k) for k in range(top_n))
    return TokenLogprobs(token, logprob, top)


def prompt_logprob(token: int, top_n: int) -> TokenLogprobs:
    logprob = -1.0 - 0.1 * (token % 3)
    return TokenLogprobs(token, logprob, tuple(((token + k) % N_VOCAB, logprob - k) for k in range(top_n)))


def loaded(
    request: EngineLoad, capabilities: EngineCapabilities, generator: BatchDecoder | SelfScheduler
) -> LoadedEngine:
    description = ModelDescription(
        **{**request.description.__dict__, "context_length": CONTEXT_LENGTH, "vocab_size": N_VOCAB}
    )
    request.report("reading_weights", 1.0)
    return LoadedEngine(
        description=description,
        capabilities=capabilities,
        vocabulary=ByteVocabulary(),
        chat_template=ChatTemplate(Script.read(request.path).chat_template, "", ""),
        generator=generator,
        make_embedder=None,
        memory=lambda: DeviceMemory(host_bytes=1 << 20),
        close=lambda: None,
    )
