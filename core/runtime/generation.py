"""The engine thread of one model and the sequence lifecycle it runs.

Async callers talk to the thread through a command queue; events come back on their event loop through the
Outbox, one wake-up per loop per hand-over (a step, or several within the stream interval). Every sampled
token, whichever engine shape produced it, goes through the same lifecycle: incremental detokenizing, stop
strings with hold-back, EOS, max_tokens and log-probabilities, then an event to the caller.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from inferno.core.engines.base import FinishReason, SequenceEvent, SequenceRequest, TokenLogprobs
from inferno.core.runtime.outbox import Outbox
from inferno.core.runtime.protocol import SampledToken, StepResult, Vocabulary
from inferno.core.runtime.sequence import SequenceState
from inferno.core.runtime.stats import StatsRecorder
from inferno.core.runtime.steppers import Stepper
from inferno.core.text.detokenizer import IncrementalDetokenizer
from inferno.core.text.stop import StopMatcher
from inferno.errors import InfernoError
from inferno.inflight import RequestShape, process_record

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Submit:
    sequence: SequenceState


@dataclass(frozen=True)
class _Cancel:
    sequence: SequenceState


_SHUTDOWN = object()


class GenerationRuntime:
    """Runs one model's sequences on its own thread, whatever the engine's shape."""

    def __init__(
        self,
        name: str,
        stepper: Stepper,
        vocabulary: Vocabulary,
        stats: StatsRecorder,
        stream_interval_s: float = 0.0,
    ) -> None:
        self._name = name
        self._inflight = process_record()
        self._stepper = stepper
        self._vocabulary = vocabulary
        self._stats = stats
        self._commands: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._outbox = Outbox(stream_interval_s)
        self._reused_seen = 0
        self._thread = threading.Thread(target=self._run, name=f"engine-{name}", daemon=True)
        self._thread.start()

    async def generate(self, request: SequenceRequest) -> AsyncIterator[SequenceEvent]:
        """Streams a sequence's text as it is produced. Closing the iterator cancels the sequence."""
        mailbox = self._outbox.mailbox(asyncio.get_running_loop())
        events: asyncio.Queue[SequenceEvent | BaseException] = asyncio.Queue()

        first = True

        def emit(event: SequenceEvent | BaseException) -> None:
            nonlocal first
            urgent = first or not isinstance(event, SequenceEvent) or event.finish_reason is not None
            self._outbox.add(mailbox, events, event, urgent)
            first = False

        sequence = SequenceState(
            request=request,
            emit=emit,
            submitted_at=time.monotonic(),
            detokenizer=IncrementalDetokenizer(self._vocabulary.token_bytes),
            stop=StopMatcher(request.stop),
            prompt_logprobs=[] if request.prompt_logprobs is not None else None,
        )
        self._commands.put(_Submit(sequence))
        self._stepper.make_way_for(sequence)
        try:
            while True:
                event = await events.get()
                if isinstance(event, BaseException):
                    raise event
                # A caller that fell behind (a slow client, a busy event loop) gets what queued up as one
                # event: one message and one write instead of one per token.
                while event.finish_reason is None and not events.empty():
                    later = events.get_nowait()
                    if isinstance(later, BaseException):
                        yield event
                        raise later
                    event = event.followed_by(later)
                yield event
                if event.finish_reason is not None:
                    return
        finally:
            if not sequence.finished:
                self._commands.put(_Cancel(sequence))

    def close(self) -> None:
        """Ends every sequence in flight with model_not_ready, stops the thread and closes the engine."""
        self._commands.put(_SHUTDOWN)
        self._thread.join(timeout=30)
        self._outbox.close()

    # --- engine thread ---------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while self._drain_commands(block=not self._stepper.has_work()):
                self._step()
                # Before the events go out, so a caller that saw its last event sees the sequence gone.
                self._stats.queue(self._stepper.queue_state())
                prefix_cache = self._stepper.prefix_cache()
                if prefix_cache is not None:
                    self._stats.prefix_cache(prefix_cache)
                self._outbox.flush(force=not self._stepper.has_work())
            error = InfernoError("model_not_ready", "the model is shutting down")
            for sequence in self._stepper.sequences():
                self._finish(sequence, error=error)
            self._outbox.flush(force=True)
        finally:
            self._stepper.close()

    def _drain_commands(self, block: bool) -> bool:
        """Applies queued submits and cancels; False once shutdown was asked for."""
        try:
            command = self._commands.get(block=block)
        except queue.Empty:
            return True
        while True:
            if command is _SHUTDOWN:
                return False
            if isinstance(command, _Submit):
                self._submit(command.sequence)
            elif isinstance(command, _Cancel) and not command.sequence.finished:
                self._finish(command.sequence, cancelled=True)
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return True

    def _submit(self, sequence: SequenceState) -> None:
        self._stats.submitted()
        request = sequence.request
        if request.max_tokens == 0 and request.prompt_logprobs is None:
            # Nothing to compute (echo of a prompt, no scores): the engine never sees it.
            self._finish(sequence, last=self._event(sequence, "", FinishReason.LENGTH, ()))
            return
        refusal = self._stepper.submit(sequence)
        if refusal is not None:
            self._finish(sequence, error=refusal)

    def _step(self) -> None:
        started = time.monotonic()
        if self._inflight is not None:
            shape = tuple(
                (len(s.request.prompt_tokens), s.request.max_tokens) for s in self._stepper.sequences()
            )
            self._inflight.begin(RequestShape(self._name, shape))
        try:
            result = self._stepper.step()
            if self._inflight is not None:
                self._inflight.end()
            self._apply(result, started)
        except Exception:
            # A bug must not kill the thread and leave every caller waiting forever: fail what is in flight,
            # keep serving new requests.
            log.exception("engine step failed; failing the sequences in flight")
            error = InfernoError("internal_error", "the engine failed while decoding this request")
            for sequence in self._stepper.sequences():
                if not sequence.finished:
                    self._finish(sequence, error=error)

    def _apply(self, result: StepResult, started: float) -> None:
        """Ends refused and scored sequences, runs every sampled token through the lifecycle, records."""
        reused = self._stepper.reused_prompt_tokens()
        self._stats.reused_prompt_tokens(reused - self._reused_seen)
        self._reused_seen = reused
        for sequence, failure in result.failed:
            if not sequence.finished:
                self._finish(sequence, error=failure)
        for sequence in result.scored:
            if not sequence.finished:
                self._finish(sequence, last=self._event(sequence, "", FinishReason.LENGTH, ()))
        now = time.monotonic()
        for sampled in result.sampled:
            # Tokens of a sequence that finished earlier in this step (or was cancelled) are dropped.
            if not sampled.sequence.finished:
                self._on_token(sampled, now)
        if result.interrupted:
            self._stats.interrupted_step()
        elif result.sequences or result.sampled:
            self._stats.step(result, now - started)

    def _on_token(self, sampled: SampledToken, now: float) -> None:
        sequence, token = sampled.sequence, sampled.token
        request = sequence.request
        sequence.generated += 1
        sequence.output_tokens.append(token)
        self._stats.token(sequence, now)
        if not request.ignore_eos and self._vocabulary.is_end_of_generation(token):
            text = sequence.stop.push(sequence.detokenizer.flush()).text + sequence.stop.flush()
            self._finish(sequence, last=self._event(sequence, text, FinishReason.STOP, ()))
            return
        logprobs = (sampled.logprobs,) if sampled.logprobs is not None else ()
        check = sequence.stop.push(
            sequence.detokenizer.push(token), armed=sequence.generated >= request.sampling.min_tokens
        )
        if check.stopped:
            self._finish(sequence, last=self._event(sequence, check.text, FinishReason.STOP, logprobs))
        elif sequence.generated >= request.max_tokens:
            tail = sequence.stop.push(sequence.detokenizer.flush())
            text = check.text + tail.text + ("" if tail.stopped else sequence.stop.flush())
            reason = FinishReason.STOP if tail.stopped else FinishReason.LENGTH
            self._finish(sequence, last=self._event(sequence, text, reason, logprobs))
        else:
            sequence.pending_token = token
            # With log-probabilities every token is an event, even one whose text is still held back.
            if check.text or logprobs or sequence.prompt_logprobs is not None:
                sequence.emit(self._event(sequence, check.text, None, logprobs))

    @staticmethod
    def _event(
        sequence: SequenceState,
        text: str,
        reason: FinishReason | None,
        logprobs: tuple[TokenLogprobs, ...],
    ) -> SequenceEvent:
        """An event of the sequence; the first one also carries the prompt's log-probabilities."""
        prompt_logprobs = tuple(sequence.prompt_logprobs or ())
        sequence.prompt_logprobs = None
        return SequenceEvent(
            text, sequence.generated, reason, logprobs, prompt_logprobs, sequence.reused_prompt_tokens
        )

    def _finish(
        self,
        sequence: SequenceState,
        last: SequenceEvent | None = None,
        error: BaseException | None = None,
        cancelled: bool = False,
    ) -> None:
        """Takes the sequence out of the engine at once (freeing its cache) and sends its last event, if
        any."""
        sequence.finished = True
        self._stepper.release(sequence, completed=last is not None)
        self._stats.finished(sequence, cancelled)
        if error is not None:
            sequence.emit(error)
        elif last is not None:
            sequence.emit(last)
