"""Every model the core can serve: from inferno.toml, --model flags, the models directories and the embedded
default, each with a stable id, the engine its format needs and an estimated memory need. Paths from the
config stay inside its models directories. A model is a GGUF file (llama.cpp) or a Hugging Face folder with
config.json and safetensors weights, EXL2 or FP16/BF16 (ExLlamaV2)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path

from inferno.config_file import ConfigError, ManagementConfig, ModelConfig
from inferno.core.embedded import (
    EMBEDDED_MODEL_ID,
    EMBEDDED_MODEL_OWNER,
    EMBEDDING_MODEL_ID,
    EMBEDDING_MODEL_OWNER,
    EMBEDDING_MODEL_QUANTIZATION,
    embedded_model_path,
    embedding_model_source,
)
from inferno.core.engines.registry import LLAMACPP, canonical_engine, capabilities_of, detect_format
from inferno.core.gguf_header import kv_cache_bytes, read_gguf_metadata
from inferno.engine_settings import EngineSettings
from inferno.errors import InfernoError

log = logging.getLogger(__name__)

# Compute buffers, sampler state and the Python side of an engine, on top of weights and KV cache.
ENGINE_OVERHEAD_BYTES = 96 << 20


@dataclass(frozen=True)
class ModelEntry:
    id: str
    path: Path
    engine: str
    owned_by: str
    settings: EngineSettings
    load_at_start: bool
    # None: stays loaded until unloaded.
    keep_alive_s: float | None
    created: int
    file_size_bytes: int
    format: str = "gguf"
    # A Hugging Face folder the GGUF file is made from on first load, when the file does not exist yet.
    convert_from: Path | None = None
    convert_quantization: str = "f16"

    def with_file_facts(self) -> ModelEntry:
        """The entry with the file's current size: a file made after start-up (a conversion on first use) had
        none when the catalog was built. An entry made from a source keeps the source's time."""
        created, size = _file_facts(self.path)
        return replace(self, created=self.created if self.convert_from else created, file_size_bytes=size)

    def estimated_memory_bytes(self) -> int:
        """Weights (the file) + KV cache for every parallel sequence + a fixed overhead. A file whose header
        cannot be read counts as its size plus the overhead; loading it will fail with the reason. A folder
        (ExLlamaV2, GPU memory) counts its weights plus the overhead."""
        if self.format != "gguf":
            return self.file_size_bytes + ENGINE_OVERHEAD_BYTES
        try:
            metadata = read_gguf_metadata(self.path)
        except (InfernoError, OSError):
            return self.file_size_bytes + ENGINE_OVERHEAD_BYTES
        arch = metadata.get("general.architecture")
        trained = metadata.get(f"{arch}.context_length")
        context = self.settings.resolved_context(trained if isinstance(trained, int) else 0)
        kv = kv_cache_bytes(metadata, context * self.settings.parallel_sequences) or 0
        return self.file_size_bytes + kv + ENGINE_OVERHEAD_BYTES


def model_id_for(path: Path) -> str:
    """A stable id from a file or folder name: lower case, [a-z0-9._-] only, no .gguf suffix."""
    stem = path.name.removesuffix(".gguf")
    return re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("-") or "model"


def build_catalog(
    config: ManagementConfig,
    model_paths: tuple[Path, ...],
    defaults: EngineSettings,
    data_dir: Path | None = None,
) -> list[ModelEntry]:
    """Config entries first, then --model files or folders (all loaded at start), then other models in the
    models dirs (GGUF files and model folders), then the embedded model unless --model paths were given.
    When nothing is marked to load at start, the embedded model (or else the first entry) is."""
    entries: list[ModelEntry] = []
    seen_paths: set[Path] = set()

    def add(entry: ModelEntry) -> None:
        if any(e.id == entry.id for e in entries):
            raise ConfigError(f"two models have the id {entry.id!r}")
        entries.append(entry)
        seen_paths.add(entry.path)

    for i, model in enumerate(config.models):
        add(_configured_entry(model, config, defaults, f"[[models]] #{i + 1}"))
    for path in model_paths:
        resolved = path.resolve()
        if not resolved.exists():
            raise ConfigError(f"--model {path}: no such file or folder")
        if detect_format(resolved) is None:
            raise ConfigError(
                f"--model {path}: neither a GGUF file nor a folder with config.json and safetensors weights"
            )
        add(_entry(model_id_for(path), resolved, "local", defaults, True, config.keep_alive_s))
    for directory in config.models_dirs:
        for found in sorted(directory.iterdir()) if directory.is_dir() else []:
            resolved = found.resolve()
            if (
                resolved not in seen_paths
                and _inside(resolved, config.models_dirs)
                and detect_format(resolved) is not None
            ):
                add(_entry(model_id_for(resolved), resolved, "local", defaults, False, config.keep_alive_s))
    # --model flags mean "serve these": the embedded model joins everything else.
    if not model_paths and not any(e.id == EMBEDDED_MODEL_ID for e in entries):
        path = embedded_model_path()
        add(_entry(EMBEDDED_MODEL_ID, path, EMBEDDED_MODEL_OWNER, defaults, False, None))
    source = embedding_model_source() if data_dir is not None and not model_paths else None
    if source is not None and data_dir is not None and not any(e.id == EMBEDDING_MODEL_ID for e in entries):
        converted = data_dir / "models" / f"{EMBEDDING_MODEL_ID}.{EMBEDDING_MODEL_QUANTIZATION}.gguf"
        entry = _entry(EMBEDDING_MODEL_ID, converted, EMBEDDING_MODEL_OWNER, defaults, False, None)
        add(_converted_from(entry, source, EMBEDDING_MODEL_QUANTIZATION))
    if not any(e.load_at_start for e in entries):
        first = next((e for e in entries if e.id == EMBEDDED_MODEL_ID), entries[0])
        entries[entries.index(first)] = _with_load_at_start(first)
    return entries


