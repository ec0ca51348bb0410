"""A Hugging Face safetensors folder to EXL2, by ExLlamaV2's own converter run as a subprocess.

The converter (`python -m exllamav2.conversion.convert_exl2`) measures how much each layer suffers at each
bit width on its built-in calibration text, chooses per-layer widths that average the target, quantizes, and
writes a model folder. A subprocess keeps its CUDA memory out of the server and can be stopped: it runs in its
own process group, which is killed on cancel. Nothing here imports torch or exllamav2 at module import: the
CPU install has neither.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from inferno.core.convert.converter import ConversionResult, Progress
from inferno.core.engines.exllamav2.availability import exllamav2_missing
from inferno.errors import InfernoError, invalid_param

log = logging.getLogger(__name__)

CONVERTER_MODULE = "exllamav2.conversion.convert_exl2"
MIN_BITS, MAX_BITS, DEFAULT_BITS = 2.0, 8.0, 4.0
# The output head's width; the converter knows only these.
HEAD_BITS_OPTIONS = (2, 3, 4, 5, 6, 8)
DEFAULT_HEAD_BITS = 6

# How often the progress callback runs while the converter is silent (a long layer), so a cancel gets through.
_POLL_S = 0.5
_STOP_GRACE_S = 10.0
_STATUS_OPEN, _STATUS_CLOSE = "[STATUS]", "[/STATUS]"
_FINISHED_LINE = "-- Finished"

# The converter's stages in the order its --status_output reports them (`Embeddings` comes twice), each
# with its share of the whole run and the phase we show. Measuring and quantizing take nearly all the time.
_STAGES: tuple[tuple[str, float, str], ...] = (
    ("Tokenizing (1)", 0.01, "tokenizing"),
    ("Embeddings", 0.01, "embedding"),
    ("Measuring", 0.43, "measuring"),
    ("Optimizing", 0.03, "optimizing"),
    ("Tokenizing (2)", 0.01, "tokenizing"),
    ("Embeddings", 0.01, "embedding"),
    ("Quantizing", 0.45, "quantizing"),
    ("Compiling", 0.05, "writing"),
)


def exl2_available() -> str | None:
    """None when EXL2 conversion can run here (exllamav2 installed, torch sees a CUDA device), else why not.

    Looks for exllamav2 without importing it; imports torch (when installed) only when called.
    """
    return exllamav2_missing()


def require_exl2() -> None:
    """Raises gpu_unavailable, with exl2_available()'s reason in the message and details, when it says no."""
    reason = exl2_available()
    if reason:
        raise InfernoError(
            "gpu_unavailable",
            f"EXL2 conversion runs ExLlamaV2 on a CUDA GPU, and cannot here: {reason}",
            {"reason": reason},
        )


def parse_bits(text: str) -> float:
    """EXL2 bits per weight from "4", "4.0" or "4.0bpw"; else invalid_parameters naming `quantization`."""
    cleaned = text.strip().lower().removesuffix("bpw").strip()
    try:
        bits = float(cleaned)
    except ValueError:
        bits = math.nan
    if not MIN_BITS <= bits <= MAX_BITS:  # also refuses nan
        raise invalid_param(
            "quantization",
            f"'quantization' for exl2 is bits per weight from {MIN_BITS} to {MAX_BITS}, "
            f'such as "4.0" or "4.0bpw", not {text!r}',
        )
    return bits


def bits_label(bits: float) -> str:
    """The stored form of a bit width: 4.0 -> "4.0bpw", 4.125 -> "4.125bpw"."""
    return f"{float(bits)}bpw"


def converter_command(
    source: Path, work_dir: Path, output_dir: Path, bits: float, head_bits: int
) -> list[str]:
    """The converter's command line: measurement and quantization on its built-in calibration data (no -c),
    working files in work_dir, the finished model (weights, config, tokenizer) in output_dir."""
    return [
        sys.executable, "-m", CONVERTER_MODULE,
        "-i", str(source),
        "-o", str(work_dir),
        "-cf", str(output_dir),
        "-b", str(bits),
        "-hb", str(head_bits),
        "-nr",  # never resume a stale job left in the work dir
        "-so",  # [STATUS]{"stage": ..., "completion": ...}[/STATUS] lines, which progress follows
    ]  # fmt: skip


