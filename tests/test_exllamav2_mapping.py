"""Every request field's path into ExLlamaV2, checked against a stand-in dynamic generator that records the
jobs, sampler settings and cancels it was given and replays scripted iterate() results (no GPU, no
exllamav2)."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from inferno.core.engines.base import SamplingConfig, SequenceRequest
from inferno.core.engines.exllamav2 import CAPABILITIES
from inferno.core.engines.exllamav2.scheduler import ExLlamaV2Scheduler, JobBuilders
from inferno.core.runtime.sequence import SequenceState
from inferno.core.text.detokenizer import IncrementalDetokenizer
from inferno.core.text.stop import StopMatcher
from inferno.errors import InfernoError

PAGE = 256
N_VOCAB = 6
SAMPLING = SamplingConfig(temperature=1.0, top_p=1.0, presence_penalty=0.0, frequency_penalty=0.0, seed=None)


class StandInJob:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.new_tokens = 0
        self.cached_pages = 0
        self.cached_tokens = 0

    @property
    def key(self) -> int:
        return int(self.kwargs["identifier"])


class StandInGenerator:
    """ExLlamaV2DynamicGenerator's surface: queues, a page table, iterate() replaying scripted results."""

    def __init__(self, max_pages: int = 8) -> None:
        self.page_size = PAGE
        self.max_pages = max_pages
        self.referenced_pages: dict[Any, Any] = {}
        self.pending_jobs: list[StandInJob] = []
        self.active_jobs: list[StandInJob] = []
        self.enqueued: list[StandInJob] = []
        self.cancelled: list[StandInJob] = []
        self.script: list[list[dict[str, Any]]] = []
        # What each job's sampler settings said when iterate() ran, per call.
        self.ranges_seen: list[dict[int, int]] = []

    def enqueue(self, job: StandInJob) -> int:
        prompt = np.asarray(job.kwargs["input_ids"]).shape[-1]
        if -(-(prompt + job.kwargs["max_new_tokens"]) // PAGE) > self.max_pages:
            raise AssertionError("Job requires 9 pages (only 8 available) and cannot be enqueued.")
        self.enqueued.append(job)
        self.pending_jobs.append(job)
        return len(self.enqueued) - 1

    def cancel(self, job: StandInJob) -> None:
        self.cancelled.append(job)
        for queue in (self.pending_jobs, self.active_jobs):
            if job in queue:
                queue.remove(job)

    def iterate(self) -> list[dict[str, Any]]:
        self.ranges_seen.append(
            {
                j.key: j.kwargs["gen_settings"].token_repetition_range
                for j in self.pending_jobs + self.active_jobs
            }
        )
        results = self.script.pop(0) if self.script else []
        for result in results:
            job = result["job"]
            if job in self.pending_jobs:
                self.pending_jobs.remove(job)
                self.active_jobs.append(job)
            if "token_ids" in result:
                job.new_tokens += np.asarray(result["token_ids"]).shape[-1]
            if result.get("eos") and job in self.active_jobs:
                self.active_jobs.remove(job)
        return results

    def num_remaining_jobs(self) -> int:
        return len(self.pending_jobs) + len(self.active_jobs)


def prefill(job: StandInJob, progress: int) -> dict[str, Any]:
    return {"job": job, "stage": "prefill", "eos": False, "curr_progress": progress, "identifier": job.key}


def streaming(job: StandInJob, tokens: list[int] | None, logits: Any = None, **eos: Any) -> dict[str, Any]:
    result: dict[str, Any] = {"job": job, "stage": "streaming", "eos": False, "identifier": job.key, **eos}
    if tokens is not None:
        result["token_ids"] = np.array([tokens], dtype=np.int64)
    if logits is not None:
        result["logits"] = np.asarray(logits, dtype=np.float32).reshape(1, len(tokens or []), -1)
    return result


class Harness:
    def __init__(self, grammar_filter: Any = "record") -> None:
        self.generator = StandInGenerator()
        self.settings_given: list[tuple[dict[str, Any], tuple[tuple[int, float], ...]]] = []
        self.grammars_given: list[str] = []
        self.grammar_params_given: list[str] = []
        filters = None if grammar_filter is None else self._filter
        builders = JobBuilders(
            input_ids=lambda tokens: np.array([list(tokens)], dtype=np.int64),
            settings=self._settings,
            job=StandInJob,
            grammar_filter=filters,
        )
        self.scheduler = ExLlamaV2Scheduler(self.generator, builders, N_VOCAB)

    def _settings(self, fields: dict[str, Any], logit_bias: tuple[tuple[int, float], ...]) -> Any:
        self.settings_given.append((fields, logit_bias))
        return SimpleNamespace(**fields, token_bias=logit_bias)

    def _filter(self, grammar: str, param: str) -> Any:
        self.grammars_given.append(grammar)
        self.grammar_params_given.append(param)
        return ("filter", grammar)

    def submit(self, prompt: tuple[int, ...] = (1, 2, 3), **fields: Any) -> tuple[SequenceState, StandInJob]:
        request = SequenceRequest(
            prompt, fields.pop("max_tokens", 16), (), fields.pop("sampling", SAMPLING), **fields
        )
        sequence = SequenceState(
            request=request,
            emit=lambda _event: None,
            submitted_at=time.monotonic(),
            detokenizer=IncrementalDetokenizer(lambda _t: b""),
            stop=StopMatcher(()),
        )
        self.scheduler.enqueue(sequence)
        return sequence, self.generator.enqueued[-1]

    def fields(self, **sampling: Any) -> dict[str, Any]:
        self.submit(sampling=replace(SAMPLING, **sampling))
        return self.settings_given[-1][0]


# The fields whose ExLlamaV2 defaults are not what a request means, at "off".
OFF = {
    "token_repetition_decay": 0,
    "smoothing_factor": 0.0,
    "min_temp": 0.0,
    "max_temp": 0.0,
    "temp_exponent": 1.0,
    "top_a": 0.0,
    "tfs": 0.0,
    "typical": 0.0,
    "skew": 0.0,
    "temperature_last": False,
    "mirostat": False,
    "cfg_scale": None,
    "dry_multiplier": 0.0,
    "xtc_probability": 0.0,
}


def test_each_sampling_field_reaches_the_sampler_settings() -> None:
    fields = Harness().fields(
        temperature=0.7,
        top_p=0.9,
        top_k=40,
        min_p=0.05,
        repetition_penalty=1.1,
        frequency_penalty=0.5,
        presence_penalty=-0.25,
    )
    assert fields == {
        **OFF,
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": 40,
        "min_p": 0.05,
        "token_repetition_penalty": 1.1,
        "token_repetition_range": 0,
        "token_frequency_penalty": 0.5,
        "token_presence_penalty": -0.25,
    }


def test_a_plain_request_turns_off_exllamav2s_non_neutral_defaults() -> None:
    # ExLlamaV2Sampler.Settings() would sample at temperature 0.8, top_k 50, top_p 0.8, repetition 1.025.
    fields = Harness().fields()
    assert (fields["temperature"], fields["top_k"], fields["top_p"], fields["min_p"]) == (1.0, 0, 1.0, 0.0)
    assert fields["token_repetition_penalty"] == 1.0
    assert fields["token_frequency_penalty"] == fields["token_presence_penalty"] == 0.0


def test_temperature_zero_is_greedy_top_k_one() -> None:
    fields = Harness().fields(temperature=0.0, top_p=0.5, top_k=7, min_p=0.2, repetition_penalty=1.2)
    assert (fields["temperature"], fields["top_k"], fields["top_p"], fields["min_p"]) == (1.0, 1, 0.0, 0.0)
    # Penalties still shape the logits greedy picks from, as on llama.cpp.
    assert fields["token_repetition_penalty"] == 1.2


def test_logit_bias_is_handed_to_the_settings_builder() -> None:
    harness = Harness()
    harness.submit(sampling=replace(SAMPLING, logit_bias=((3, -100.0), (5, 2.5))))
    assert harness.settings_given[-1][1] == ((3, -100.0), (5, 2.5))
    assert harness.generator.enqueued[-1].kwargs["gen_settings"].token_bias == ((3, -100.0), (5, 2.5))


def test_job_arguments_leave_stopping_to_the_runtime() -> None:
    harness = Harness()
    _, job = harness.submit(prompt=(7, 8, 9, 10), max_tokens=33, sampling=replace(SAMPLING, seed=41))
    args = job.kwargs
    assert np.asarray(args["input_ids"]).tolist() == [[7, 8, 9, 10]]
    assert args["max_new_tokens"] == 33
    assert args["stop_conditions"] == []
    assert args["min_new_tokens"] == 0
    assert args["seed"] == 41
    assert args["filters"] == []
    assert args["token_healing"] is False
    assert args["banned_strings"] is None
    assert args["return_logits"] is False
    assert args["return_probs"] is False
    assert args["return_top_tokens"] == 0
    assert args["gen_settings"] is not None


def test_each_choice_keeps_its_own_seed() -> None:
    harness = Harness()
    jobs = [harness.submit(sampling=replace(SAMPLING, seed=100 + i))[1] for i in range(3)]
    assert [j.kwargs["seed"] for j in jobs] == [100, 101, 102]
    assert len({j.key for j in jobs}) == 3


def test_logprobs_requests_ask_the_generator_for_logits() -> None:
    _, job = Harness().submit(top_logprobs=2)
    assert job.kwargs["return_logits"] is True


def test_grammar_becomes_the_jobs_filter() -> None:
    harness = Harness()
    sampling = replace(SAMPLING, grammar='root ::= "yes"', grammar_param="guided_choice")
    _, job = harness.submit(sampling=sampling)
    assert harness.grammars_given == ['root ::= "yes"']
    assert harness.grammar_params_given == ["guided_choice"], "its refusals name the field it came from"
    assert job.kwargs["filters"] == [("filter", 'root ::= "yes"')]


def test_grammar_without_a_filter_builder_is_refused_naming_response_format() -> None:
    harness = Harness(grammar_filter=None)
    with pytest.raises(InfernoError) as caught:
        harness.submit(sampling=replace(SAMPLING, grammar='root ::= "yes"'))
    assert (caught.value.code, caught.value.details) == ("invalid_parameters", {"param": "response_format"})
    assert harness.generator.enqueued == []


def test_prompt_logprobs_are_refused_naming_the_field() -> None:
    with pytest.raises(InfernoError) as caught:
        Harness().submit(prompt_logprobs=0)
    assert (caught.value.code, caught.value.details) == ("invalid_parameters", {"param": "prompt_logprobs"})
    assert CAPABILITIES.prompt_logprobs is False


def test_a_job_bigger_than_the_cache_is_context_length_exceeded() -> None:
    harness = Harness()
    with pytest.raises(InfernoError) as caught:
        harness.submit(prompt=tuple(range(1, 200)), max_tokens=8 * PAGE)
    assert caught.value.code == "context_length_exceeded"
    assert harness.scheduler.waiting == 0


def test_step_delivers_tokens_in_order_with_step_counts() -> None:
    harness = Harness()
    sequence, job = harness.submit(prompt=(1, 2, 3, 4, 5))
    harness.generator.script = [
        [{"job": job, "stage": "started", "eos": False, "identifier": job.key}, prefill(job, 4)],
        [streaming(job, [9])],
        [streaming(job, [8])],
    ]
    first, second, third = (harness.scheduler.step() for _ in range(3))
    assert (first.sampled, first.prompt_tokens, first.batch_tokens, first.sequences) == ([], 4, 4, 1)
    # The prompt's last token goes in with the first generation pass.
    assert [(s.sequence, s.token) for s in second.sampled] == [(sequence, 9)]
    assert (second.prompt_tokens, second.batch_tokens, second.sequences) == (1, 2, 1)
    assert [s.token for s in third.sampled] == [8]
    assert (third.prompt_tokens, third.batch_tokens) == (0, 1)
    assert second.sampled[0].logprobs is None


def test_held_tokens_arrive_with_a_later_result() -> None:
    harness = Harness()
    _, job = harness.submit()
    harness.generator.script = [[streaming(job, None)], [streaming(job, [4, 5])]]
    assert harness.scheduler.step().sampled == []
    assert [s.token for s in harness.scheduler.step().sampled] == [4, 5]


def test_results_of_two_sequences_go_to_each() -> None:
    harness = Harness()
    (a, job_a), (b, job_b) = harness.submit(), harness.submit()
    harness.generator.script = [[streaming(job_a, [1]), streaming(job_b, [2])]]
    step = harness.scheduler.step()
    assert [(s.sequence, s.token) for s in step.sampled] == [(a, 1), (b, 2)]
    assert step.sequences == 2


def test_cancel_cancels_the_job_and_drops_its_later_tokens() -> None:
    harness = Harness()
    sequence, job = harness.submit()
    harness.generator.script = [[streaming(job, [4])], [streaming(job, [5])]]
    assert [s.token for s in harness.scheduler.step().sampled] == [4]
    harness.scheduler.cancel(sequence)
    assert harness.generator.cancelled == [job]
    assert harness.scheduler.step().sampled == []
    harness.scheduler.cancel(sequence)
    assert harness.generator.cancelled == [job]


def test_a_job_the_generator_finished_at_max_tokens_is_forgotten() -> None:
    harness = Harness()
    sequence, job = harness.submit(max_tokens=2)
    harness.generator.script = [
        [streaming(job, [4])],
        [streaming(job, [5], eos=True, eos_reason="max_new_tokens")],
    ]
    harness.scheduler.step()
    last = harness.scheduler.step()
    assert ([s.token for s in last.sampled], last.failed) == ([5], [])
    assert not harness.scheduler.has_work()
    harness.scheduler.cancel(sequence)
    assert harness.generator.cancelled == []


def test_a_job_the_generator_ended_on_its_own_fails_the_sequence() -> None:
    harness = Harness()
    sequence, job = harness.submit()
    harness.generator.script = [[streaming(job, [4], eos=True, eos_reason="end_filter")]]
    step = harness.scheduler.step()
    assert [s.token for s in step.sampled] == [4]
    [(failed, error)] = step.failed
    assert failed is sequence
    assert isinstance(error, InfernoError) and error.code == "internal_error"


def test_penalties_see_generated_tokens_only() -> None:
    harness = Harness()
    _, job = harness.submit(sampling=replace(SAMPLING, frequency_penalty=1.0))
    harness.generator.script = [[streaming(job, [4])], [streaming(job, [5, 6])], []]
    for _ in range(3):
        harness.scheduler.step()
    # Before each iteration the penalty range is the number of tokens generated so far.
    assert [seen[job.key] for seen in harness.generator.ranges_seen] == [0, 1, 3]


def test_without_penalties_the_range_is_left_alone() -> None:
    harness = Harness()
    _, job = harness.submit()
    harness.generator.script = [[streaming(job, [4])], []]
    harness.scheduler.step()
    harness.scheduler.step()
    assert [seen[job.key] for seen in harness.generator.ranges_seen] == [0, 0]


def test_logprobs_come_from_the_returned_logits() -> None:
    harness = Harness()
    _, job = harness.submit(top_logprobs=2)
    # Probabilities 1/7, 2/7, 4/7 over the real vocabulary; the padded tail (past N_VOCAB) is ignored.
    row = [math.log(1), math.log(2), math.log(4), -math.inf, -math.inf, -math.inf, 50.0, 50.0]
    harness.generator.script = [[streaming(job, [1, 2], logits=[row, row])]]
    first, second = harness.scheduler.step().sampled
    assert first.logprobs is not None and second.logprobs is not None
    assert first.logprobs.token == 1
    assert first.logprobs.logprob == pytest.approx(math.log(2 / 7))
    assert second.logprobs.logprob == pytest.approx(math.log(4 / 7))
    assert [t for t, _ in first.logprobs.top] == [2, 1]
    assert [lp for _, lp in first.logprobs.top] == pytest.approx([math.log(4 / 7), math.log(2 / 7)])


def test_top_logprobs_zero_gives_the_token_alone() -> None:
    harness = Harness()
    _, job = harness.submit(top_logprobs=0)
    harness.generator.script = [[streaming(job, [0], logits=[[0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])]]
    [token] = harness.scheduler.step().sampled
    assert token.logprobs is not None
    assert token.logprobs.top == ()
    assert token.logprobs.logprob == pytest.approx(math.log(1 / 6))


def test_reused_prompt_tokens_come_from_the_jobs_cached_pages() -> None:
    harness = Harness()
    sequence, job = harness.submit(prompt=tuple(range(1, 301)))
    job.cached_pages = 1
    harness.generator.script = [[prefill(job, 299)], [streaming(job, [4])]]
    computed = harness.scheduler.step().prompt_tokens
    computed += harness.scheduler.step().prompt_tokens
    assert computed == 300 - PAGE
    assert harness.scheduler.reused_prompt_tokens == PAGE
    assert sequence.reused_prompt_tokens == PAGE


def test_queue_state_comes_from_the_generator() -> None:
    harness = Harness()
    _, job = harness.submit()
    harness.submit()
    assert (harness.scheduler.running, harness.scheduler.waiting, harness.scheduler.has_work()) == (
        0,
        2,
        True,
    )
    harness.generator.script = [[streaming(job, [4])]]
    harness.scheduler.step()
    assert (harness.scheduler.running, harness.scheduler.waiting) == (1, 1)
    harness.generator.referenced_pages = {b"a": 1, b"b": 2}
    assert harness.scheduler.kv_usage == 2 / 8


def test_close_cancels_every_job() -> None:
    harness = Harness()
    jobs = [harness.submit()[1] for _ in range(3)]
    harness.scheduler.close()
    assert harness.generator.cancelled == jobs
    assert not harness.scheduler.has_work()


def test_importing_the_engine_imports_neither_torch_nor_exllamav2() -> None:
    code = (
        "import sys, inferno.core.engines.exllamav2.loader as _; "
        "print(sorted(m for m in ('torch', 'exllamav2', 'tokenizers', 'llguidance') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
