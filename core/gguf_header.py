"""Reads the metadata of a GGUF file's header without loading the model (for memory estimates and checks)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO

from inferno.errors import InfernoError

_MAGIC = b"GGUF"
_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9
# Header metadata beyond this is not a model header (a corrupt or hostile file).
_MAX_STRING_BYTES = 64 << 20
_MAX_ARRAY_ITEMS = 16 << 20


def read_gguf_metadata(path: Path) -> dict[str, Any]:
    """Every scalar and string key of the header; arrays are skipped (tokenizer tables)."""
    try:
        with path.open("rb") as file:
            if file.read(4) != _MAGIC:
                raise _corrupt(path, "it does not start with the GGUF magic bytes")
            version = _read(file, "<I")
            if version < 2:
                raise _corrupt(path, f"GGUF version {version} is too old")
            _read(file, "<Q")  # tensor count
            count = _read(file, "<Q")
            metadata: dict[str, Any] = {}
            for _ in range(count):
                key = _read_string(file)
                value = _read_value(file, _read(file, "<I"))
                if value is not None:
                    metadata[key] = value
            return metadata
    except (struct.error, UnicodeDecodeError, ValueError) as exc:
        raise _corrupt(path, f"its header is unreadable ({exc})") from None


def _read(file: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize(fmt)
    data = file.read(size)
    if len(data) != size:
        raise ValueError("the file ends inside its header")
    return struct.unpack(fmt, data)[0]


def _read_string(file: BinaryIO) -> str:
    length = _read(file, "<Q")
    if length > _MAX_STRING_BYTES:
        raise ValueError(f"a header string claims {length} bytes")
    data = file.read(length)
    if len(data) != length:
        raise ValueError("the file ends inside its header")
    return data.decode("utf-8")


def _read_value(file: BinaryIO, kind: int) -> Any:
    if kind in _SCALARS:
        return _read(file, _SCALARS[kind])
    if kind == _STRING:
        return _read_string(file)
    if kind == _ARRAY:
        item_kind, count = _read(file, "<I"), _read(file, "<Q")
        if count > _MAX_ARRAY_ITEMS:
            raise ValueError(f"a header array claims {count} items")
        if item_kind in _SCALARS:
            file.seek(struct.calcsize(_SCALARS[item_kind]) * count, 1)
        else:
            for _ in range(count):
                _read_value(file, item_kind)
        return None
    raise ValueError(f"unknown metadata type {kind}")


def _corrupt(path: Path, why: str) -> InfernoError:
    return InfernoError(
        "model_load_failed", f"{path.name} is not a usable GGUF model: {why}", {"path": path.name}
    )


def kv_cache_bytes(metadata: dict[str, Any], context_tokens: int) -> int | None:
    """f16 K and V for context_tokens cells over every layer; None when the header lacks the figures."""
    arch = metadata.get("general.architecture")
    layers = metadata.get(f"{arch}.block_count")
    embedding = metadata.get(f"{arch}.embedding_length")
    heads = metadata.get(f"{arch}.attention.head_count")
    if not (isinstance(layers, int) and isinstance(embedding, int) and isinstance(heads, int) and heads):
        return None
    kv_heads = metadata.get(f"{arch}.attention.head_count_kv", heads)
    key_length = metadata.get(f"{arch}.attention.key_length", embedding // heads)
    value_length = metadata.get(f"{arch}.attention.value_length", embedding // heads)
    per_token_per_layer = kv_heads * (key_length + value_length) * 2
    return int(layers * context_tokens * per_token_per_layer)
