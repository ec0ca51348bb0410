"""Whether ExLlamaV2 can run here, and if not, what is missing. Imports nothing heavy until asked, and then
only torch (to ask it for a CUDA device)."""

from __future__ import annotations

import importlib.util

INSTALL_HINT = "pip install 'inferno-server[exllamav2]'"


def exllamav2_missing(modules: tuple[str, ...] = ("exllamav2",)) -> str | None:
    """None when the modules are installed and torch sees a CUDA device; otherwise what is missing, e.g.
    "exllamav2 is not installed (pip install ...); no CUDA device (torch 2.13.0+cpu is a CPU build)"."""
    missing = [f"{name} is not installed ({INSTALL_HINT})" for name in modules if not _installed(name)]
    cuda = _cuda_missing()
    if cuda:
        missing.append(cuda)
    return "; ".join(missing) or None


def _cuda_missing() -> str | None:
    if not _installed("torch"):
        return "no CUDA device (torch is not installed)"
    try:
        import torch
    except (ImportError, OSError) as error:  # a broken or mismatched install
        return f"no CUDA device (torch does not import: {error})"
    if torch.version.cuda is None and torch.version.hip is None:
        return f"no CUDA device (torch {torch.__version__} is a CPU build)"
    if not torch.cuda.is_available():
        return "no CUDA device"
    return None


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None
