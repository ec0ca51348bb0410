"""The core's Prometheus metrics, registered on a registry the composition root owns. Names live here only."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from inferno.core_channel import SERVER_COMMANDS, command_label

_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_SEQUENCE_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
_BATCH_TOKEN_BUCKETS = (1, 4, 16, 64, 128, 256, 512, 1024, 2048)
_INTER_TOKEN_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0)
_LOAD_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
MODEL_STATES = ("unloaded", "loading", "loaded", "failed")


@dataclass(frozen=True)
class ModelEngineMetrics:
    """The engine metrics of one model, labels bound."""

    running: Gauge
    waiting: Gauge
    kv_usage: Gauge
    cancelled: Counter
    time_to_first_token: Histogram
    decode_steps: Counter
    batch_sequences: Histogram
    batch_tokens: Histogram
    prompt_tokens: Counter
    generated_tokens: Counter
    reused_prompt_tokens: Counter
    prefix_cache_hits: Counter
    prefix_cache_bytes: Gauge
    prefix_cache_entries: Gauge
    draft_tokens: Counter
    accepted_draft_tokens: Counter
    interrupted_steps: Counter
    inter_token_latency: Histogram
    embedding_decodes: Counter
    embedding_inputs: Counter
    embedding_tokens: Counter

    def record_embedding_decode(self, sequences: int, tokens: int) -> None:
        self.embedding_decodes.inc()
        self.embedding_inputs.inc(sequences)
        self.embedding_tokens.inc(tokens)

    def record_drafts(self, drafted: int, accepted: int) -> None:
        if drafted:
            self.draft_tokens.inc(drafted)
            self.accepted_draft_tokens.inc(accepted)

    def record_step(self, sequences: int, tokens: int, sampled: int, prompt_tokens: int) -> None:
        self.decode_steps.inc()
        self.batch_sequences.observe(sequences)
        self.batch_tokens.observe(tokens)
        if prompt_tokens:
            self.prompt_tokens.inc(prompt_tokens)
        if sampled:
            self.generated_tokens.inc(sampled)


class EngineMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["model"]
        self._running = Gauge(
            "inferno_engine_running_sequences", "Sequences decoding now", labels, registry=registry
        )
        self._waiting = Gauge(
            "inferno_engine_waiting_sequences",
            "Requests queued for a sequence slot",
            labels,
            registry=registry,
        )
        self._kv_usage = Gauge(
            "inferno_engine_kv_cache_usage_ratio",
            "KV cache reserved by admitted sequences",
            labels,
            registry=registry,
        )
        self._cancelled = Counter(
            "inferno_engine_cancelled_sequences",
            "Sequences cancelled before finishing",
            labels,
            registry=registry,
        )
        self._ttft = Histogram(
            "inferno_engine_time_to_first_token_seconds",
            "From submission to first sampled token",
            labels,
            buckets=_TTFT_BUCKETS,
            registry=registry,
        )
        self._decode_steps = Counter(
            "inferno_engine_decode_steps", "llama_decode calls", labels, registry=registry
        )
        self._batch_sequences = Histogram(
            "inferno_engine_batch_sequences",
            "Sequences per decode step",
            labels,
            buckets=_BATCH_SEQUENCE_BUCKETS,
            registry=registry,
        )
        self._batch_tokens = Histogram(
            "inferno_engine_batch_tokens",
            "Tokens per decode step",
            labels,
            buckets=_BATCH_TOKEN_BUCKETS,
            registry=registry,
        )
        self._prompt_tokens = Counter(
            "inferno_engine_prompt_tokens", "Prompt tokens processed", labels, registry=registry
        )
        self._generated_tokens = Counter(
            "inferno_engine_generated_tokens", "Tokens generated", labels, registry=registry
        )
        self._reused_prompt_tokens = Counter(
            "inferno_engine_reused_prompt_tokens",
            "Prompt tokens taken from cached KV cells instead of computed",
            labels,
            registry=registry,
        )
        self._prefix_cache_hits = Counter(
            "inferno_engine_prefix_cache_hits",
            "Prompts that reused a computed prefix (a host-memory snapshot or a finished sequence's cells)",
            labels,
            registry=registry,
        )
        self._prefix_cache_bytes = Gauge(
            "inferno_engine_prefix_cache_bytes",
            "Host memory held by KV snapshots in the prefix cache",
            labels,
            registry=registry,
        )
        self._prefix_cache_entries = Gauge(
            "inferno_engine_prefix_cache_entries",
            "KV snapshots in the prefix cache",
            labels,
            registry=registry,
        )
        self._draft_tokens = Counter(
            "inferno_engine_draft_tokens",
            "Tokens drafted by prompt lookup and verified (speculative decoding)",
            labels,
            registry=registry,
        )
        self._accepted_draft_tokens = Counter(
            "inferno_engine_accepted_draft_tokens",
            "Drafted tokens the model accepted",
            labels,
            registry=registry,
        )
        self._interrupted_steps = Counter(
            "inferno_engine_interrupted_steps",
            "Decode steps of a long prompt stopped part-way for a short prompt to start (the work is redone)",
            labels,
            registry=registry,
        )

        self._load_seconds = Histogram(
            "inferno_model_load_seconds",
            "Time to load a model and create its engine",
            labels,
            buckets=_LOAD_BUCKETS,
            registry=registry,
        )
        self._errors = Counter(
            "inferno_core_errors",
            "Calls the core ended with an error, by error code and RPC",
            ["code", "method"],
            registry=registry,
        )
        self._inter_token = Histogram(
            "inferno_engine_inter_token_latency_seconds",
            "Time between two tokens of one sequence",
            labels,
            buckets=_INTER_TOKEN_BUCKETS,
            registry=registry,
        )
        self._embedding_decodes = Counter(
            "inferno_embedding_decodes",
            "llama_decode calls of the embedding contexts",
            labels,
            registry=registry,
        )
        self._embedding_inputs = Counter(
            "inferno_embedding_inputs", "Inputs embedded", labels, registry=registry
        )
        self._embedding_tokens = Counter(
            "inferno_embedding_tokens", "Tokens of embedded inputs", labels, registry=registry
        )
        self._model_state = Gauge(
            "inferno_model_state",
            "1 for the state each model is in (unloaded, loading, loaded, failed), 0 for the others",
            ["model", "state"],
            registry=registry,
        )

        # The seed's custom metrics: calls tagged with the `inferno` command they serve (CLI commands against
        # a running server, HTTP requests with X-Inferno-Command), their count and the last one's duration.
        self._commands = Counter(
            "inferno_command_total",
            "Calls made for an inferno CLI command (or an HTTP request naming one), by command",
            ["command"],
            registry=registry,
        )
        self._command_duration_ms = Gauge(
            "inferno_command_duration_ms",
            "How long the last call made for each command took, in milliseconds",
            ["command"],
            registry=registry,
        )
        for command in SERVER_COMMANDS:
            self._commands.labels(command)

    def record_command(self, command: str, milliseconds: float) -> None:
        """Counts one call for the command a caller named (unknown names count as "other")."""
        label = command_label(command)
        self._commands.labels(label).inc()
        self._command_duration_ms.labels(label).set(milliseconds)

    def record_error(self, code: str, method: str) -> None:
        self._errors.labels(code, method.rsplit("/", 1)[-1]).inc()

    def observe_load(self, model_id: str, seconds: float) -> None:
        self._load_seconds.labels(model_id).observe(seconds)

    def set_model_state(self, model_id: str, state: str) -> None:
        for name in MODEL_STATES:
            self._model_state.labels(model_id, name).set(1 if name == state else 0)

    def for_model(self, model_id: str) -> ModelEngineMetrics:
        return ModelEngineMetrics(
            running=self._running.labels(model_id),
            waiting=self._waiting.labels(model_id),
            kv_usage=self._kv_usage.labels(model_id),
            cancelled=self._cancelled.labels(model_id),
            time_to_first_token=self._ttft.labels(model_id),
            decode_steps=self._decode_steps.labels(model_id),
            batch_sequences=self._batch_sequences.labels(model_id),
            batch_tokens=self._batch_tokens.labels(model_id),
            prompt_tokens=self._prompt_tokens.labels(model_id),
            generated_tokens=self._generated_tokens.labels(model_id),
            reused_prompt_tokens=self._reused_prompt_tokens.labels(model_id),
            prefix_cache_hits=self._prefix_cache_hits.labels(model_id),
            prefix_cache_bytes=self._prefix_cache_bytes.labels(model_id),
            prefix_cache_entries=self._prefix_cache_entries.labels(model_id),
            draft_tokens=self._draft_tokens.labels(model_id),
            accepted_draft_tokens=self._accepted_draft_tokens.labels(model_id),
            interrupted_steps=self._interrupted_steps.labels(model_id),
            inter_token_latency=self._inter_token.labels(model_id),
            embedding_decodes=self._embedding_decodes.labels(model_id),
            embedding_inputs=self._embedding_inputs.labels(model_id),
            embedding_tokens=self._embedding_tokens.labels(model_id),
        )
