"""Which engines exist, which one a model file or folder needs, and each engine's entry point.

Engines are imported by name only when a model of theirs loads, so the CPU install never imports exllamav2 or
torch. An engine package's __init__ must stay light: it exposes `load` and `CAPABILITIES`. Engines outside
this package plug in by naming their module in INFERNO_ENGINES ("name=module,name=module"); models choose
them with `engine = "name"` in inferno.toml.
"""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from inferno.core.engines.capabilities import EngineCapabilities
from inferno.core.engines.loading import EngineLoader

LLAMACPP = "llama.cpp"
EXLLAMAV2 = "exllamav2"
_PACKAGES = {
    LLAMACPP: "inferno.core.engines.llamacpp",
    EXLLAMAV2: "inferno.core.engines.exllamav2",
}
ENGINE_NAMES = tuple(_PACKAGES)
PLUGINS_VARIABLE = "INFERNO_ENGINES"
# Spellings accepted in inferno.toml's `engine`.
_ALIASES = {"llamacpp": LLAMACPP, "llama-cpp": LLAMACPP, "exl2": EXLLAMAV2}


@dataclass(frozen=True)
class ModelFormat:
    """What a model path holds: the format name and the engine that serves it."""

    format: str
    engine: str


def engine_packages() -> dict[str, str]:
    """Engine name -> module: ours, then the plugins named in INFERNO_ENGINES."""
    packages = dict(_PACKAGES)
    for item in os.environ.get(PLUGINS_VARIABLE, "").split(","):
        name, _, module = item.partition("=")
        if name.strip() and module.strip():
            packages[name.strip().lower()] = module.strip()
    return packages


def canonical_engine(name: str) -> str | None:
    """The engine's canonical name, or None when there is no such engine."""
    name = _ALIASES.get(name.lower(), name.lower())
    return name if name in engine_packages() else None


def loader_for(engine: str) -> EngineLoader:
    loader: EngineLoader = importlib.import_module(engine_packages()[engine]).load
    return loader


def capabilities_of(engine: str) -> EngineCapabilities:
    capabilities: EngineCapabilities = importlib.import_module(engine_packages()[engine]).CAPABILITIES
    return capabilities


def detect_format(path: Path) -> ModelFormat | None:
    """A GGUF file: llama.cpp. A folder with config.json and safetensors weights: ExLlamaV2, as EXL2 when
    config.json has ExLlamaV2's quantization_config, else as FP16/BF16. Anything else: None."""
    if path.is_file():
        return ModelFormat("gguf", LLAMACPP) if path.suffix == ".gguf" or _has_gguf_magic(path) else None
    config = path / "config.json"
    if not (path.is_dir() and config.is_file() and any(path.glob("*.safetensors"))):
        return None
    try:
        quantization = json.loads(config.read_text()).get("quantization_config") or {}
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(quantization, dict) and quantization.get("quant_method") == "exl2":
        return ModelFormat("exl2", EXLLAMAV2)
    return ModelFormat("fp16", EXLLAMAV2)


def _has_gguf_magic(path: Path) -> bool:
    try:
        with path.open("rb") as file:
            return file.read(4) == b"GGUF"
    except OSError:
        return False
