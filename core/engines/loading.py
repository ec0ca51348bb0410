"""The contract between the engine factory and each engine: what a load is given, and what it returns."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from inferno.core.chat_template import ChatTemplate
from inferno.core.engines.base import ModelDescription
from inferno.core.engines.capabilities import EngineCapabilities
from inferno.core.runtime.protocol import BatchDecoder, SelfScheduler, Vocabulary
from inferno.engine_settings import EngineSettings

# Called after each embedding decode with (inputs, tokens) in it, for the metrics.
EmbeddingDecodeSink = Callable[[int, int], None]
# Load progress: a phase name ("reading_weights", "creating_context") and the fraction done, 0 to 1.
ProgressReport = Callable[[str, float], None]


@dataclass(frozen=True)
class EngineLoad:
    """What an engine is given to load one model."""

    description: ModelDescription
    path: Path
    settings: EngineSettings
    report: ProgressReport


class Embedder(Protocol):
    """Embedding capability. embed() may block; the runtime calls it in a worker thread."""

    @property
    def max_input_tokens(self) -> int: ...

    @property
    def dimensions(self) -> int: ...

    def embed(self, inputs: Sequence[Sequence[int]]) -> list[list[float]]:
        """One L2-normalized mean-pooled vector per tokenized input."""


@dataclass(frozen=True)
class DeviceMemory:
    """Memory a loaded model holds, and where."""

    # Host memory (weights and KV cache for CPU engines).
    host_bytes: int = 0
    # Accelerator memory, measured by the engine (torch.cuda.memory_allocated for CUDA engines).
    device_bytes: int = 0
    # The accelerator's name ("NVIDIA H200"); empty for CPU engines.
    device_name: str = ""
    # CPU engines: how the weights run on this CPU and why ("cpu, weight repacking on (probe passed)").
    cpu_path: str = ""
    # CPU engines: how much of this model's weights took that path ("0.0 of 92.1 MiB of weights repacked").
    weight_layout: str = ""

    def device(self) -> str:
        """Where the model runs, for its status: the accelerator, or the CPU path and this model's share."""
        if self.device_name:
            return self.device_name
        return "; ".join(part for part in (self.cpu_path, self.weight_layout) if part) or "cpu"


@dataclass
class LoadedEngine:
    """A model an engine loaded: its parts, of which the runtime builds the served model.

    generator is None for embedding-only models; embedder is None for models that only generate (or whose
    engine embeds on first use: then make_embedder builds it).
    """

    description: ModelDescription
    capabilities: EngineCapabilities
    vocabulary: Vocabulary
    chat_template: ChatTemplate | None
    generator: BatchDecoder | SelfScheduler | None
    make_embedder: Callable[[EmbeddingDecodeSink], Embedder] | None
    memory: Callable[[], DeviceMemory]
    # Frees everything that is not the generator's (model weights, embedder), after the generator closed.
    close: Callable[[], None]


# An engine's entry point: loads a model or raises InfernoError (gpu_unavailable, model_load_failed, ...).
EngineLoader = Callable[[EngineLoad], LoadedEngine]
