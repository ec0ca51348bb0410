"""The GPU checks skip without CUDA; their model folders come from scripts/gpu-check.sh or are made here.

scripts/gpu-check.sh runs these with `--confcutdir tests/gpu` (the suite's own conftest needs packages the GPU
machine lacks) and passes the folders it made once through INFERNO_GPU_HF_DIR and INFERNO_GPU_EXL2_DIR.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.gpu import models

_HERE = Path(__file__).resolve().parent


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [item for item in items if _HERE in item.path.resolve().parents]
    if not gpu_items or _cuda_available():
        return
    if os.environ.get("INFERNO_GPU_REQUIRED"):  # set by scripts/gpu-check.sh on the GPU machine
        raise pytest.UsageError("INFERNO_GPU_REQUIRED is set, but torch sees no CUDA device")
    skip = pytest.mark.skip(reason="needs a CUDA GPU (scripts/gpu-check.sh runs it on one)")
    for item in gpu_items:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def hf_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded SmolLM2-135M exported from its GGUF to an FP16 Hugging Face folder."""
    given = os.environ.get("INFERNO_GPU_HF_DIR")
    if given:
        return Path(given)
    return models.export_hf_folder(models.embedded_gguf(), tmp_path_factory.mktemp("gpu") / "smollm2-hf")


@pytest.fixture(scope="session")
def exl2_model_dir(hf_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """hf_model_dir quantized to EXL2 at 6.0 bits per weight (made once, reused when it is there)."""
    given = os.environ.get("INFERNO_GPU_EXL2_DIR")
    target = Path(given) if given else tmp_path_factory.mktemp("gpu") / "smollm2-exl2-6.0bpw"
    if not (target / "config.json").is_file():
        models.convert_exl2(hf_model_dir, target, bits=6.0)
    return target
