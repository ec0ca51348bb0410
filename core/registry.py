"""The models this core serves, by id, and the engines that run them."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

from inferno.core.embedded import EMBEDDED_MODEL_ID, EMBEDDED_MODEL_OWNER, embedded_model_path
from inferno.core.engines.base import Engine, ModelDescription
from inferno.core.engines.llamacpp.engine import LlamaCppEngine, LlamaCppSettings
from inferno.core.engines.llamacpp.model import GgufModel, init_llama_backend
from inferno.core.metrics import EngineMetrics
from inferno.errors import InfernoError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSource:
    id: str
    path: Path
    owned_by: str


def model_id_for(path: Path) -> str:
    """A stable id from a file name: lower case, [a-z0-9._-] only, no .gguf suffix."""
    stem = path.name.removesuffix(".gguf")
    return re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("-") or "model"


def model_sources(paths: list[Path]) -> list[ModelSource]:
    """The embedded default when no paths are given, otherwise one source per GGUF path."""
    if not paths:
        return [ModelSource(EMBEDDED_MODEL_ID, embedded_model_path(), EMBEDDED_MODEL_OWNER)]
    sources: list[ModelSource] = []
    for path in paths:
        model_id = model_id_for(path)
        if any(s.id == model_id for s in sources):
            raise InfernoError("invalid_parameters", f"two --model files map to the same id {model_id!r}")
        sources.append(ModelSource(model_id, path.resolve(), "local"))
    return sources


class ModelRegistry:
    """Loads every source at start; looks engines up by id."""

    def __init__(
        self, sources: list[ModelSource], settings: LlamaCppSettings, metrics: EngineMetrics
    ) -> None:
        init_llama_backend()
        self._engines: dict[str, Engine] = {}
        for source in sources:
            started = time.monotonic()
            model = GgufModel(source.path)
            stat = source.path.stat()
            description = ModelDescription(
                id=source.id,
                path=str(source.path),
                format="gguf",
                engine="llama.cpp",
                owned_by=source.owned_by,
                created=int(stat.st_mtime),
                context_length=model.n_ctx_train,
                file_size_bytes=stat.st_size,
                vocab_size=model.n_vocab,
            )
            self._engines[source.id] = LlamaCppEngine(description, model, settings, metrics)
            log.info("loaded %s from %s in %.1f s", source.id, source.path, time.monotonic() - started)

    @property
    def default_model_id(self) -> str:
        return next(iter(self._engines))

    def ids(self) -> list[str]:
        return list(self._engines)

    def engines(self) -> list[Engine]:
        return list(self._engines.values())

    def get(self, model_id: str) -> Engine:
        engine = self._engines.get(model_id)
        if engine is None:
            raise InfernoError(
                "model_not_found",
                f"The requested model '{model_id}' was not found",
                {
                    "available_models": self.ids(),
                    "suggestion": "Use 'GET /v1/models' to see available models",
                },
            )
        return engine

    def close(self) -> None:
        for engine in self._engines.values():
            engine.close()