def convert_to_exl2(
    source: Path,
    output: Path,
    bits: float,
    progress: Progress | None = None,
    head_bits: int = DEFAULT_HEAD_BITS,
) -> ConversionResult:
    """Convert the safetensors folder `source` into the EXL2 folder `output`, which must not exist yet.

    progress(fraction, phase) is called for each stage update and at least every half second; raising from it
    stops the converter (its whole process group) and removes its files. The output appears only complete.
    """
    report = progress or (lambda fraction, phase: None)
    if not MIN_BITS <= bits <= MAX_BITS:
        raise invalid_param(
            "quantization", f"bits per weight must be from {MIN_BITS} to {MAX_BITS}, not {bits}"
        )
    if head_bits not in HEAD_BITS_OPTIONS:
        raise invalid_param("head_bits", f"head bits must be one of {HEAD_BITS_OPTIONS}, not {head_bits}")
    weights = exl2_weights(source)
    if output.exists():
        raise invalid_param("output_file", f"{output} already exists")
    started = time.monotonic()
    # Hidden names beside the output: same filesystem (a rename finishes the job), and model scans skip them.
    work = output.with_name(f".{output.name}.work")
    partial = output.with_name(f".{output.name}.partial")
    for stale in (work, partial):
        shutil.rmtree(stale, ignore_errors=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        _run_converter(converter_command(source, work, partial, bits, head_bits), report)
        produced = sorted(partial.glob("*.safetensors"))
        if not (partial / "config.json").is_file() or not produced:
            raise InfernoError(
                "internal_error", f"the EXL2 converter finished but wrote no model into {partial}"
            )
        if (work / "measurement.json").is_file():  # lets the model be re-quantized at another width quickly
            shutil.copy2(work / "measurement.json", partial / "measurement.json")
        report(1.0, "done")  # the last chance to cancel: after the rename the model is there
        partial.rename(output)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(partial, ignore_errors=True)
    produced = sorted(output.glob("*.safetensors"))
    return ConversionResult(
        output=output,
        architecture=_architecture(source),
        quantization=bits_label(bits),
        source_bytes=sum(p.stat().st_size for p in weights),
        output_bytes=sum(p.stat().st_size for p in produced),
        tensors=sum(_tensor_count(p) for p in produced),
        seconds=time.monotonic() - started,
    )


def exl2_weights(source: Path) -> list[Path]:
    """The source's safetensors files; invalid_parameters naming `source_model` if it is no such folder."""
    if not (source / "config.json").is_file():
        raise invalid_param(
            "source_model", f"{source.name} is not a Hugging Face model folder (no config.json)"
        )
    weights = sorted(source.glob("*.safetensors"))
    if not weights:
        raise invalid_param(
            "source_model", f"EXL2 conversion reads safetensors weights (FP16/BF16); {source.name} has none"
        )
    return weights


@dataclass
class StageTracker:
    """Turns the converter's status lines into one 0..1 fraction over the whole run."""

    index: int = 0
    fraction: float = 0.0
    phase: str = "starting"

    def update(self, line: str) -> bool:
        """Reads one output line; True when it was a status line of a known stage."""
        status = _parse_status(line)
        if status is None:
            return False
        stage, completion = status
        # Forward only: the second `Embeddings` is the one after `Tokenizing (2)`.
        for index in range(self.index, len(_STAGES)):
            name, share, phase = _STAGES[index]
            if name == stage:
                done = sum(s for _, s, _ in _STAGES[:index])
                self.index, self.phase = index, phase
                self.fraction = max(self.fraction, done + share * min(max(completion, 0.0), 1.0))
                return True
        return False


def _parse_status(line: str) -> tuple[str, float] | None:
    start, end = line.find(_STATUS_OPEN), line.find(_STATUS_CLOSE)
    if start < 0 or end < start:
        return None
    try:
        status = json.loads(line[start + len(_STATUS_OPEN) : end])
        return str(status["stage"]), float(status["completion"])
    except (ValueError, KeyError, TypeError):
        return None


def _run_converter(command: list[str], report: Progress) -> None:
    log.info("EXL2 conversion: %s", " ".join(command))
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,  # its own process group, so a cancel stops it and anything it started
    )
    assert process.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True).start()
    tracker = StageTracker()
    tail: deque[str] = deque(maxlen=40)
    finished = False
    try:
        report(0.0, tracker.phase)
        while True:
            try:
                line = lines.get(timeout=_POLL_S)
            except queue.Empty:
                if process.poll() is not None:
                    break  # a child it left behind may hold the pipe open: its end is not waited for
                report(tracker.fraction, tracker.phase)
                continue
            if line is None:
                break
            if not tracker.update(line) and line.strip():
                tail.append(line.rstrip())
                log.debug("convert_exl2: %s", line.rstrip())
                finished = finished or line.strip() == _FINISHED_LINE
            report(tracker.fraction, tracker.phase)
        returncode = process.wait()
    except BaseException:
        _stop(process)
        raise
    if returncode != 0 or not finished:
        raise _failure(returncode, list(tail))


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    with stream:
        for line in stream:
            lines.put(line)
    lines.put(None)


def _stop(process: subprocess.Popen[str]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=_STOP_GRACE_S)
            break
        except subprocess.TimeoutExpired:
            continue
    process.wait()


def _failure(returncode: int, tail: list[str]) -> InfernoError:
    # The converter exits 0 after some of its own errors (lines starting "##"), so they are looked for too.
    # Otherwise its last line says most (a traceback ends with the exception).
    errors = [line.strip() for line in tail if line.lstrip().startswith("##")]
    said = errors[-1] if errors else tail[-1].strip() if tail else "no output"
    code = (
        "insufficient_memory" if any("out of memory" in line.lower() for line in tail) else "internal_error"
    )
    return InfernoError(code, f"the EXL2 converter failed (exit status {returncode}): {said}")


def _architecture(source: Path) -> str:
    try:
        config = json.loads((source / "config.json").read_text())
        return str(config.get("architectures", ["unknown"])[0])
    except (OSError, ValueError, IndexError, TypeError, AttributeError):
        return "unknown"


def _tensor_count(path: Path) -> int:
    # A safetensors file opens with an 8-byte header length and a JSON header naming each tensor.
    with path.open("rb") as file:
        size = int.from_bytes(file.read(8), "little")
        header = json.loads(file.read(size))
    return sum(1 for name in header if name != "__metadata__")
