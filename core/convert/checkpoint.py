"""A Hugging Face model folder: config.json, weights (safetensors, or PyTorch .bin/.pt read with
torch.load(weights_only=True), never arbitrary pickle) and tokenizer files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inferno.errors import InfernoError


@dataclass(frozen=True)
class Checkpoint:
    folder: Path
    config: dict[str, Any]
    weight_files: tuple[Path, ...]
    # PyTorch files read so far: counting their tensors and converting them then share one torch.load.
    _torch_states: dict[Path, dict[str, Any]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def architecture(self) -> str:
        architectures = self.config.get("architectures") or [self.config.get("model_type", "unknown")]
        return str(architectures[0])

    def tensor_count(self) -> int:
        return sum(1 for _ in self.tensor_names())

    def tensor_names(self) -> Iterator[str]:
        for path in self.weight_files:
            if path.suffix == ".safetensors":
                from safetensors import safe_open

                with safe_open(str(path), framework="np") as part:
                    yield from part.keys()
            else:
                yield from self._torch_state(path)

    def tensors(self) -> Iterator[tuple[str, np.ndarray]]:
        """Every weight as float32 numpy, one at a time."""
        for path in self.weight_files:
            if path.suffix == ".safetensors":
                yield from _safetensors(path)
            else:
                for name, tensor in self._torch_state(path).items():
                    yield name, tensor.float().numpy()

    def _torch_state(self, path: Path) -> dict[str, Any]:
        if path not in self._torch_states:
            self._torch_states[path] = _load_torch_state(path)
        return self._torch_states[path]

    def json_file(self, name: str) -> dict[str, Any] | None:
        path = self.folder / name
        return json.loads(path.read_text()) if path.is_file() else None


def open_checkpoint(folder: Path) -> Checkpoint:
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise InfernoError(
            "invalid_parameters", f"{folder.name} has no config.json: not a Hugging Face model folder"
        )
    try:
        config = json.loads(config_path.read_text())
    except ValueError as exc:
        raise InfernoError(
            "invalid_parameters", f"{folder.name}/config.json is not valid JSON: {exc}"
        ) from None
    weights = tuple(sorted(folder.glob("*.safetensors")))
    if not weights:
        weights = tuple(sorted([*folder.glob("*.bin"), *folder.glob("*.pt")]))
    if not weights:
        raise InfernoError("invalid_parameters", f"{folder.name} has no .safetensors, .bin or .pt weights")
    return Checkpoint(folder, config, weights)


def _safetensors(path: Path) -> Iterator[tuple[str, np.ndarray]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="np") as part:
            for name in part.keys():  # noqa: SIM118 - a safetensors handle, not a dict
                yield name, part.get_tensor(name).astype(np.float32)
    except TypeError:  # bfloat16 has no numpy type: read through torch
        from safetensors.torch import load_file

        for name, tensor in load_file(str(path)).items():
            yield name, tensor.float().numpy()


def _load_torch_state(path: Path) -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        raise InfernoError(
            "invalid_parameters",
            f"{path.name} is a PyTorch file; reading it needs torch, which is not installed",
        ) from None
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refuses anything but tensors and plain containers
        raise InfernoError(
            "invalid_parameters", f"{path.name} is not a plain PyTorch state dict: {exc}"
        ) from None
    if not isinstance(state, dict):
        raise InfernoError("invalid_parameters", f"{path.name} does not hold a state dict")
    return state
