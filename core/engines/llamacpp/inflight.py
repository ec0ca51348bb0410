"""The decode step in flight, written where `inferno serve` reads it when the core dies by a signal: a crash
in native code then names the request shape that caused it, and the supervisor does not restart into the
same crash (inferno/supervisor.py CrashLoopGuard)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from inferno.core.engines.llamacpp.decoder import LlamaCppDecoder
from inferno.core.engines.llamacpp.model import GgufModel
from inferno.core.runtime.protocol import StepResult
from inferno.core.scheduler import BatchEntry
from inferno.engine_settings import EngineSettings
from inferno.supervisor import INFLIGHT_FILE_ENV, InflightRecord, RequestShape


def make_decoder(
    model_id: str, model: GgufModel, settings: EngineSettings, context_length: int
) -> LlamaCppDecoder:
    """A decoder that records each step when a supervisor asked for it (INFERNO_INFLIGHT_FILE), else a plain
    one."""
    path = os.environ.get(INFLIGHT_FILE_ENV)
    if not path:
        return LlamaCppDecoder(model_id, model, settings, context_length)
    return RecordedDecoder(InflightRecord(Path(path)), model_id, model, settings, context_length)


class RecordedDecoder(LlamaCppDecoder):
    """Writes the shape of each step before decoding it and clears it after (two small writes a step)."""

    def __init__(
        self,
        record: InflightRecord,
        model_id: str,
        model: GgufModel,
        settings: EngineSettings,
        context_length: int,
    ) -> None:
        super().__init__(model_id, model, settings, context_length)
        self._record = record
        self._model_id = model_id

    def decode(self, entries: Sequence[BatchEntry]) -> StepResult:
        self._record.begin(step_shape(self._model_id, entries))
        try:
            return super().decode(entries)
        finally:
            self._record.end()

    def close(self) -> None:
        super().close()
        self._record.close()


def step_shape(model_id: str, entries: Sequence[BatchEntry]) -> RequestShape:
    sequences = tuple(
        (len(entry.sequence.request.prompt_tokens), entry.sequence.request.max_tokens) for entry in entries
    )
    return RequestShape(model_id, sequences, sum(len(entry.tokens) for entry in entries))
