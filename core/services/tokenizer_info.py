"""A model's tokenizer settings (vLLM's /tokenizer_info), found out through the model's own tokenizer."""

from __future__ import annotations

from inferno.core.runtime.served_model import ServedModel
from inferno.v1 import inference_service_pb2 as pb

# Any short text: what tokenizing it with special tokens adds around its plain tokens is BOS and EOS.
_PROBE = "a"


def tokenizer_info(engine: ServedModel) -> pb.GetTokenizerInfoResponse:
    """Special tokens, whether BOS/EOS are added, the context length and the chat template of a model."""
    description = engine.description
    plain = engine.tokenize(_PROBE, add_special=False)
    full = engine.tokenize(_PROBE, add_special=True)
    start = _find(full, plain)
    info = pb.GetTokenizerInfoResponse(
        model=description.id,
        tokenizer_class=f"{engine.capabilities.engine} {description.format}",
        add_bos_token=start > 0,
        add_eos_token=start >= 0 and len(full) > start + len(plain),
        model_max_length=description.context_length,
        chat_template=engine.chat_template_source,
        vocab_size=description.vocab_size,
    )
    special = engine.bos_and_eos_text
    if special is not None:
        bos, eos = special
        if bos:
            info.bos_token = bos
        if eos:
            info.eos_token = eos
    return info


def _find(tokens: list[int], part: list[int]) -> int:
    """Where part starts in tokens; -1 when it does not occur."""
    for start in range(len(tokens) - len(part) + 1):
        if tokens[start : start + len(part)] == part:
            return start
    return -1
