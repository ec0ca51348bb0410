"""A GGUF's byte-level BPE vocabulary back to Hugging Face tokenizer files: tokenizer.json (built with the
`tokenizers` library), tokenizer_config.json and special_tokens_map.json, tokenizing as llama.cpp does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gguf

from inferno.errors import InfernoError

_KEY = gguf.Keys.Tokenizer

# llama.cpp's pre-tokenizer names (tokenizer.ggml.pre) by the regexes llama-vocab.cpp splits text with.
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_LLAMA3 = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2 = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_SPLITS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("gpt-2", "phi-2", "mpt", "olmo"), (_GPT2,)),
    **dict.fromkeys(("smollm", "starcoder", "refact", "codeshell"), (r"\p{N}", _GPT2)),
    **dict.fromkeys(("llama3", "llama-v3", "llama-bpe", "falcon3", "dbrx", "smaug-bpe"), (_LLAMA3,)),
    **dict.fromkeys(("qwen2", "deepseek-r1-qwen", "stablelm2"), (_QWEN2,)),
    "default": (r"[\p{P}\$\+<=>\^~\|]+", _GPT2, r"\p{N}+", "[0-9][0-9][0-9]"),
}
# Pre-tokenizers for which llama.cpp ranks whole words in the vocabulary before merging.
_IGNORE_MERGES = frozenset(("llama3", "llama-v3", "llama-bpe", "falcon3"))


def write_hf_tokenizer(metadata: dict[str, Any], out_dir: Path, max_length: int) -> int:
    """Writes the three tokenizer files from a GGUF's metadata; returns the vocabulary size."""
    from tokenizers import AddedToken, Tokenizer, decoders, models

    if metadata.get(_KEY.MODEL) != "gpt2":
        raise InfernoError(
            "invalid_parameters",
            f"only byte-level BPE vocabularies (tokenizer.ggml.model 'gpt2') can be exported, "
            f"not {metadata.get(_KEY.MODEL)!r}",
        )
    pre = str(metadata.get(_KEY.PRE, "default"))
    if pre not in _SPLITS:
        raise InfernoError(
            "invalid_parameters",
            f"pre-tokenizer {pre!r} is not one this export knows; known: {', '.join(sorted(_SPLITS))}",
        )
    tokens: list[str] = list(metadata[_KEY.LIST])
    types: list[int] = list(metadata.get(_KEY.TOKEN_TYPE) or [gguf.TokenType.NORMAL] * len(tokens))
    merges = [tuple(merge.split(" ", 1)) for merge in metadata.get(_KEY.MERGES, [])]
    vocab: dict[str, int] = {}
    for index, token in enumerate(tokens):
        vocab.setdefault(token, index)
    tokenizer = Tokenizer(
        models.BPE(vocab=vocab, merges=merges, ignore_merges=pre in _IGNORE_MERGES, fuse_unk=False)
    )
    tokenizer.pre_tokenizer = _pre_tokenizer(_SPLITS[pre])
    tokenizer.decoder = decoders.ByteLevel()
    named = _named_tokens(metadata, tokens)
    tokenizer.post_processor = _post_processor(metadata, tokens)
    # Control tokens (<|im_start|>) are special; user-defined ones are matched whole but are not special.
    added = [
        AddedToken(tokens[i], special=types[i] == gguf.TokenType.CONTROL, normalized=False)
        for i in range(len(tokens))
        if types[i] in (gguf.TokenType.CONTROL, gguf.TokenType.USER_DEFINED)
    ]
    tokenizer.add_tokens(added)
    tokenizer.save(str(out_dir / "tokenizer.json"))

    specials = [t.content for t in added if t.special]
    extra = [t for t in specials if t not in named.values()]
    config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": bool(metadata.get(_KEY.ADD_BOS, False)),
        "add_eos_token": bool(metadata.get(_KEY.ADD_EOS, False)),
        **named,
        "additional_special_tokens": extra,
        "clean_up_tokenization_spaces": False,
        "model_max_length": max_length,
        "added_tokens_decoder": {
            str(vocab[t.content]): {
                "content": t.content,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": t.special,
            }
            for t in added
        },
    }
    if _KEY.CHAT_TEMPLATE in metadata:
        config["chat_template"] = metadata[_KEY.CHAT_TEMPLATE]
    _write_json(out_dir / "tokenizer_config.json", config)
    _write_json(out_dir / "special_tokens_map.json", {**named, "additional_special_tokens": extra})
    return len(tokens)


def _named_tokens(metadata: dict[str, Any], tokens: list[str]) -> dict[str, str]:
    """bos_token, eos_token, unk_token and pad_token by their text, for those the GGUF names."""
    named = {}
    for role, key in (("bos", _KEY.BOS_ID), ("eos", _KEY.EOS_ID), ("unk", _KEY.UNK_ID), ("pad", _KEY.PAD_ID)):
        index = metadata.get(key)
        if isinstance(index, int) and 0 <= index < len(tokens):
            named[f"{role}_token"] = tokens[index]
    return named


def _pre_tokenizer(splits: tuple[str, ...]) -> Any:
    from tokenizers import Regex, pre_tokenizers

    # llama.cpp applies each regex to the pieces the previous one left, keeping matches and the text between.
    steps: list[Any] = [
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False) for pattern in splits
    ]
    steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False))
    return pre_tokenizers.Sequence(steps)


def _post_processor(metadata: dict[str, Any], tokens: list[str]) -> Any:
    """What the GGUF says to add around a text (add_bos_token, add_eos_token), as llama.cpp adds it."""
    from tokenizers import processors

    first = _added(metadata, tokens, _KEY.ADD_BOS, _KEY.BOS_ID)
    last = _added(metadata, tokens, _KEY.ADD_EOS, _KEY.EOS_ID)
    if not first and not last:
        return processors.ByteLevel(trim_offsets=False)
    start, end = [t for t, _ in first], [t for t, _ in last]
    return processors.TemplateProcessing(
        single=[*start, "$A", *end],
        pair=[*start, "$A", *end, *start, "$B:1", *end],
        special_tokens=[*first, *last],
    )


def _added(metadata: dict[str, Any], tokens: list[str], flag: str, key: str) -> list[tuple[str, int]]:
    index = metadata.get(key)
    if not metadata.get(flag) or not isinstance(index, int):
        return []
    return [(tokens[index], index)]


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
