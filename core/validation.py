"""Request checks and the sampling defaults: every range and default lives here, once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from inferno.core.engines.base import SamplingConfig
from inferno.errors import InfernoError, invalid_param
from inferno.model_names import MAX_MODEL_ID_CHARS
from inferno.security_config import SecurityConfig
from inferno.v1 import common_pb2, inference_service_pb2

CHAT_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
MAX_STOP_STRINGS = 4
MAX_CHOICES = 128
DEFAULT_MAX_TOKENS = 2048
# Generous: English averages about 4 characters a token; runs of spaces or digits reach a few dozen.
MAX_CHARS_PER_TOKEN = 64


@dataclass(frozen=True)
class SamplingDefaults:
    temperature: float
    top_p: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0


# The seed API's defaults: chat 0.7, text completions 1.0.
CHAT_DEFAULTS = SamplingDefaults(temperature=0.7)
COMPLETION_DEFAULTS = SamplingDefaults(temperature=1.0)


def _in_range(param: str, value: float, low: float, high: float, low_open: bool = False) -> float:
    if value != value or value > high or value < low or (low_open and value == low):  # NaN fails too
        bound = f"({low}" if low_open else f"[{low}"
        raise invalid_param(param, f"'{param}' must be in {bound}, {high}], got {value}")
    return value


@dataclass(frozen=True)
class RequestLimits:
    """Operator limits on request size ([security] in inferno.toml); 0 means the model's context (no cap for
    max_batch_items)."""

    max_messages: int = 1024
    max_prompt_tokens: int = 0
    max_tokens_cap: int = 0
    max_batch_items: int = 256
    max_sequences_per_request: int = 64

    @classmethod
    def from_security(cls, security: SecurityConfig) -> RequestLimits:
        return cls(
            max_messages=security.max_messages,
            max_prompt_tokens=security.max_prompt_tokens,
            max_tokens_cap=security.max_tokens_cap,
            max_batch_items=security.max_batch_items,
            max_sequences_per_request=security.max_sequences_per_request,
        )

    def check_batch_size(self, count: int) -> None:
        """CreateBatch's items; REST callers send them as 'requests', so the error names that."""
        if self.max_batch_items and count > self.max_batch_items:
            raise invalid_param(
                "requests", f"'requests' takes at most {self.max_batch_items} items, got {count}"
            )

    def check_batch_sequences(self, sequences: int) -> None:
        """A batch's items together create at most as many sequences as a batch may hold items (n and
        best_of count), so a full batch of n=64 items cannot queue 16,384 sequences."""
        if self.max_batch_items and sequences > self.max_batch_items:
            raise invalid_param(
                "requests",
                f"the batch's items would run {sequences} sequences (n and best_of count); "
                f"this server runs at most {self.max_batch_items} per batch",
            )

    def check_message_count(self, count: int) -> None:
        if self.max_messages and count > self.max_messages:
            raise invalid_param("messages", f"at most {self.max_messages} messages are allowed, got {count}")

    def check_text_size(self, chars: int, context_length: int, param: str) -> None:
        """Refuses, before any rendering or tokenizing, text that cannot fit the prompt limit: no tokenizer
        averages more than MAX_CHARS_PER_TOKEN characters a token, so longer text is over it for certain."""
        tokens = min(filter(None, (self.max_prompt_tokens, context_length)), default=0)
        if tokens and chars > tokens * MAX_CHARS_PER_TOKEN:
            raise InfernoError(
                "request_too_large",
                f"'{param}' holds {chars} characters; this server takes at most "
                f"{tokens * MAX_CHARS_PER_TOKEN} ({tokens} tokens)",
                {"param": param, "max_characters": str(tokens * MAX_CHARS_PER_TOKEN)},
            )

    def check_sequences(self, prompts: int, per_prompt: int, per_prompt_param: str) -> None:
        """Sequences one request creates: prompts times n (or best_of). The error names 'prompt' when the
        prompts alone are too many, else the per-prompt count."""
        cap = self.max_sequences_per_request
        if not cap or prompts * per_prompt <= cap:
            return
        param = "prompt" if prompts > cap else per_prompt_param
        raise invalid_param(
            param,
            f"this request would run {prompts} prompt(s) x {per_prompt} ({per_prompt_param}) = "
            f"{prompts * per_prompt} sequences; this server runs at most {cap} per request",
        )

    def check_prompt_length(self, tokens: int, param: str) -> None:
        if self.max_prompt_tokens and tokens > self.max_prompt_tokens:
            raise InfernoError(
                "request_too_large",
                f"the prompt has {tokens} tokens; this server takes at most {self.max_prompt_tokens}",
                {"param": param, "max_prompt_tokens": str(self.max_prompt_tokens)},
            )

    def cap(self, limits: common_pb2.GenerationLimits) -> common_pb2.GenerationLimits:
        """Refuses max_tokens over the cap; an unset max_tokens becomes the cap."""
        if not self.max_tokens_cap:
            return limits
        if limits.HasField("max_tokens") and limits.max_tokens > self.max_tokens_cap:
            raise invalid_param(
                "max_tokens", f"'max_tokens' must be at most {self.max_tokens_cap} on this server"
            )
        capped = common_pb2.GenerationLimits()
        capped.CopyFrom(limits)
        if not capped.HasField("max_tokens"):
            capped.max_tokens = self.max_tokens_cap
        return capped


