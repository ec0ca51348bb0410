"""Fill in the middle (/v1/completions' suffix): the prompt a code model completes between a prefix and a
suffix, in llama.cpp's order (prefix, suffix, middle)."""

from __future__ import annotations

from inferno.core.runtime.served_model import ServedModel
from inferno.errors import invalid_param


def fill_in_middle_prompt(engine: ServedModel, prefix: str, suffix: str) -> list[int]:
    """[BOS] <fim_prefix> prefix <fim_suffix> suffix <fim_middle>; invalid_parameters naming suffix for a
    model whose vocabulary has no fill-in-the-middle tokens."""
    tokens = engine.fill_in_middle_tokens()
    if tokens is None:
        raise invalid_param(
            "suffix",
            f"model '{engine.description.id}' has no fill-in-the-middle tokens, so it cannot take 'suffix' "
            "(code models whose vocabulary has <|fim_prefix|>, <|fim_suffix|> and <|fim_middle|> can)",
        )
    # Tokenizing nothing with special tokens gives the BOS the model wants, if any.
    start = engine.tokenize("", add_special=True)
    return [
        *start,
        tokens.prefix,
        *engine.tokenize(prefix, add_special=False),
        tokens.suffix,
        *engine.tokenize(suffix, add_special=False),
        tokens.middle,
    ]
