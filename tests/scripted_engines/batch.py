"""The scripted engine in the BatchDecoder shape: the runtime's scheduler plans its steps."""

from __future__ import annotations

import time
from collections.abc import Sequence

from inferno.core.engines.capabilities import EngineCapabilities
from inferno.core.engines.loading import EngineLoad, LoadedEngine
from inferno.core.runtime.protocol import DecoderLimits, SampledToken, StepResult
from inferno.core.runtime.sequence import SequenceState
from inferno.core.scheduler import BatchEntry
from tests.scripted_engines.script import (
    CONTEXT_LENGTH,
    Script,
    loaded,
    prompt_logprob,
    reply_token,
    sampled_logprob,
)

CAPABILITIES = EngineCapabilities(
    engine="scripted-batch", device="none (a test double)", formats=("script",), batching="runtime"
)


class _NoKV:
    def truncate(self, seq_id: int, length: int) -> None:
        pass

    def clear(self, seq_id: int) -> None:
        pass


class ScriptedDecoder:
    def __init__(self, script: Script, parallel: int) -> None:
        self._script = script
        self._replies: dict[SequenceState, bytes] = {}
        self._limits = DecoderLimits(parallel, CONTEXT_LENGTH * parallel, 512, 32)
        self.kv = _NoKV()

    @property
    def limits(self) -> DecoderLimits:
        return self._limits

    def start(self, sequence: SequenceState) -> None:
        self._replies[sequence] = self._script.reply_for(sequence.request.prompt_tokens)

    def release(self, sequence: SequenceState) -> None:
        del self._replies[sequence]

    def set_interrupt(self, stop: bool) -> None:
        pass  # its steps are short sleeps: nothing to stop

    def decode(self, entries: Sequence[BatchEntry]) -> StepResult:
        time.sleep(self._script.delay_s)
        result = StepResult()
        for entry in entries:
            sequence, request = entry.sequence, entry.sequence.request
            if entry.all_logits and sequence.prompt_logprobs is not None:
                prompt = request.prompt_tokens
                for position in range(entry.start_pos, entry.start_pos + len(entry.tokens)):
                    if position + 1 < len(prompt):
                        sequence.prompt_logprobs.append(
                            prompt_logprob(prompt[position + 1], request.prompt_logprobs or 0)
                        )
            if entry.sample and request.max_tokens > 0:
                reply = self._replies[sequence]
                token = reply_token(reply, sequence.generated % (len(reply) + 1))
                top = request.top_logprobs
                logprobs = None if top is None else sampled_logprob(request.sampling.seed, token, top)
                result.sampled.append(SampledToken(sequence, token, logprobs))
        return result

    def close(self) -> None:
        self._replies.clear()


def load(request: EngineLoad) -> LoadedEngine:
    decoder = ScriptedDecoder(Script.read(request.path), request.settings.parallel_sequences)
    return loaded(request, CAPABILITIES, decoder)
