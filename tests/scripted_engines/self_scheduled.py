"""The scripted engine in the SelfScheduler shape: it admits and batches its own jobs, as ExLlamaV2's dynamic
generator does, and like it computes no prompt log-probabilities."""

from __future__ import annotations

import time
from dataclasses import dataclass

from inferno.core.engines.capabilities import EngineCapabilities
from inferno.core.engines.loading import EngineLoad, LoadedEngine
from inferno.core.runtime.protocol import SampledToken, StepResult
from inferno.core.runtime.sequence import SequenceState
from tests.scripted_engines.script import Script, loaded, reply_token, sampled_logprob

CAPABILITIES = EngineCapabilities(
    engine="scripted-self",
    device="none (a test double)",
    formats=("script",),
    batching="engine",
    prompt_logprobs=False,
    prefix_reuse=False,
)


@dataclass
class _Job:
    reply: bytes
    produced: int = 0


class ScriptedGenerator:
    def __init__(self, script: Script, parallel: int) -> None:
        self._script = script
        self._parallel = parallel
        self._jobs: dict[SequenceState, _Job] = {}

    def enqueue(self, sequence: SequenceState) -> None:
        self._jobs[sequence] = _Job(self._script.reply_for(sequence.request.prompt_tokens))

    def cancel(self, sequence: SequenceState) -> None:
        self._jobs.pop(sequence, None)

    def has_work(self) -> bool:
        return bool(self._jobs)

    @property
    def running(self) -> int:
        return min(len(self._jobs), self._parallel)

    @property
    def waiting(self) -> int:
        return max(len(self._jobs) - self._parallel, 0)

    @property
    def kv_usage(self) -> float:
        return self.running / self._parallel

    @property
    def reused_prompt_tokens(self) -> int:
        return 0

    def step(self) -> StepResult:
        time.sleep(self._script.delay_s)
        result = StepResult()
        for sequence, job in list(self._jobs.items())[: self._parallel]:
            request = sequence.request
            if job.produced == 0:
                result.prompt_tokens += len(request.prompt_tokens)
            token = reply_token(job.reply, job.produced % (len(job.reply) + 1))
            job.produced += 1
            top = request.top_logprobs
            logprobs = None if top is None else sampled_logprob(request.sampling.seed, token, top)
            result.sampled.append(SampledToken(sequence, token, logprobs))
            result.sequences += 1
            result.batch_tokens += 1
            if job.produced >= request.max_tokens:  # the job ends; the runtime ends the sequence too
                del self._jobs[sequence]
        return result

    def close(self) -> None:
        self._jobs.clear()


def load(request: EngineLoad) -> LoadedEngine:
    generator = ScriptedGenerator(Script.read(request.path), request.settings.parallel_sequences)
    return loaded(request, CAPABILITIES, generator)
