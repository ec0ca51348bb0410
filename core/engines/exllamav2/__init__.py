"""The ExLlamaV2 engine (EXL2 and FP16/BF16 safetensors folders on a CUDA GPU): ExLlamaV2's dynamic generator
batches by itself (shape SelfScheduler). Importing this package imports neither torch nor exllamav2."""

from __future__ import annotations

from inferno.core.engines.capabilities import EngineCapabilities
from inferno.core.engines.loading import EngineLoad, LoadedEngine

CAPABILITIES = EngineCapabilities(
    engine="exllamav2",
    device="CUDA GPU",
    formats=("exl2", "fp16 safetensors"),
    batching="engine",
    # From the logits the generator returns: the model's distribution after logit_bias and penalties, before
    # temperature and the cut-offs; the alternatives come from the same logits (see logprobs.py).
    logprobs=True,
    max_top_logprobs=20,
    # The dynamic generator computes prompts without returning their logits.
    prompt_logprobs=False,
    # GBNF through llguidance, as an ExLlamaV2 filter (grammar.py).
    constrained_output=True,
    logit_bias=True,
    seed=True,
    # Not passed to ExLlamaV2's sampler and job yet: refused rather than ignored.
    typical_p=False,
    min_tokens=False,
    # Paged mode shares cache pages between sequences with a common prefix; unpaged mode reuses the
    # previous sequence's cache.
    prefix_reuse=True,
    # POST /v1/convert with format exl2 runs ExLlamaV2's own converter (core/convert/exl2.py).
    conversion_targets=("exl2",),
)


def load(request: EngineLoad) -> LoadedEngine:
    """Loads the model folder on the GPU; raises InfernoError (gpu_unavailable, model_load_failed)."""
    from inferno.core.engines.exllamav2.loader import load_model

    return load_model(request, CAPABILITIES)


__all__ = ["CAPABILITIES", "load"]