DEFAULT_LIMITS = RequestLimits()


_FloatSamplingField = Literal[
    "temperature",
    "top_p",
    "presence_penalty",
    "frequency_penalty",
    "min_p",
    "repetition_penalty",
    "typical_p",
]


def resolve_sampling(
    sampling: common_pb2.SamplingParams, defaults: SamplingDefaults, vocab_size: int
) -> SamplingConfig:
    def pick(field: _FloatSamplingField, default: float) -> float:
        return float(getattr(sampling, field)) if sampling.HasField(field) else default

    for token, bias in sampling.logit_bias.items():
        if token >= vocab_size:
            raise invalid_param(
                "logit_bias", f"'logit_bias' token {token} is not below the vocabulary size {vocab_size}"
            )
        _in_range("logit_bias", bias, -100.0, 100.0)
    return SamplingConfig(
        temperature=_in_range("temperature", pick("temperature", defaults.temperature), 0.0, 2.0),
        top_p=_in_range("top_p", pick("top_p", defaults.top_p), 0.0, 1.0, low_open=True),
        presence_penalty=_in_range(
            "presence_penalty", pick("presence_penalty", defaults.presence_penalty), -2, 2
        ),
        frequency_penalty=_in_range(
            "frequency_penalty", pick("frequency_penalty", defaults.frequency_penalty), -2, 2
        ),
        seed=sampling.seed if sampling.HasField("seed") else None,
        top_k=int(sampling.top_k) if sampling.HasField("top_k") else 0,
        min_p=_in_range("min_p", pick("min_p", 0.0), 0.0, 1.0),
        repetition_penalty=_in_range(
            "repetition_penalty", pick("repetition_penalty", 1.0), 0.0, 10.0, low_open=True
        ),
        logit_bias=tuple(sorted(sampling.logit_bias.items())),
        typical_p=_in_range("typical_p", pick("typical_p", 1.0), 0.0, 1.0, low_open=True),
    )


def resolve_min_tokens(limits: common_pb2.GenerationLimits, max_tokens: int) -> int:
    """min_tokens as asked (0 unless set), at most max_tokens."""
    if not limits.HasField("min_tokens"):
        return 0
    if limits.min_tokens > max_tokens:
        raise invalid_param(
            "min_tokens", f"'min_tokens' must be at most max_tokens ({max_tokens}), got {limits.min_tokens}"
        )
    return int(limits.min_tokens)


def resolve_n(n: int | None) -> int:
    """Choices per prompt, 1 to MAX_CHOICES (OpenAI's range)."""
    if n is None:
        return 1
    if not 1 <= n <= MAX_CHOICES:
        raise invalid_param("n", f"'n' must be from 1 to {MAX_CHOICES}, got {n}")
    return n


def resolve_best_of(best_of: int | None, n: int, stream: bool) -> int:
    """Candidates per prompt: n unless asked; from n to MAX_CHOICES; streaming only when it equals n."""
    if best_of is None:
        return n
    if not n <= best_of <= MAX_CHOICES:
        raise invalid_param("best_of", f"'best_of' must be from n ({n}) to {MAX_CHOICES}, got {best_of}")
    if stream and best_of != n:
        raise invalid_param("best_of", "'best_of' greater than 'n' cannot be streamed")
    return best_of


def for_choice(config: SamplingConfig, choice: int) -> SamplingConfig:
    """Choice i of a seeded request samples with seed + i: choices differ, and each is reproducible."""
    return config if config.seed is None or choice == 0 else replace(config, seed=config.seed + choice)


def check_stop(limits: common_pb2.GenerationLimits) -> tuple[str, ...]:
    if len(limits.stop) > MAX_STOP_STRINGS:
        raise invalid_param(
            "stop", f"'stop' takes at most {MAX_STOP_STRINGS} strings, got {len(limits.stop)}"
        )
    if any(not s for s in limits.stop):
        raise invalid_param("stop", "'stop' strings must not be empty")
    return tuple(limits.stop)


