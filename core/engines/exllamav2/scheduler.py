"""The runtime's SelfScheduler over ExLlamaV2's dynamic generator: one job per sequence, one generator
iteration per step.

The generator, its job class and its sampler settings are reached through JobBuilders and the generator
object itself, so this module imports neither torch nor exllamav2 (the loader passes the real ones; the tests
pass stand-ins that record what they were given). Jobs get no stop conditions and max_new_tokens =
max_tokens: stop strings, end-of-generation tokens and max_tokens are the runtime's to decide.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from inferno.core.engines.exllamav2.logprobs import token_logprobs
from inferno.core.engines.exllamav2.sampling import penalizes, sampler_fields
from inferno.core.runtime.protocol import SampledToken, StepResult
from inferno.core.runtime.sequence import SequenceState
from inferno.errors import InfernoError


class DynamicGenerator(Protocol):
    """The parts of ExLlamaV2DynamicGenerator the scheduler uses."""

    page_size: int
    max_pages: int
    referenced_pages: dict[Any, Any]
    pending_jobs: list[Any]
    active_jobs: list[Any]

    def enqueue(self, job: Any) -> Any: ...

    def cancel(self, job: Any) -> None: ...

    def iterate(self) -> list[dict[str, Any]]: ...

    def num_remaining_jobs(self) -> int: ...


@dataclass(frozen=True)
class JobBuilders:
    """How a sequence becomes an ExLlamaV2DynamicJob."""

    # Prompt tokens -> input_ids, a (1, n) torch.long tensor on the CPU.
    input_ids: Callable[[Sequence[int]], Any]
    # (sampling.sampler_fields(...), logit_bias pairs) -> ExLlamaV2Sampler.Settings.
    settings: Callable[[dict[str, Any], tuple[tuple[int, float], ...]], Any]
    # ExLlamaV2DynamicJob's keyword arguments -> the job.
    job: Callable[..., Any]
    # GBNF -> an ExLlamaV2Filter allowing only grammar-legal tokens; raises InfernoError for a grammar it
    # cannot take. None: constrained output is refused.
    # (GBNF, the request field it came from) -> the generator's filter.
    grammar_filter: Callable[[str, str], Any] | None


@dataclass(eq=False)
class _Job:
    sequence: SequenceState
    job: Any
    settings: Any
    penalized: bool
    # Prompt tokens reported as computed so far.
    prompt_counted: int = 0
    sampling: bool = False


@dataclass
class _StepTally:
    result: StepResult = field(default_factory=StepResult)
    seen: set[int] = field(default_factory=set)


class ExLlamaV2Scheduler:
    def __init__(self, generator: DynamicGenerator, builders: JobBuilders, n_vocab: int) -> None:
        self._generator = generator
        self._builders = builders
        self._n_vocab = n_vocab
        self._keys = itertools.count()
        # By the identifier each job carries (results name their job by it), and by sequence for cancel().
        self._jobs: dict[int, _Job] = {}
        self._keys_by_sequence: dict[SequenceState, int] = {}
        self._reused = 0

    def enqueue(self, sequence: SequenceState) -> None:
        request = sequence.request
        if request.prompt_logprobs is not None:
            raise InfernoError(
                "invalid_parameters",
                "prompt log-probabilities are not available from ExLlamaV2's generator",
                {"param": "prompt_logprobs"},
            )
        if not request.prompt_tokens:
            raise InfernoError("invalid_parameters", "the prompt has no tokens", {"param": "prompt"})
        config = request.sampling
        filters = []
        if config.grammar is not None:
            if self._builders.grammar_filter is None:
                raise InfernoError(
                    "invalid_parameters",
                    "constrained output is not available for this ExLlamaV2 model",
                    {"param": config.grammar_param},
                )
            filters.append(self._builders.grammar_filter(config.grammar, config.grammar_param))
        settings = self._builders.settings(sampler_fields(config), config.logit_bias)
        key = next(self._keys)
        job = self._builders.job(
            input_ids=self._builders.input_ids(request.prompt_tokens),
            max_new_tokens=request.max_tokens,
            min_new_tokens=0,
            gen_settings=settings,
            seed=config.seed,
            stop_conditions=[],
            decode_special_tokens=False,
            return_top_tokens=0,
            return_probs=False,
            return_logits=request.top_logprobs is not None,
            filters=filters,
            filter_prefer_eos=False,
            token_healing=False,
            banned_strings=None,
            identifier=key,
        )
        try:
            self._generator.enqueue(job)
        except AssertionError as exc:  # the job needs more cache pages (or a bigger batch) than there are
            raise InfernoError(
                "context_length_exceeded",
                f"the prompt and max_tokens do not fit ExLlamaV2's KV cache: {exc}",
            ) from exc
        self._jobs[key] = _Job(sequence, job, settings, penalizes(config))
        self._keys_by_sequence[sequence] = key

    def cancel(self, sequence: SequenceState) -> None:
        key = self._keys_by_sequence.pop(sequence, None)
        if key is None:
            return
        entry = self._jobs.pop(key, None)
        if entry is not None:
            self._generator.cancel(entry.job)

    def step(self) -> StepResult:
        for live in self._jobs.values():
            if live.penalized:
                # ExLlamaV2 penalizes the last `range` tokens of prompt + output: just the output.
                live.settings.token_repetition_range = max(int(live.job.new_tokens), 0)
        tally = _StepTally()
        for result in self._generator.iterate():
            key = result.get("identifier")
            found = self._jobs.get(key) if isinstance(key, int) else None
            if found is None or not isinstance(key, int):  # cancelled, or a job that is not ours
                continue
            entry = found
            stage = result.get("stage")
            if stage == "prefill":
                tally.seen.add(key)
                self._count_prompt(entry, int(result["curr_progress"]) - self._cached_tokens(entry), tally)
            elif stage == "streaming":
                tally.seen.add(key)
                self._stream(key, entry, result, tally)
        tally.result.sequences = len(tally.seen)
        return tally.result

    def has_work(self) -> bool:
        return self._generator.num_remaining_jobs() > 0

    @property
    def running(self) -> int:
        return len(self._generator.active_jobs)

    @property
    def waiting(self) -> int:
        return len(self._generator.pending_jobs)

    @property
    def kv_usage(self) -> float:
        return len(self._generator.referenced_pages) / max(self._generator.max_pages, 1)

    @property
    def reused_prompt_tokens(self) -> int:
        return self._reused

    def close(self) -> None:
        for sequence in list(self._keys_by_sequence):
            self.cancel(sequence)

    def _stream(self, key: int, entry: _Job, result: dict[str, Any], tally: _StepTally) -> None:
        sequence = entry.sequence
        if not entry.sampling:
            # The prompt's last token goes in with the first generation pass; what the cache held is known.
            entry.sampling = True
            prompt = len(sequence.request.prompt_tokens)
            reused = min(self._cached_tokens(entry), prompt - 1)
            sequence.reused_prompt_tokens = reused
            self._reused += reused
            self._count_prompt(entry, prompt - reused, tally)
        tally.result.batch_tokens += 1
        tokens = _token_ids(result.get("token_ids"))
        top_n = sequence.request.top_logprobs
        if top_n is None or not tokens:
            tally.result.sampled += [SampledToken(sequence, token) for token in tokens]
        else:
            logits = np.asarray(result["logits"], dtype=np.float32).reshape(len(tokens), -1)
            tally.result.sampled += [
                SampledToken(sequence, token, token_logprobs(logits[i], token, top_n, self._n_vocab))
                for i, token in enumerate(tokens)
            ]
        if result.get("eos"):
            self._jobs.pop(key, None)
            self._keys_by_sequence.pop(sequence, None)
            reason = result.get("eos_reason")
            if reason != "max_new_tokens":  # jobs carry no stop conditions; nothing else should end one
                tally.result.failed.append(
                    (
                        sequence,
                        InfernoError("internal_error", f"ExLlamaV2 ended the sequence itself ({reason})"),
                    )
                )

    def _count_prompt(self, entry: _Job, computed: int, tally: _StepTally) -> None:
        fresh = max(computed - entry.prompt_counted, 0)
        entry.prompt_counted += fresh
        tally.result.prompt_tokens += fresh
        tally.result.batch_tokens += fresh

    def _cached_tokens(self, entry: _Job) -> int:
        """Prompt tokens the generator took from cached pages (whole pages, and a partial page's start)."""
        job = entry.job
        return int(job.cached_pages) * self._generator.page_size + int(job.cached_tokens)


def _token_ids(value: Any) -> list[int]:
    """The token ids of a result's (1, k) token_ids tensor; none when the generator held them back (it
    holds tokens that end in an incomplete UTF-8 character and sends them with the next)."""
    if value is None:
        return []
    return [int(t) for t in np.asarray(value).reshape(-1)]
