"""The engine factory the model manager is handed: makes a catalog entry's model file (converting on first
use when the entry says so), loads it with the entry's engine and wraps it in the runtime."""

from __future__ import annotations

from collections.abc import Callable

from inferno.core.catalog import ModelEntry
from inferno.core.engines.base import ModelDescription
from inferno.core.engines.loading import EngineLoad
from inferno.core.engines.registry import loader_for
from inferno.core.metrics import EngineMetrics
from inferno.core.runtime.served_model import ServedModel

# Load progress: a phase name (the values of model_manager.LoadPhase) and the fraction done, 0 to 1.
LoadReport = Callable[[str, float], None]
# Converting dwarfs loading: a conversion on first use takes the first half of the progress bar.
_CONVERSION_SHARE = 0.5


class EngineFactory:
    def __init__(self, metrics: EngineMetrics) -> None:
        self._metrics = metrics

    def build(self, entry: ModelEntry, report: LoadReport) -> tuple[ServedModel, ModelEntry]:
        """The served model, and the entry as it stands after a conversion made its file. Blocks: call it
        in a worker thread."""
        share = 1.0
        if entry.convert_from is not None and not entry.path.exists():
            from inferno.core.convert.converter import convert_checkpoint

            convert_checkpoint(
                entry.convert_from,
                entry.path,
                entry.convert_quantization,
                lambda fraction, _: report("converting", fraction * _CONVERSION_SHARE),
            )
            entry = entry.with_file_facts()
            share = 1.0 - _CONVERSION_SHARE
        offset = 1.0 - share
        description = ModelDescription(
            id=entry.id,
            path=str(entry.path),
            format=entry.format,
            engine=entry.engine,
            owned_by=entry.owned_by,
            created=entry.created,
            context_length=0,
            file_size_bytes=entry.file_size_bytes,
            vocab_size=0,
        )
        load = EngineLoad(
            description=description,
            path=entry.path,
            settings=entry.settings,
            report=lambda phase, fraction: report(phase, offset + fraction * share),
        )
        loaded = loader_for(entry.engine)(load)
        try:
            return ServedModel(loaded, self._metrics.for_model(entry.id), entry.settings), entry
        except BaseException:
            loaded.close()
            raise
