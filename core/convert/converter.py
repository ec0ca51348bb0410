"""Hugging Face checkpoint to GGUF at f32, f16, q8_0, q4_0 or q4_1, written with the gguf package.

Which tensors are quantized follows llama.cpp's own converter: 1-D tensors, norms, biases, position and
token-type embeddings stay f32; a matrix whose rows do not split into 32-value blocks falls back to f16.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

from inferno.core.convert.architectures import architecture_of
from inferno.core.convert.checkpoint import open_checkpoint
from inferno.errors import InfernoError

QUANTIZATIONS: dict[str, tuple[gguf.GGMLQuantizationType, gguf.LlamaFileType]] = {
    "f32": (gguf.GGMLQuantizationType.F32, gguf.LlamaFileType.ALL_F32),
    "f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
    "q8_0": (gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
    "q4_0": (gguf.GGMLQuantizationType.Q4_0, gguf.LlamaFileType.MOSTLY_Q4_0),
    "q4_1": (gguf.GGMLQuantizationType.Q4_1, gguf.LlamaFileType.MOSTLY_Q4_1),
}
_ALWAYS_F32 = ("position_embd.weight", "token_types.weight")
# Fraction of the progress bar for converting tensors; writing the file is the rest.
_TENSOR_SHARE = 0.9

Progress = Callable[[float, str], None]
"""progress(fraction 0 to 1, what is happening); raising from it cancels the conversion."""


@dataclass(frozen=True)
class ConversionResult:
    output: Path
    architecture: str
    quantization: str
    source_bytes: int
    output_bytes: int
    tensors: int
    seconds: float


def convert_checkpoint(
    source: Path, output: Path, quantization: str, progress: Progress | None = None
) -> ConversionResult:
    if quantization not in QUANTIZATIONS:
        raise InfernoError(
            "invalid_parameters",
            f"quantization {quantization!r} is not one of {', '.join(QUANTIZATIONS)}",
            {"param": "quantization"},
        )
    report = progress or (lambda fraction, phase: None)
    started = time.monotonic()
    checkpoint = open_checkpoint(source)
    architecture = architecture_of(checkpoint)
    tensor_type, file_type = QUANTIZATIONS[quantization]
    total = checkpoint.tensor_count()
    partial = output.with_name(output.name + ".partial")
    output.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(partial), gguf.MODEL_ARCH_NAMES[architecture.gguf_arch])
    try:
        writer.add_name(source.name)
        architecture.write_metadata(checkpoint, writer)
        writer.add_file_type(file_type)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        report(0.0, "converting tensors")
        count = 0
        for index, (name, data) in enumerate(architecture.tensors(checkpoint)):
            kind = _tensor_type(name, data, tensor_type)
            stored = (
                data.astype(np.float32)
                if kind is gguf.GGMLQuantizationType.F32
                else gguf.quants.quantize(data, kind)
            )
            writer.add_tensor(name, stored, raw_dtype=kind)
            count += 1
            report(_TENSOR_SHARE * (index + 1) / max(total, 1), "converting tensors")
        report(_TENSOR_SHARE, "writing the file")
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    partial.replace(output)
    report(1.0, "done")
    return ConversionResult(
        output=output,
        architecture=checkpoint.architecture,
        quantization=quantization,
        source_bytes=sum(p.stat().st_size for p in checkpoint.weight_files),
        output_bytes=output.stat().st_size,
        tensors=count,
        seconds=time.monotonic() - started,
    )


def _tensor_type(name: str, data: np.ndarray, wanted: gguf.GGMLQuantizationType) -> gguf.GGMLQuantizationType:
    if data.ndim <= 1 or name.endswith(("_norm.weight", ".bias")) or name in _ALWAYS_F32:
        return gguf.GGMLQuantizationType.F32
    if wanted in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
        return wanted
    block, _ = gguf.GGML_QUANT_SIZES[wanted]
    return wanted if data.shape[-1] % block == 0 else gguf.GGMLQuantizationType.F16
