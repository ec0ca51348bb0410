"""The GPU checks' model work: the exported FP16 folder, its EXL2 quantization, and greedy choices from
transformers, from the ExLlamaV2 library and from Inferno's ExLlamaV2 engine.

Nothing here imports torch, transformers or exllamav2 at module import: the CPU suite collects this package.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Greedy continuations of this request run long (no early end of sequence within 32 tokens).
CHAT_PROMPT = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\nExplain in detail how a steam engine works.<|im_end|>\n"
    "<|im_start|>assistant\n"
)

# Real English text for the quantization check: the model's greedy choice after each prefix is compared.
SAMPLE_TEXT = (
    "The steam engine changed the way people lived and worked. Before it, most power came from muscle, "
    "wind or falling water, and a mill had to be built beside a river. James Watt did not invent the steam "
    "engine, but his separate condenser made it far more efficient, because the cylinder no longer had to "
    "be cooled and heated again on every stroke. Factories could now be built in towns, close to workers "
    "and to the coal that fed their boilers. Within a few decades, steam locomotives carried goods and "
    "passengers across whole countries, and steamships crossed the oceans without waiting for the wind."
)

EXPORT_MODULE = "inferno.core.convert.export_hf"
SMOKE_MODULE = "inferno.core.engines.exllamav2.smoke"
CONVERTER_MODULE = "exllamav2.conversion.convert_exl2"


def embedded_gguf() -> Path:
    """The GGUF the checks start from: INFERNO_GPU_GGUF, else the embedded model's file."""
    given = os.environ.get("INFERNO_GPU_GGUF")
    if given:
        return Path(given)
    from inferno.core.embedded import embedded_model_path

    return embedded_model_path()


def export_hf_folder(gguf: Path, out_dir: Path) -> Path:
    """The GGUF dequantized into an FP16 Hugging Face folder by Inferno's exporter."""
    subprocess.run([sys.executable, "-m", EXPORT_MODULE, str(gguf), str(out_dir)], check=True)
    return out_dir


def convert_exl2(source: Path, output: Path, bits: float) -> None:
    """source quantized to EXL2 at `bits` into output, by Inferno's conversion (ExLlamaV2's converter)."""
    from inferno.core.convert.exl2 import convert_to_exl2

    shown = [""]

    def progress(fraction: float, phase: str) -> None:
        if phase != shown[0]:
            shown[0] = phase
            print(f"[{time.strftime('%H:%M:%S')}] exl2 conversion: {phase} ({fraction:.0%})", flush=True)

    result = convert_to_exl2(source, output, bits, progress)
    size = result.output_bytes / 2**20
    print(f"exl2 conversion: {result.quantization}, {size:.1f} MiB in {result.seconds:.1f}s", flush=True)


def tokenize(model_dir: Path, text: str) -> list[int]:
    """text's token ids by the folder's Hugging Face tokenizer, with no special tokens added."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _torch_dtype(name: str) -> Any:
    import torch

    return {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[name]


def load_transformers(model_dir: Path, device: str, dtype: str) -> Any:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=_torch_dtype(dtype))
    model.to(device)  # type: ignore[arg-type]  # transformers types its wrapped `to` oddly
    return model.eval()


def transformers_greedy(
    model_dir: Path, prompt_ids: Sequence[int], new_tokens: int, device: str = "cuda", dtype: str = "float16"
) -> list[int]:
    """transformers' `generate(do_sample=False)` continuation of prompt_ids (it stops at end of sequence)."""
    import torch

    model = load_transformers(model_dir, device, dtype)
    inputs = torch.tensor([list(prompt_ids)], device=device)
    with torch.inference_mode():
        output = model.generate(
            input_ids=inputs,
            attention_mask=torch.ones_like(inputs),
            do_sample=False,
            max_new_tokens=new_tokens,
            pad_token_id=model.generation_config.eos_token_id,
        )
    return [int(t) for t in output[0, inputs.shape[1] :].tolist()]


class ExLlamaV2Model:
    """A folder loaded with the ExLlamaV2 library itself (not through Inferno), run without a cache."""

    def __init__(self, model_dir: Path, max_seq_len: int = 2048) -> None:
        from exllamav2 import ExLlamaV2, ExLlamaV2Config

        config = ExLlamaV2Config(str(model_dir))
        config.max_seq_len = min(config.max_seq_len, max_seq_len)
        self.model = ExLlamaV2(config)
        self.model.load()

    def argmax(self, ids: Sequence[int]) -> list[int]:
        """The most likely next token after each prefix of ids."""
        import torch

        with torch.inference_mode():
            logits = self.model.forward(torch.tensor([list(ids)], dtype=torch.long))
        return [int(t) for t in logits[0].argmax(dim=-1).tolist()]

    def greedy(self, prompt_ids: Sequence[int], new_tokens: int, stop_ids: Sequence[int] = ()) -> list[int]:
        """Greedy continuation, each step a full forward pass over everything so far."""
        ids = list(prompt_ids)
        generated: list[int] = []
        for _ in range(new_tokens):
            token = self.argmax(ids)[-1]
            generated.append(token)
            ids.append(token)
            if token in stop_ids:
                break
        return generated

    def close(self) -> None:
        self.model.unload()


def eos_ids(model_dir: Path) -> list[int]:
    """The end-of-sequence ids of generation_config.json (transformers stops at any of them)."""
    path = model_dir / "generation_config.json"
    value = json.loads(path.read_text()).get("eos_token_id") if path.is_file() else None
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, list) else [int(value)]


@dataclass(frozen=True)
class SmokeResult:
    prompt_ids: list[int]
    ids: list[int]
    # Per generated token: was it its step's most likely token (the engine's own view of greedy).
    greedy_is_top1: list[bool]


def engine_smoke(model_dir: Path, prompt: str, new_tokens: int) -> SmokeResult:
    """Greedy tokens from Inferno's ExLlamaV2 engine: `python -m inferno.core.engines.exllamav2.smoke`
    prints one JSON object with the prompt's ids (`prompt_tokens`) and the generated ones (`tokens`; it
    does not stop at end of sequence)."""
    completed = subprocess.run(
        [sys.executable, "-m", SMOKE_MODULE, str(model_dir), "--prompt", prompt, "--tokens", str(new_tokens)],
        check=True,
        capture_output=True,
        text=True,
    )
    sys.stderr.write(completed.stderr[-4000:])
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    print(f"engine smoke: {report.get('text')!r} on {report.get('device')}")
    return SmokeResult(
        [int(t) for t in report["prompt_tokens"]],
        [int(t) for t in report["tokens"]],
        [bool(b) for b in report.get("greedy_is_top1", [])],
    )


def agreement(left: Sequence[int], right: Sequence[int]) -> float:
    """Share of positions where the two choices are the same (sequences of equal length)."""
    if len(left) != len(right) or not left:
        raise ValueError(f"need two non-empty sequences of one length, not {len(left)} and {len(right)}")
    return sum(a == b for a, b in zip(left, right, strict=True)) / len(left)


def first_difference(left: Sequence[int], right: Sequence[int]) -> int | None:
    """The first index where the two differ (or where one ends), None when they are equal."""
    for index, (a, b) in enumerate(zip(left, right, strict=False)):
        if a != b:
            return index
    return None if len(left) == len(right) else min(len(left), len(right))
