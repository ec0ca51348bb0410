"""`inferno convert SRC --to gguf --quant q4_0 [--out PATH]`: a Hugging Face folder to GGUF, with a progress
bar, no server needed."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TextIO

from inferno.errors import InfernoError
from inferno.progress import ProgressLine


def run_convert_command(
    source: Path, target: str, quantization: str, out: Path | None, stream: TextIO = sys.stdout
) -> int:
    try:
        if target == "exl2":
            raise InfernoError(
                "gpu_unavailable", "EXL2 conversion needs a CUDA GPU (ExLlamaV2), and none is available here"
            )
        from inferno.core.convert.converter import convert_checkpoint

        # The gguf package narrates every step at INFO; the progress bar says enough.
        logging.getLogger("gguf").setLevel(logging.WARNING)

        output = out or Path.cwd() / f"{source.resolve().name}.{quantization}.gguf"
        line = ProgressLine(stream)
        result = convert_checkpoint(
            source, output, quantization, lambda f, phase: line.update(100 * f, phase)
        )
        line.finish("done")
    except InfernoError as error:
        print(f"\ninferno convert: {error.code}: {error.message}", file=sys.stderr)
        return 1
    ratio = result.output_bytes / result.source_bytes if result.source_bytes else 0.0
    stream.write(
        f"{result.output} ({result.architecture}, {quantization}): {result.output_bytes / 2**20:.1f} MiB, "
        f"{ratio:.0%} of the source weights, {result.tensors} tensors in {result.seconds:.1f} s\n"
    )
    return 0