def resolve_max_tokens(
    limits: common_pb2.GenerationLimits,
    prompt_tokens: int,
    context_length: int,
    prompt_param: str,
    allow_zero: bool = False,
) -> int:
    """max_tokens as asked, or the default capped to the room left; over the context length is an error that
    names max_tokens when it was asked for and there is room for a token, else prompt_param: the field the
    client sent the prompt in ("messages", "prompt", "prompt[1]").

    allow_zero: 0 is valid (echo: score the prompt, generate nothing)."""
    room = context_length - prompt_tokens
    if limits.HasField("max_tokens"):
        if limits.max_tokens < 1 and not (allow_zero and limits.max_tokens == 0):
            raise invalid_param("max_tokens", f"'max_tokens' must be at least 1, got {limits.max_tokens}")
        wanted = int(limits.max_tokens)
    else:
        wanted = min(DEFAULT_MAX_TOKENS, room)
    asked = max(wanted, 1)
    if room < 1 or wanted > room:
        raise InfernoError(
            "context_length_exceeded",
            f"This model's maximum context length is {context_length} tokens. However, you requested "
            f"{prompt_tokens + asked} tokens ({prompt_tokens} in the prompt, {asked} for the completion). "
            "Please reduce the prompt or max_tokens.",
            {
                "param": "max_tokens" if limits.HasField("max_tokens") and room >= 1 else prompt_param,
                "context_length": str(context_length),
                "prompt_tokens": str(prompt_tokens),
                "max_tokens": str(asked),
            },
        )
    return wanted


def check_token_ids(tokens: Sequence[int], vocab_size: int, param: str) -> None:
    if any(t >= vocab_size for t in tokens):
        raise invalid_param(param, f"token ids in '{param}' must be below the vocabulary size {vocab_size}")


def check_model(model: str) -> str:
    if not model:
        raise invalid_param("model", "'model' is required")
    if len(model) > MAX_MODEL_ID_CHARS:
        raise invalid_param(
            "model", f"'model' must be at most {MAX_MODEL_ID_CHARS} characters, got {len(model)}"
        )
    return model


def check_messages(messages: list[inference_service_pb2.ChatMessage]) -> list[dict[str, Any]]:
    """Messages as dicts: role, content, and name, tool_calls ({id, name, arguments}) or tool_call_id when
    set."""
    if not messages:
        raise invalid_param("messages", "'messages' must hold at least one message")
    rendered: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        if message.role not in CHAT_ROLES:
            raise invalid_param(
                f"messages[{i}].role",
                f"'messages[{i}].role' must be one of {', '.join(sorted(CHAT_ROLES))}, got {message.role!r}",
            )
        # "developer" is OpenAI's newer name for "system"; chat templates know only the latter.
        role = "system" if message.role == "developer" else message.role
        entry: dict[str, Any] = {"role": role, "content": message.content}
        if message.name:
            entry["name"] = message.name
        if message.tool_calls:
            if role != "assistant":
                raise invalid_param(f"messages[{i}].tool_calls", "only assistant messages carry 'tool_calls'")
            entry["tool_calls"] = [
                _tool_call(call, f"messages[{i}].tool_calls[{j}]")
                for j, call in enumerate(message.tool_calls)
            ]
        if message.tool_call_id:
            entry["tool_call_id"] = message.tool_call_id
        rendered.append(entry)
    return rendered


def _tool_call(call: inference_service_pb2.ToolCall, param: str) -> dict[str, str]:
    if call.type not in ("", "function"):
        raise invalid_param(f"{param}.type", f"'{param}.type' must be 'function', got {call.type!r}")
    if not call.function.name:
        raise invalid_param(f"{param}.function.name", f"'{param}.function.name' is required")
    return {"id": call.id, "name": call.function.name, "arguments": call.function.arguments}


MAX_CHAT_TOP_LOGPROBS = 20
MAX_COMPLETION_LOGPROBS = 5


def resolve_chat_logprobs(logprobs: bool, top_logprobs: int | None) -> int | None:
    """None for no log-probabilities, else how many alternatives per token (OpenAI: 0 to 20)."""
    if top_logprobs is not None and not logprobs:
        raise invalid_param("top_logprobs", "'top_logprobs' needs 'logprobs': true")
    if not logprobs:
        return None
    top = top_logprobs or 0
    if top > MAX_CHAT_TOP_LOGPROBS:
        raise invalid_param(
            "top_logprobs", f"'top_logprobs' must be from 0 to {MAX_CHAT_TOP_LOGPROBS}, got {top}"
        )
    return top


def resolve_completion_logprobs(logprobs: int | None) -> int | None:
    if logprobs is not None and logprobs > MAX_COMPLETION_LOGPROBS:
        raise invalid_param(
            "logprobs", f"'logprobs' must be from 0 to {MAX_COMPLETION_LOGPROBS}, got {logprobs}"
        )
    return logprobs
