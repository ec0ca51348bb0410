"""How to run one model, whatever its engine: the one typed schema of engine settings.

The CLI flags, inferno.toml keys, INFERNO_* variables, the supervisor's arguments to its children and the
docs are all derived from the fields below and their metadata (see ENGINE_SETTINGS).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

# A default, not a limit: models trained on 128k tokens would otherwise reserve 128k cells per sequence.
DEFAULT_CONTEXT_CAP = 8192

_SPELLING = "inferno.setting"


@dataclass(frozen=True)
class _Spelling:
    flag: str
    help: str
    minimum: int
    maximum: int
    # Empty: the field's name.
    toml_key: str = ""


@dataclass(frozen=True)
class EngineSettings:
    parallel_sequences: int = field(
        default=8,
        metadata={
            _SPELLING: _Spelling(
                "--parallel",
                "sequences decoded together per model (each has its own KV cache)",
                1,
                256,
                toml_key="parallel",
            )
        },
    )
    context_length: int = field(
        default=0,
        metadata={
            _SPELLING: _Spelling(
                "--ctx-size",
                "most tokens per sequence, prompt and completion "
                f"(0: the model's own, at most {DEFAULT_CONTEXT_CAP})",
                0,
                1 << 20,
            )
        },
    )
    batch_tokens: int = field(
        default=512,
        metadata={_SPELLING: _Spelling("--batch-tokens", "most tokens in one decode step", 1, 1 << 16)},
    )
    # On 2 CPU cores with 8 streams, 32 lowered time-to-first-token p50 from about 890 to 600 ms at unchanged
    # throughput (bench/serving.py); prefill speed per token is the same at 32 as at 512 there.
    prompt_tokens_per_step: int = field(
        default=32,
        metadata={
            _SPELLING: _Spelling(
                "--prompt-tokens-per-step",
                "prompt tokens computed per decode step across waiting prompts; smaller gives first tokens "
                "sooner (0: batch_tokens)",
                0,
                1 << 16,
            )
        },
    )
    # With the embedded model on 2 CPU cores, beside one decoding stream, 16 tokens of a 4,000-token prompt a
    # step rather than 32 took the stream's median gap between tokens from 194 to 99 ms, the prompt taking
    # 26.1 s against 25.9 (8, in another run: 67 against 177 ms, the prompt 47% longer; bench/RESULTS.md).
    long_prompt_tokens_per_step: int = field(
        default=16,
        metadata={
            _SPELLING: _Spelling(
                "--long-prompt-tokens-per-step",
                "tokens a long prompt advances per step for each sequence decoding beside it, up to "
                "--prompt-tokens-per-step; smaller keeps their inter-token latency steadier, larger finishes "
                "the prompt sooner (0: --prompt-tokens-per-step)",
                0,
                1 << 16,
            )
        },
    )
    threads: int = field(
        default=0,
        metadata={_SPELLING: _Spelling("--threads", "CPU threads for llama.cpp (0: all cores)", 0, 1024)},
    )
    cache_tokens: int = field(
        default=0,
        metadata={
            _SPELLING: _Spelling(
                "--cache-tokens",
                "KV cache size in tokens for engines with a shared, paged cache, such as ExLlamaV2 "
                "(0: parallel x context)",
                0,
                1 << 24,
            )
        },
    )

    prefix_cache_mib: int = field(
        default=256,
        metadata={
            _SPELLING: _Spelling(
                "--prefix-cache-mib",
                "host memory for KV snapshots of prompts shared across sequences, so a system prompt or a "
                "conversation's history is computed once per server (0: off)",
                0,
                1 << 20,
            )
        },
    )
    draft_tokens: int = field(
        default=8,
        metadata={
            _SPELLING: _Spelling(
                "--draft-tokens",
                "most tokens drafted per step by prompt lookup (speculative decoding from the prompt and "
                "the reply so far; 0: off)",
                0,
                64,
            )
        },
    )
    stream_interval_ms: int = field(
        default=20,
        metadata={
            _SPELLING: _Spelling(
                "--stream-interval-ms",
                "least time between hand-overs of running streams' tokens to the service: tokens produced "
                "meanwhile go out together, a stream's first and last at once (0: after every decode step)",
                0,
                1000,
            )
        },
    )

    def resolved_context(self, trained_context: int) -> int:
        """The context length a model trained on trained_context tokens runs with."""
        return min(self.context_length or DEFAULT_CONTEXT_CAP, trained_context or DEFAULT_CONTEXT_CAP)


@dataclass(frozen=True)
class SettingSpec:
    """One engine setting and how each surface spells it."""

    # The EngineSettings field.
    name: str
    default: int
    # The command-line flag, e.g. --ctx-size.
    flag: str
    # The key in inferno.toml's [engine] table and in a [[models]] entry.
    toml_key: str
    help: str
    # Allowed values, both ends included.
    minimum: int
    maximum: int

    @property
    def env(self) -> str:
        """INFERNO_ and the flag's name: --ctx-size is INFERNO_CTX_SIZE."""
        return "INFERNO_" + self.flag.removeprefix("--").upper().replace("-", "_")


def _specs() -> tuple[SettingSpec, ...]:
    specs = []
    for f in fields(EngineSettings):
        spelling: _Spelling = f.metadata[_SPELLING]
        assert isinstance(f.default, int)
        specs.append(
            SettingSpec(
                name=f.name,
                default=f.default,
                flag=spelling.flag,
                toml_key=spelling.toml_key or f.name,
                help=spelling.help,
                minimum=spelling.minimum,
                maximum=spelling.maximum,
            )
        )
    return tuple(specs)


# Every engine setting, in field order.
ENGINE_SETTINGS: tuple[SettingSpec, ...] = _specs()


def settings_table_markdown() -> str:
    """The Markdown table of every engine setting that docs/configuration.md holds."""
    rows = [
        "| inferno.toml | Flag | Environment | Default | Range | Meaning |",
        "|---|---|---|---|---|---|",
    ]
    for spec in ENGINE_SETTINGS:
        rows.append(
            f"| `{spec.toml_key}` | `{spec.flag}` | `{spec.env}` | {spec.default} "
            f"| {spec.minimum} to {spec.maximum} | {spec.help} |"
        )
    return "\n".join(rows) + "\n"
