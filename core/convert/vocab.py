"""Tokenizers into GGUF metadata: byte-level BPE from tokenizer.json (the llama family, SmolLM2) and
WordPiece from vocab.txt or tokenizer.json (BERT), in the forms llama.cpp's tokenizers read."""

from __future__ import annotations

import re

import gguf

from inferno.core.convert.checkpoint import Checkpoint
from inferno.errors import InfernoError

_NORMAL, _CONTROL, _USER_DEFINED = 1, 3, 4
_BRACKETED = re.compile(r"^\[[^\]]+\]$")


def write_bpe_vocab(checkpoint: Checkpoint, writer: gguf.GGUFWriter) -> int:
    """tokenizer.json's BPE vocab, merges and special tokens; returns the vocabulary size."""
    tokenizer = checkpoint.json_file("tokenizer.json")
    if tokenizer is None or tokenizer.get("model", {}).get("type") != "BPE":
        raise InfernoError(
            "invalid_parameters",
            f"{checkpoint.folder.name}: only byte-level BPE tokenizers (tokenizer.json) are supported for "
            "the llama family; SentencePiece tokenizer.model files are not",
        )
    vocab: dict[str, int] = dict(tokenizer["model"]["vocab"])
    special: set[str] = set()
    for added in tokenizer.get("added_tokens", []):
        vocab[added["content"]] = added["id"]
        if added.get("special"):
            special.add(added["content"])
    size = max(checkpoint.config.get("vocab_size", 0), max(vocab.values()) + 1)
    by_id = {i: t for t, i in vocab.items()}
    tokens = [by_id.get(i, f"[PAD{i}]") for i in range(size)]
    types = [
        _CONTROL if t in special else _USER_DEFINED if i not in by_id else _NORMAL
        for i, t in enumerate(tokens)
    ]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special_vocab = gguf.SpecialVocab(checkpoint.folder, load_merges=True, n_vocab=size)
    special_vocab.add_to_gguf(writer)
    return size


def write_wordpiece_vocab(checkpoint: Checkpoint, writer: gguf.GGUFWriter) -> int:
    """WordPiece tokens in llama.cpp's "phantom space" form: "##x" becomes "x", a word start gets "▁"."""
    vocab_file = checkpoint.folder / "vocab.txt"
    if vocab_file.is_file():
        tokens = vocab_file.read_text(encoding="utf-8").splitlines()
    else:
        tokenizer = checkpoint.json_file("tokenizer.json")
        if tokenizer is None or tokenizer.get("model", {}).get("type") != "WordPiece":
            raise InfernoError("invalid_parameters", f"{checkpoint.folder.name} has no WordPiece vocabulary")
        by_id = {i: t for t, i in tokenizer["model"]["vocab"].items()}
        tokens = [by_id[i] for i in range(len(by_id))]
    index = {t: i for i, t in enumerate(tokens)}
    for required in ("[CLS]", "[SEP]", "[UNK]", "[PAD]"):
        if required not in index:
            raise InfernoError("invalid_parameters", f"the WordPiece vocabulary lacks {required}")
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")
    writer.add_token_list([_phantom(t) for t in tokens])
    writer.add_token_types([_CONTROL if _BRACKETED.match(t) else _NORMAL for t in tokens])
    writer.add_bos_token_id(index["[CLS]"])
    writer.add_eos_token_id(index["[SEP]"])
    writer.add_sep_token_id(index["[SEP]"])
    writer.add_unk_token_id(index["[UNK]"])
    writer.add_pad_token_id(index["[PAD]"])
    if "[MASK]" in index:
        writer.add_mask_token_id(index["[MASK]"])
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(True)
    return len(tokens)


def _phantom(token: str) -> str:
    if _BRACKETED.match(token):
        return token
    if token.startswith("##"):
        return token[2:]
    return "\u2581" + token
