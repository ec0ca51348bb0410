"""A request's sampling settings as ExLlamaV2Sampler.Settings fields.

Settings' defaults are not neutral (temperature 0.8, top_k 50, top_p 0.8, repetition penalty 1.025), so every
field that shapes the distribution is set here, the ones requests cannot set explicitly off. ExLlamaV2 applies
them in this order: penalties, logit_bias, the grammar's allowed tokens, temperature, then top_k, top_p, min_p
(temperature first, as transformers and vLLM do; the llama.cpp engine applies it after the cut-offs).
"""

from __future__ import annotations

from typing import Any

from inferno.core.engines.base import SamplingConfig

# Fields a request cannot set, each at its "off" value (their defaults are off too, except where noted,
# but naming them keeps a newer exllamav2's changed default from sneaking in).
_OFF: dict[str, Any] = {
    "token_repetition_decay": 0,
    "smoothing_factor": 0.0,
    "min_temp": 0.0,
    "max_temp": 0.0,
    "temp_exponent": 1.0,
    "top_a": 0.0,
    "tfs": 0.0,
    # SamplingConfig has no typical_p; 0 turns locally typical sampling off.
    "typical": 0.0,
    "skew": 0.0,
    "temperature_last": False,
    "mirostat": False,
    "cfg_scale": None,
    "dry_multiplier": 0.0,
    "xtc_probability": 0.0,
}


def sampler_fields(config: SamplingConfig) -> dict[str, Any]:
    """ExLlamaV2Sampler.Settings keyword arguments for config (logit_bias aside: see the loader's
    make_settings). Temperature 0 is greedy: top_k 1 over the penalized, biased, grammar-filtered logits."""
    fields: dict[str, Any] = {
        **_OFF,
        "token_repetition_penalty": config.repetition_penalty,
        # Penalties see generated tokens only, as OpenAI's do: the scheduler widens this range to the
        # number of tokens generated so far before every step (ExLlamaV2 counts it back from the end).
        "token_repetition_range": 0,
        "token_frequency_penalty": config.frequency_penalty,
        "token_presence_penalty": config.presence_penalty,
    }
    if config.temperature <= 0.0:
        return {**fields, "temperature": 1.0, "top_k": 1, "top_p": 0.0, "min_p": 0.0}
    return {
        **fields,
        "temperature": config.temperature,
        # 0 is "off" in ExLlamaV2 for each of these, and 1.0 for top_p.
        "top_k": max(config.top_k, 0),
        "top_p": config.top_p,
        "min_p": config.min_p,
    }


def penalizes(config: SamplingConfig) -> bool:
    """Whether any repetition, frequency or presence penalty is on (ExLlamaV2 skips them all otherwise)."""
    return (
        config.repetition_penalty != 1.0 or config.frequency_penalty != 0.0 or config.presence_penalty != 0.0
    )
