"""What a Hugging Face model folder holds, read from its JSON files alone (no torch, no exllamav2): the
catalog calls this to list folders, the loader to configure a load."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXL2 = "exl2"
FP16 = "fp16"
# config.json keys that may hold the training context, in ExLlamaV2's order of preference.
_CONTEXT_KEYS = (
    "max_sequence_length",
    "model_max_length",
    "max_position_embeddings",
    "max_seq_len",
    "n_positions",
)


@dataclass(frozen=True)
class ModelFolder:
    path: Path
    # "exl2" (config.json has ExLlamaV2's quantization_config) or "fp16" (plain FP16/BF16 safetensors).
    format: str
    # The training context from config.json; 0 when it names none.
    context_length: int
    vocab_size: int
    # All files in the folder (weights, tokenizer, configs).
    size_bytes: int


def describe_model_folder(path: Path) -> ModelFolder | None:
    """The folder's format and sizes, or None when it is not a model folder ExLlamaV2 can load (no
    config.json, no .safetensors weights, or a quantization other than EXL2)."""
    if not path.is_dir() or not any(path.glob("*.safetensors")):
        return None
    config = read_json(path / "config.json")
    if config is None:
        return None
    quantization = config.get("quantization_config")
    if quantization is None:
        fmt = FP16
    elif isinstance(quantization, dict) and quantization.get("quant_method") == EXL2:
        fmt = EXL2
    else:  # GPTQ, AWQ, bitsandbytes...: weights ExLlamaV2 cannot read
        return None
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    return ModelFolder(path, fmt, trained_context(config), _int(_lookup(config, "vocab_size")), size)


def trained_context(config: dict[str, Any]) -> int:
    """The first of ExLlamaV2's context keys config.json sets (top level, then text_config); 0 if none."""
    return next((n for key in _CONTEXT_KEYS if (n := _int(_lookup(config, key))) > 0), 0)


def eos_token_ids(path: Path) -> frozenset[int]:
    """End-of-generation tokens: config.json's eos_token_id plus generation_config.json's (each an int or a
    list)."""
    ids: set[int] = set()
    for name in ("config.json", "generation_config.json"):
        ids.update(_ids(_lookup(read_json(path / name) or {}, "eos_token_id")))
    return frozenset(ids)


def bos_token_id(path: Path) -> int | None:
    ids = _ids(_lookup(read_json(path / "config.json") or {}, "bos_token_id"))
    return ids[0] if ids else None


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object file's contents; None when it is missing or not a JSON object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _lookup(config: dict[str, Any], key: str) -> Any:
    # Multimodal configs keep the language model's fields under text_config.
    if config.get(key) is not None:
        return config[key]
    text = config.get("text_config")
    return text.get(key) if isinstance(text, dict) else None


def _ids(value: Any) -> list[int]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, int) and not isinstance(v, bool)]
    return []


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def chat_template_source(path: Path) -> str | None:
    """The folder's Jinja chat template: tokenizer_config.json's chat_template (a string, or a list of named
    templates of which "default" or the first is taken), else chat_template.jinja; None when neither."""
    template = (read_json(path / "tokenizer_config.json") or {}).get("chat_template")
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default", next(iter(named.values()), None))
    if isinstance(template, str):
        return template
    try:
        return (path / "chat_template.jinja").read_text(encoding="utf-8")
    except OSError:
        return None


def special_token_text(tokenizer_config: dict[str, Any], role: str) -> str:
    """tokenizer_config.json's bos_token or eos_token text (a string or an AddedToken object); "" if unset."""
    value = tokenizer_config.get(f"{role}_token")
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else ""
