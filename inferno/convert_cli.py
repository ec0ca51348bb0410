"""`inferno convert SRC --to gguf --quant q4_0 [--out PATH]` or `inferno convert SRC --to exl2 --bits 4.0
[--out DIR]`: a Hugging Face folder to GGUF (here, on the CPU) or EXL2 (ExLlamaV2's converter, on a CUDA GPU),
with a progress bar, no server needed."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from inferno.errors import InfernoError, invalid_param
from inferno.progress import ProgressLine

if TYPE_CHECKING:
    from inferno.core.convert.converter import ConversionResult

_GGUF_TYPES = ("f32", "f16", "q8_0", "q4_0", "q4_1")


def add_convert_arguments(convert: argparse.ArgumentParser) -> None:
    """The `convert` subcommand's arguments; run_convert_command takes what they parse to."""
    convert.add_argument(
        "source", type=Path, help="folder with config.json and safetensors (or .bin/.pt) weights"
    )
    convert.add_argument("--to", choices=["gguf", "exl2"], default="gguf")
    convert.add_argument("--quant", default="f16", choices=_GGUF_TYPES, help="GGUF type (gguf only)")
    convert.add_argument(
        "--bits", type=float, help="EXL2 bits per weight, 2.0 to 8.0 (exl2 only; default 4.0)"
    )
    convert.add_argument(
        "--out",
        type=Path,
        help="output file or EXL2 folder (default: SOURCE.QUANT.gguf or SOURCE-exl2-Nbpw here)",
    )


def run_convert_command(
    source: Path,
    target: str,
    quantization: str,
    out: Path | None,
    stream: TextIO = sys.stdout,
    bits: float | None = None,
) -> int:
    try:
        line = ProgressLine(stream)
        if target == "exl2":
            result = _convert_exl2(source, bits, out, lambda f, phase: line.update(100 * f, phase))
        else:
            if bits is not None:
                raise invalid_param("bits", "--bits is for --to exl2; GGUF takes --quant")
            from inferno.core.convert.converter import convert_checkpoint

            # The gguf package narrates every step at INFO; the progress bar says enough.
            logging.getLogger("gguf").setLevel(logging.WARNING)
            output = out or Path.cwd() / f"{source.resolve().name}.{quantization}.gguf"
            result = convert_checkpoint(
                source, output, quantization, lambda f, phase: line.update(100 * f, phase)
            )
        line.finish("done")
    except InfernoError as error:
        print(f"\ninferno convert: {error.code}: {error.message}", file=sys.stderr)
        return 1
    ratio = result.output_bytes / result.source_bytes if result.source_bytes else 0.0
    stream.write(
        f"{result.output} ({result.architecture}, {result.quantization}): "
        f"{result.output_bytes / 2**20:.1f} MiB, {ratio:.0%} of the source weights, "
        f"{result.tensors} tensors in {result.seconds:.1f} s\n"
    )
    return 0


def _convert_exl2(
    source: Path, bits: float | None, out: Path | None, progress: Callable[[float, str], None]
) -> ConversionResult:
    from inferno.core.convert import exl2

    chosen = exl2.DEFAULT_BITS if bits is None else bits
    if not exl2.MIN_BITS <= chosen <= exl2.MAX_BITS:
        raise invalid_param("bits", f"--bits must be from {exl2.MIN_BITS} to {exl2.MAX_BITS}, not {chosen}")
    exl2.exl2_weights(source)
    output = out or Path.cwd() / f"{source.resolve().name}-exl2-{exl2.bits_label(chosen)}"
    if output.exists():
        raise invalid_param("out", f"{output} already exists; EXL2 output is a new folder")
    exl2.require_exl2()
    return exl2.convert_to_exl2(source, output, chosen, progress)