def _configured_entry(
    model: ModelConfig, config: ManagementConfig, defaults: EngineSettings, where: str
) -> ModelEntry:
    engine = canonical_engine(model.engine) if model.engine is not None else None
    if model.engine is not None and engine is None:
        raise ConfigError(f"{where}: engine {model.engine!r} is not llama.cpp or exllamav2")
    path = confine(model.path, config.models_dirs, where)
    settings = replace(defaults, **model.settings)
    keep_alive = config.keep_alive_s if model.keep_alive_s is None else (model.keep_alive_s or None)
    entry = _entry(model.id or model_id_for(path), path, model.owned_by, settings, model.load, keep_alive)
    if engine is None or engine == entry.engine:
        return entry
    return replace(entry, engine=engine, format=capabilities_of(engine).formats[0])


def local_model_entry(path: Path, settings: EngineSettings) -> ModelEntry:
    """An entry for a model made while serving (a conversion's output, file or folder): loads on demand."""
    return _entry(model_id_for(path), path.resolve(), "local", settings, False, None)


def confine(path_text: str, roots: tuple[Path, ...], where: str) -> Path:
    """The path, relative to the first models dir, resolved through symlinks; it must stay inside a models
    dir."""
    if not roots:
        raise ConfigError(f"{where}: no models_dirs are configured, so no model path is allowed")
    raw = Path(path_text)
    if ".." in raw.parts:
        raise ConfigError(f"{where}: path {path_text!r} may not contain '..'")
    resolved = (raw if raw.is_absolute() else roots[0] / raw).resolve()
    if not _inside(resolved, roots):
        raise ConfigError(f"{where}: path {path_text!r} is outside the models directories")
    return resolved


def _inside(path: Path, roots: tuple[Path, ...]) -> bool:
    return any(path.is_relative_to(root.resolve()) for root in roots)


def _entry(
    model_id: str,
    path: Path,
    owned_by: str,
    settings: EngineSettings,
    load_at_start: bool,
    keep_alive_s: float | None,
) -> ModelEntry:
    """An entry whose engine and format follow from what the path holds; a path that does not exist yet (a
    conversion's output) or is unreadable is taken for GGUF, and loading it says what is wrong."""
    created, size = _file_facts(path)
    found = detect_format(path) if path.exists() else None
    return ModelEntry(
        id=model_id,
        path=path,
        engine=found.engine if found else LLAMACPP,
        format=found.format if found else "gguf",
        owned_by=owned_by,
        settings=settings,
        load_at_start=load_at_start,
        keep_alive_s=keep_alive_s,
        created=created,
        file_size_bytes=size,
    )


def _converted_from(entry: ModelEntry, source: Path, quantization: str) -> ModelEntry:
    """An entry whose file is made from source on first load. Its created time is the source's, before and
    after the conversion, so the models list shows one real time from the start."""
    created, _size = _file_facts(source)
    return replace(entry, convert_from=source, convert_quantization=quantization, created=created)


def _file_facts(path: Path) -> tuple[int, int]:
    """(modification time, size) of the file, or of a folder's files together; zeros while it does not exist
    yet."""
    if not path.exists():
        return 0, 0
    stat = path.stat()
    if path.is_dir():
        return int(stat.st_mtime), sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    return int(stat.st_mtime), stat.st_size


def _with_load_at_start(entry: ModelEntry) -> ModelEntry:
    return ModelEntry(**{**entry.__dict__, "load_at_start": True})
