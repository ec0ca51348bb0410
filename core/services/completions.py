"""Text completions: prompts to sequences, and their events to CompletionChoices (echo, best_of, logprobs)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace

from inferno.core.engines.base import SequenceRequest
from inferno.core.fill_in_middle import fill_in_middle_prompt
from inferno.core.guided_output import guided_grammar
from inferno.core.runtime.served_model import ServedModel
from inferno.core.services.capability_check import require_capabilities, require_generation
from inferno.core.services.generation import (
    ChoiceResult,
    EngineLookup,
    Generation,
    add_event_outcome,
    logprob_messages,
    prompt_logprob_messages,
)
from inferno.core.services.request_work import off_loop
from inferno.core.validation import (
    COMPLETION_DEFAULTS,
    DEFAULT_LIMITS,
    RequestLimits,
    check_model,
    check_stop,
    check_token_ids,
    for_choice,
    resolve_best_of,
    resolve_completion_logprobs,
    resolve_max_tokens,
    resolve_min_tokens,
    resolve_n,
    resolve_sampling,
)
from inferno.errors import invalid_param
from inferno.v1 import inference_service_pb2 as pb

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromptInput:
    tokens: tuple[int, ...]
    # Exactly as given for text prompts; decoded for token prompts (what echo returns).
    text: str


@dataclass(frozen=True)
class CompletionJob:
    generation: Generation
    prompts: tuple[PromptInput, ...]
    n: int
    # Sequences per prompt; prompt p's candidates are sequences p * best_of to p * best_of + best_of - 1.
    best_of: int
    echo: bool
    # The caller asked for log-probabilities (best_of > n asks the engine for them regardless).
    logprobs: bool

    @property
    def engine(self) -> ServedModel:
        return self.generation.engine


async def plan_completion(
    engine_for: EngineLookup,
    params: pb.CompletionParams,
    stream: bool,
    request_limits: RequestLimits = DEFAULT_LIMITS,
) -> CompletionJob:
    engine = await engine_for(check_model(params.model))
    require_generation(engine)
    if not params.prompts:
        raise invalid_param("prompt", "'prompt' is required")
    vocab_size = engine.description.vocab_size
    sampling = resolve_sampling(params.sampling, COMPLETION_DEFAULTS, vocab_size)
    guided = guided_grammar(params.guided)
    if guided is not None:
        sampling = replace(sampling, grammar=guided.gbnf, grammar_param=guided.param)
    n = resolve_n(params.n if params.HasField("n") else None)
    best_of = resolve_best_of(params.best_of if params.HasField("best_of") else None, n, stream)
    request_limits.check_sequences(len(params.prompts), best_of, "best_of" if best_of > n else "n")
    top_logprobs = resolve_completion_logprobs(params.logprobs if params.HasField("logprobs") else None)
    # Ranking candidates needs each sampled token's log-probability.
    engine_top_logprobs = top_logprobs if top_logprobs is not None or best_of == n else 0
    prompt_logprobs = top_logprobs if params.echo else None
    stop = check_stop(params.limits)
    names = [_prompt_param(i, len(params.prompts)) for i in range(len(params.prompts))]
    for given, name in zip(params.prompts, names, strict=True):
        request_limits.check_text_size(len(given.text), engine.description.context_length, name)
    request_limits.check_text_size(len(params.suffix), engine.description.context_length, "suffix")
    prompts = await off_loop(_prompt_inputs, engine, params.prompts, names, params.suffix)
    limits = request_limits.cap(params.limits)
    sequences: list[SequenceRequest] = []
    for prompt, name in zip(prompts, names, strict=True):
        request_limits.check_prompt_length(len(prompt.tokens), name)
        max_tokens = resolve_max_tokens(
            limits, len(prompt.tokens), engine.description.context_length, name, allow_zero=params.echo
        )
        prompt_sampling = replace(sampling, min_tokens=resolve_min_tokens(params.limits, max_tokens))
        sequences.extend(
            SequenceRequest(
                prompt.tokens,
                max_tokens,
                stop,
                for_choice(prompt_sampling, j),
                params.limits.ignore_eos,
                engine_top_logprobs,
                prompt_logprobs,
            )
            for j in range(best_of)
        )
    prompt_tokens = sum(len(p.tokens) for p in prompts)
    require_capabilities(
        engine, sequences, sampling.grammar_param, "best_of" if top_logprobs is None else "logprobs"
    )
    generation = Generation(engine, engine.description.id, "cmpl", sequences, prompt_tokens)
    log.info(
        "completion %s model=%s user=%r prompts=%d n=%d best_of=%d prompt_tokens=%d",
        generation.id,
        generation.model_id,
        params.user,
        len(prompts),
        n,
        best_of,
        prompt_tokens,
    )
    return CompletionJob(generation, prompts, n, best_of, params.echo, top_logprobs is not None)


def _prompt_param(index: int, count: int) -> str:
    """The field errors about one prompt name: "prompt" for a single prompt (a string or one token list), as
    the client sent it; "prompt[i]" in an array of prompts."""
    return "prompt" if count == 1 else f"prompt[{index}]"


def _prompt_inputs(
    engine: ServedModel, prompts: Sequence[pb.Prompt], names: Sequence[str], suffix: str
) -> tuple[PromptInput, ...]:
    """Tokenized (or decoded) prompts; CPU-heavy, so run off the event loop. With a suffix each text prompt
    becomes a fill-in-the-middle prompt."""
    if suffix:
        return tuple(
            _fill_in_middle_input(engine, prompt, suffix, name)
            for prompt, name in zip(prompts, names, strict=True)
        )
    return tuple(_prompt_input(engine, prompt, name) for prompt, name in zip(prompts, names, strict=True))


def _fill_in_middle_input(engine: ServedModel, prompt: pb.Prompt, suffix: str, param: str) -> PromptInput:
    if prompt.WhichOneof("kind") == "tokens":
        raise invalid_param(param, f"'{param}' must be text when 'suffix' is given")
    tokens = tuple(fill_in_middle_prompt(engine, prompt.text, suffix))
    return PromptInput(tokens, prompt.text)


def _prompt_input(engine: ServedModel, prompt: pb.Prompt, param: str) -> PromptInput:
    if prompt.WhichOneof("kind") == "tokens":
        tokens = tuple(prompt.tokens.ids)
        check_token_ids(tokens, engine.description.vocab_size, param)
        text = engine.detokenize(list(tokens))
    else:
        text = prompt.text
        tokens = tuple(engine.tokenize(text))
    if not tokens:
        raise invalid_param(param, f"'{param}' is empty")
    return PromptInput(tokens, text)


async def complete(job: CompletionJob) -> pb.CreateCompletionResponse:
    generation = job.generation
    results, usage = await generation.collect()
    choices: list[pb.CompletionChoice] = []
    for p, prompt in enumerate(job.prompts):
        candidates = results[p * job.best_of : (p + 1) * job.best_of]
        if job.best_of > job.n:
            candidates = sorted(candidates, key=ChoiceResult.mean_logprob, reverse=True)[: job.n]
        for k, result in enumerate(candidates):
            choice = pb.CompletionChoice(
                index=p * job.n + k,
                text=prompt.text + result.text if job.echo else result.text,
                finish_reason=result.finish_reason,
            )
            if job.logprobs:
                choice.logprobs.extend(logprob_messages(job.engine, result.logprobs))
                if job.echo:
                    choice.prompt_logprobs.extend(
                        prompt_logprob_messages(job.engine, prompt.tokens, result.prompt_logprobs)
                    )
            choices.append(choice)
    return pb.CreateCompletionResponse(
        id=generation.id, created=generation.created, model=generation.model_id, choices=choices, usage=usage
    )


async def stream_completion(job: CompletionJob) -> AsyncIterator[pb.StreamCompletionResponse]:
    """Streamed choices; plan_completion made sure best_of == n here."""
    generation = job.generation
    echoed: set[int] = set()
    async for item in generation.stream():
        message = pb.StreamCompletionResponse(
            id=generation.id,
            created=generation.created,
            model=generation.model_id,
            index=item.index,
            text=item.event.text,
        )
        if job.echo and item.index not in echoed:
            echoed.add(item.index)
            prompt = job.prompts[item.index // job.n]
            message.text = prompt.text + message.text
            if job.logprobs:
                message.prompt_logprobs.extend(
                    prompt_logprob_messages(job.engine, prompt.tokens, item.event.prompt_logprobs)
                )
        add_event_outcome(message, generation, item)
        yield message
