"""A model folder's tokenizer (tokenizer.json, read with the `tokenizers` library) as the runtime's
Vocabulary: the same ids ExLlamaV2 samples, with BOS and EOS as the folder's configs say."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from inferno.core.engines.exllamav2.model_folder import (
    bos_token_id,
    eos_token_ids,
    read_json,
    special_token_text,
)
from inferno.errors import InfernoError

# SentencePiece-style vocabularies spell raw bytes as <0xNN> and spaces as U+2581.
_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")
_SPIECE_SPACE = "\u2581"


class TokenizerVocabulary:
    """Thread-safe: the tokenizers library's Tokenizer may be shared between threads, and the piece cache
    only ever gains entries equal to what any thread would compute."""

    def __init__(self, folder: Path, n_vocab: int = 0) -> None:
        """n_vocab: the model's output size (config.json's vocab_size); 0 takes the tokenizer's."""
        path = folder / "tokenizer.json"
        try:
            self._tokenizer = Tokenizer.from_file(str(path))
            spec = json.loads(path.read_text(encoding="utf-8"))
        except Exception as exc:  # OSError, JSON errors, and tokenizers' bare Exception on a bad file
            raise InfernoError(
                "model_load_failed",
                f"{folder.name}/tokenizer.json could not be read: {exc}",
                {"path": folder.name},
            ) from exc
        self._n_vocab = n_vocab or self._tokenizer.get_vocab_size(with_added_tokens=True)
        self._byte_level = _has_byte_level_decoder(spec.get("decoder"))
        added = self._tokenizer.get_added_tokens_decoder()
        self._special = frozenset(i for i, t in added.items() if t.special)
        self._added_text = {i: t.content for i, t in added.items() if not t.special}
        config = read_json(folder / "tokenizer_config.json") or {}
        self.bos_text = special_token_text(config, "bos")
        self.eos_text = special_token_text(config, "eos")
        self._bos = self._token_id(self.bos_text)
        if self._bos is None:
            self._bos = bos_token_id(folder)
        add_bos = config.get("add_bos_token")
        # None: the tokenizer's own post-processor decides (Llama 3 adds <|begin_of_text|> there).
        self._add_bos: bool | None = add_bos if isinstance(add_bos, bool) else None
        eos = set(eos_token_ids(folder))
        if not eos and (fallback := self._token_id(self.eos_text)) is not None:
            eos.add(fallback)
        self.eos_ids = frozenset(eos)
        self._pieces: dict[int, bytes] = {}

    @property
    def n_vocab(self) -> int:
        return self._n_vocab

    @property
    def bos_id(self) -> int | None:
        return self._bos

    @property
    def adds_bos(self) -> bool:
        if self._add_bos is not None:
            return self._add_bos and self._bos is not None
        return self._bos is not None and self._bos in self._tokenizer.encode("", add_special_tokens=True).ids

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        if self._add_bos is None:
            return list(self._tokenizer.encode(text, add_special_tokens=add_special).ids)
        ids = list(self._tokenizer.encode(text, add_special_tokens=False).ids)
        if add_special and self._add_bos and self._bos is not None:
            ids.insert(0, self._bos)
        return ids

    def token_bytes(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = self._piece(token)
        return piece

    def is_end_of_generation(self, token: int) -> bool:
        return token in self.eos_ids

    def tokenizer_json(self) -> str:
        """The tokenizer as tokenizer.json text (what llguidance builds its token trie from)."""
        return str(self._tokenizer.to_str())

    def _piece(self, token: int) -> bytes:
        if token in self._special:
            return b""
        if token in self._added_text:
            return self._added_text[token].encode()
        text = self._tokenizer.id_to_token(token)
        if text is None:
            return b""
        if self._byte_level:
            decoder = _byte_decoder()
            if all(ch in decoder for ch in text):
                return bytes(decoder[ch] for ch in text)
            return text.encode()
        if match := _BYTE_TOKEN.fullmatch(text):
            return bytes([int(match.group(1), 16)])
        return text.replace(_SPIECE_SPACE, " ").encode()

    def _token_id(self, text: str) -> int | None:
        return self._tokenizer.token_to_id(text) if text else None


def _has_byte_level_decoder(decoder: Any) -> bool:
    if not isinstance(decoder, dict):
        return False
    if decoder.get("type") == "ByteLevel":
        return True
    return any(_has_byte_level_decoder(d) for d in decoder.get("decoders") or ())


@cache
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet: the printable character that stands for each byte, inverted."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = {b: b for b in printable}
    shifted = 0
    for b in range(256):
        if b not in chars:
            chars[b] = 256 + shifted
            shifted += 1
    return {chr(c): b for b, c in chars.items()}
