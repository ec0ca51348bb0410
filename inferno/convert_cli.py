"""`inferno convert SRC --to gguf --quant q4_0 [--out PATH]` or `inferno convert SRC --to exl2 --bits 4.0
[--out DIR]`: a Hugging Face folder to GGUF (here, on the CPU) or EXL2 (ExLlamaV2's converter, on a CUDA GPU),
with progress (a bar on a terminal, plain lines in logs), no server needed.

Exit status: 0 when converted; 1 when the conversion is refused or fails (an existing output without --force
among them), with one line on stderr naming the flag or file that fixes it; 2 for arguments argparse rejects.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from inferno.errors import InfernoError, invalid_param
from inferno.progress import ProgressLine

if TYPE_CHECKING:
    from inferno.core.convert.converter import ConversionResult

_GGUF_TYPES = ("f32", "f16", "q8_0", "q4_0", "q4_1")
# The same as inferno.core.convert.exl2.DEFAULT_BITS, which needs the core's imports; a test keeps them equal.
DEFAULT_EXL2_BITS = 4.0


def add_convert_arguments(convert: argparse.ArgumentParser) -> None:
    """The `convert` subcommand's arguments; run_convert_command takes what they parse to."""
    convert.add_argument(
        "source", type=Path, help="folder with config.json and safetensors (or .bin/.pt) weights"
    )
    convert.add_argument(
        "--to", choices=["gguf", "exl2"], default="gguf", help="output format (default: %(default)s)"
    )
    convert.add_argument(
        "--quant", default="f16", choices=_GGUF_TYPES, help="GGUF type, gguf only (default: %(default)s)"
    )
    convert.add_argument(
        "--bits",
        type=float,
        help=f"EXL2 bits per weight, 2.0 to 8.0, exl2 only (default: {DEFAULT_EXL2_BITS})",
    )
    convert.add_argument(
        "--out",
        type=Path,
        help="output file or EXL2 folder (default: SOURCE.QUANT.gguf or SOURCE-exl2-Nbpw here)",
    )
    convert.add_argument(
        "--force",
        action="store_true",
        help="replace an existing output; without it an existing output is an error (exit 1)",
    )


def run_convert_command(
    source: Path,
    target: str,
    quantization: str,
    out: Path | None,
    stream: TextIO = sys.stdout,
    bits: float | None = None,
    force: bool = False,
) -> int:
    line = ProgressLine(stream)
    try:
        if target == "exl2":
            result = _convert_exl2(source, bits, out, force, lambda f, phase: line.update(100 * f, phase))
        else:
            if bits is not None:
                raise invalid_param("bits", "--bits is for --to exl2; GGUF takes --quant")
            from inferno.core.convert.converter import convert_checkpoint

            output = out or Path.cwd() / f"{source.resolve().name}.{quantization}.gguf"
            if output.is_dir():
                raise invalid_param("out", f"{output} is a folder; --out takes the GGUF file to write")
            _check_output(output, force)
            # The gguf package narrates every step at INFO; the progress lines say enough.
            logging.getLogger("gguf").setLevel(logging.WARNING)
            # The file is written beside the output and renamed over it only when complete.
            result = convert_checkpoint(
                source, output, quantization, lambda f, phase: line.update(100 * f, phase)
            )
        line.finish("done")
    except InfernoError as error:
        line.interrupt()
        print(f"inferno convert: {error.code}: {error.message}", file=sys.stderr)
        return 1
    ratio = result.output_bytes / result.source_bytes if result.source_bytes else 0.0
    stream.write(
        f"{result.output} ({result.architecture}, {result.quantization}): "
        f"{result.output_bytes / 2**20:.1f} MiB, {ratio:.0%} of the source weights, "
        f"{result.tensors} tensors in {result.seconds:.1f} s\n"
    )
    return 0


def _check_output(output: Path, force: bool) -> None:
    """An existing output is replaced only with --force."""
    if not output.exists() and not output.is_symlink():
        return
    if not force:
        raise invalid_param("out", f"{output} already exists; pass --force to replace it")


def _convert_exl2(
    source: Path,
    bits: float | None,
    out: Path | None,
    force: bool,
    progress: Callable[[float, str], None],
) -> ConversionResult:
    from inferno.core.convert import exl2

    chosen = exl2.DEFAULT_BITS if bits is None else bits
    if not exl2.MIN_BITS <= chosen <= exl2.MAX_BITS:
        raise invalid_param("bits", f"--bits must be from {exl2.MIN_BITS} to {exl2.MAX_BITS}, not {chosen}")
    exl2.exl2_weights(source)
    output = out or Path.cwd() / f"{source.resolve().name}-exl2-{exl2.bits_label(chosen)}"
    _check_output(output, force)
    exl2.require_exl2()
    if not output.exists():
        return exl2.convert_to_exl2(source, output, chosen, progress)
    # --force: convert beside the old output and swap only when done, so a failed run keeps it.
    fresh = output.with_name(f".{output.name}.replacement")
    _remove(fresh)
    try:
        result = exl2.convert_to_exl2(source, fresh, chosen, progress)
        _remove(output)
        fresh.rename(output)
    finally:
        _remove(fresh)
    return dataclasses.replace(result, output=output)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
