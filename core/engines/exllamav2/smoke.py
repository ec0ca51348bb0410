"""GPU smoke check: `python -m inferno.core.engines.exllamav2.smoke MODEL_DIR [--prompt TEXT] [--json]`.

Loads the folder with the engine's loader, generates 32 greedy tokens (with log-probabilities) through the
scheduler directly, without the runtime, and prints one JSON object: the prompt's and the generated token ids
(end-of-generation tokens included: nothing stops early), whether each greedy token was its step's most likely
one, and the GPU memory held after the load and after close. --json also generates a JSON object under the
response_format grammar and says whether it parses.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from inferno.core.engines.base import ModelDescription, SamplingConfig, SequenceRequest
from inferno.core.engines.exllamav2 import load
from inferno.core.engines.loading import EngineLoad, LoadedEngine
from inferno.core.runtime.sequence import SequenceState
from inferno.core.text.detokenizer import IncrementalDetokenizer
from inferno.core.text.stop import StopMatcher
from inferno.engine_settings import EngineSettings

_GREEDY = SamplingConfig(temperature=0.0, top_p=1.0, presence_penalty=0.0, frequency_penalty=0.0, seed=0)


def generate(loaded: LoadedEngine, request: SequenceRequest, until_eos: bool = False) -> list[Any]:
    """Steps the scheduler until the sequence has max_tokens tokens (or, until_eos, an end-of-generation
    token); returns the SampledTokens."""
    scheduler: Any = loaded.generator
    sequence = SequenceState(
        request=request,
        emit=lambda _event: None,
        submitted_at=time.monotonic(),
        detokenizer=IncrementalDetokenizer(loaded.vocabulary.token_bytes),
        stop=StopMatcher(()),
    )
    scheduler.enqueue(sequence)
    sampled: list[Any] = []
    while scheduler.has_work() and len(sampled) < request.max_tokens:
        result = scheduler.step()
        if result.failed:
            raise result.failed[0][1]
        sampled += result.sampled
        if until_eos and any(loaded.vocabulary.is_end_of_generation(s.token) for s in result.sampled):
            break
    scheduler.cancel(sequence)
    return sampled


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--prompt", default="The capital of France is")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--json", action="store_true", help="also generate under the JSON object grammar")
    args = parser.parse_args(argv)
    import torch

    path = args.model_dir.resolve()
    description = ModelDescription(path.name, str(path), "exl2", "exllamav2", "smoke", 0, 0, 0, 0)
    settings = EngineSettings(parallel_sequences=2, context_length=2048)
    before = torch.cuda.memory_allocated()
    loaded = load(
        EngineLoad(description, path, settings, lambda phase, f: print(phase, round(f, 2), file=sys.stderr))
    )
    report: dict[str, Any] = {
        "device": loaded.memory().device_name,
        "memory_loaded": loaded.memory().device_bytes,
    }
    try:
        prompt = loaded.vocabulary.tokenize(args.prompt)
        request = SequenceRequest(tuple(prompt), args.tokens, (), _GREEDY, top_logprobs=1)
        sampled = generate(loaded, request)
        tokens = [s.token for s in sampled]
        report |= {
            "prompt_tokens": prompt,
            "tokens": tokens,
            "text": b"".join(loaded.vocabulary.token_bytes(t) for t in tokens).decode(errors="replace"),
            "greedy_is_top1": [
                bool(s.logprobs and s.logprobs.top and s.logprobs.top[0][0] == s.token) for s in sampled
            ],
            "logprobs": [round(s.logprobs.logprob, 4) if s.logprobs else None for s in sampled],
        }
        if args.json:
            # Only here: the grammar builder needs llama-cpp-python, the proto its generated code.
            from inferno.core.structured_output import grammar_for
            from inferno.v1 import inference_service_pb2 as pb

            json_object = pb.ResponseFormat(type=pb.RESPONSE_FORMAT_TYPE_JSON_OBJECT)
            grammar = replace(_GREEDY, grammar=grammar_for(json_object))
            chat = loaded.chat_template.render(  # type: ignore[union-attr]
                [{"role": "user", "content": "Describe Paris as a JSON object."}]
            )
            json_prompt = loaded.vocabulary.tokenize(chat)
            out = generate(loaded, SequenceRequest(tuple(json_prompt), 200, (), grammar), until_eos=True)
            ids = [s.token for s in out]
            end = next((i for i, t in enumerate(ids) if loaded.vocabulary.is_end_of_generation(t)), len(ids))
            text = b"".join(loaded.vocabulary.token_bytes(t) for t in ids[:end]).decode(errors="replace")
            report |= {"json_text": text, "json_valid": _parses(text), "json_ended": end < len(ids)}
    finally:
        if loaded.generator is not None:
            loaded.generator.close()
        loaded.close()
    report["memory_before_load"] = before
    report["memory_after_close"] = torch.cuda.memory_allocated()
    print(json.dumps(report))
    return 0


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


if __name__ == "__main__":
    raise SystemExit(main())
