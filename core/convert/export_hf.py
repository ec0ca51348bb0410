"""A llama-family GGUF back to a Hugging Face folder (the inverse of converter.py): weights dequantized with
the gguf package and written as safetensors (FP16 by default), config.json, generation_config.json and the
tokenizer files, loadable by transformers and ExLlamaV2.

    python -m inferno.core.convert.export_hf MODEL.gguf OUT_DIR [--dtype float16|bfloat16|float32]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from inferno.core.convert.architectures import Llama
from inferno.core.convert.hf_tokenizer import write_hf_tokenizer
from inferno.errors import InfernoError

DTYPES = ("float16", "bfloat16", "float32")
# Fraction of the progress for dequantizing tensors; writing the files is the rest.
_TENSOR_SHARE = 0.9
_LLM = gguf.Keys.LLM
_ATTENTION = gguf.Keys.Attention
_ROPE = gguf.Keys.Rope
_TOKENIZER = gguf.Keys.Tokenizer


@dataclass(frozen=True)
class ExportResult:
    out_dir: Path
    architecture: str
    dtype: str
    tensors: int
    parameters: int
    vocab_size: int
    tied_embeddings: bool
    gguf_bytes: int
    output_bytes: int
    seconds: float


@dataclass(frozen=True)
class _LlamaShape:
    """The hyper-parameters a llama GGUF's metadata gives, under config.json's names."""

    blocks: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    context: int
    rms_norm_eps: float
    rope_theta: float
    rope_scaling: dict[str, Any] | None


def export_gguf_to_hf(
    gguf_path: Path,
    out_dir: Path,
    dtype: str = "float16",
    on_progress: Callable[[float], None] | None = None,
) -> ExportResult:
    """Writes model.safetensors, config.json, generation_config.json, tokenizer.json, tokenizer_config.json
    and special_tokens_map.json to out_dir. q and k projections get back HF's rotary layout; a GGUF without
    output.weight gives tie_word_embeddings. Only llama-architecture files with a byte-level BPE vocabulary
    are supported; anything else raises InfernoError."""
    if dtype not in DTYPES:
        raise InfernoError("invalid_parameters", f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    report = on_progress or (lambda fraction: None)
    started = time.monotonic()
    reader = gguf.GGUFReader(str(gguf_path))
    metadata = {name: field.contents() for name, field in reader.fields.items() if field.types}
    arch = metadata.get(gguf.Keys.General.ARCHITECTURE)
    if arch != gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA]:
        raise InfernoError(
            "invalid_parameters", f"{gguf_path.name}: architecture {arch!r} cannot be exported; only 'llama'"
        )
    shape = _llama_shape(metadata, arch)
    out_dir.mkdir(parents=True, exist_ok=True)

    report(0.0)
    weights = _hf_weights(reader, shape, dtype, report)
    tied = "lm_head.weight" not in weights
    vocab_size = int(weights["model.embed_tokens.weight"].shape[0])
    _save_safetensors(weights, out_dir / "model.safetensors", dtype)
    write_hf_tokenizer(metadata, out_dir, shape.context)
    _write_json(out_dir / "config.json", _config(shape, metadata, vocab_size, tied, dtype))
    _write_json(out_dir / "generation_config.json", _generation_config(metadata))
    report(1.0)
    return ExportResult(
        out_dir=out_dir,
        architecture="LlamaForCausalLM",
        dtype=dtype,
        tensors=len(weights),
        parameters=sum(int(w.size) for w in weights.values()),
        vocab_size=vocab_size,
        tied_embeddings=tied,
        gguf_bytes=gguf_path.stat().st_size,
        output_bytes=sum(p.stat().st_size for p in out_dir.iterdir() if p.is_file()),
        seconds=time.monotonic() - started,
    )


def _llama_shape(metadata: dict[str, Any], arch: str) -> _LlamaShape:
    def get(key: str, default: Any = None) -> Any:
        value = metadata.get(key.format(arch=arch), default)
        if value is None:
            raise InfernoError("invalid_parameters", f"the GGUF lacks {key.format(arch=arch)}")
        return value

    hidden, heads = int(get(_LLM.EMBEDDING_LENGTH)), int(get(_ATTENTION.HEAD_COUNT))
    head_dim = int(get(_ATTENTION.KEY_LENGTH, hidden // heads))
    if int(get(_ROPE.DIMENSION_COUNT, head_dim)) != head_dim:
        raise InfernoError("invalid_parameters", "partial rotary embeddings have no LlamaForCausalLM form")
    return _LlamaShape(
        blocks=int(get(_LLM.BLOCK_COUNT)),
        hidden=hidden,
        intermediate=int(get(_LLM.FEED_FORWARD_LENGTH)),
        heads=heads,
        kv_heads=int(get(_ATTENTION.HEAD_COUNT_KV, heads)),
        head_dim=head_dim,
        context=int(get(_LLM.CONTEXT_LENGTH)),
        rms_norm_eps=_float32(get(_ATTENTION.LAYERNORM_RMS_EPS, 1e-5)),
        rope_theta=_float32(get(_ROPE.FREQ_BASE, 10000.0)),
        rope_scaling=_rope_scaling(metadata, arch),
    )


def _rope_scaling(metadata: dict[str, Any], arch: str) -> dict[str, Any] | None:
    kind = metadata.get(_ROPE.SCALING_TYPE.format(arch=arch), "none")
    if kind == "none":
        return None
    if kind == "linear":
        factor = _float32(metadata[_ROPE.SCALING_FACTOR.format(arch=arch)])
        # One of "rope_type" and "type" only: ExLlamaV2 refuses a config with both.
        return {"rope_type": "linear", "factor": factor}
    raise InfernoError("invalid_parameters", f"rope scaling {kind!r} cannot be exported")


def _hf_weights(
    reader: gguf.GGUFReader, shape: _LlamaShape, dtype: str, report: Callable[[float], None]
) -> dict[str, np.ndarray]:
    llama = Llama()
    names = llama.hf_tensor_names(shape.blocks)
    store = np.float16 if dtype == "float16" else np.float32  # bfloat16 is cast by torch when saved
    weights: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(reader.tensors):
        hf_name = names.get(tensor.name)
        if hf_name is None:
            raise InfernoError(
                "invalid_parameters", f"tensor {tensor.name!r} has no LlamaForCausalLM counterpart"
            )
        # GGUF lists dimensions innermost first; numpy (and HF) outermost first.
        data = gguf.quants.dequantize(tensor.data, tensor.tensor_type).reshape(tuple(reversed(tensor.shape)))
        data = llama.hf_tensor(hf_name, data, shape.heads, shape.kv_heads)
        weights[hf_name] = np.ascontiguousarray(data, dtype=store)
        report(_TENSOR_SHARE * (index + 1) / len(reader.tensors))
    return weights


def _save_safetensors(weights: dict[str, np.ndarray], path: Path, dtype: str) -> None:
    metadata = {
        "format": "pt"
    }  # transformers refuses safetensors files that do not say they hold torch tensors
    if dtype == "bfloat16":
        import torch
        from safetensors.torch import save_file as save_torch

        save_torch(
            {n: torch.tensor(w, dtype=torch.bfloat16) for n, w in weights.items()}, str(path), metadata
        )
        return
    from safetensors.numpy import save_file

    save_file(weights, str(path), metadata)


def _config(
    shape: _LlamaShape, metadata: dict[str, Any], vocab_size: int, tied: bool, dtype: str
) -> dict[str, Any]:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": shape.hidden,
        "intermediate_size": shape.intermediate,
        "num_hidden_layers": shape.blocks,
        "num_attention_heads": shape.heads,
        "num_key_value_heads": shape.kv_heads,
        "head_dim": shape.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": shape.context,
        "rms_norm_eps": shape.rms_norm_eps,
        "rope_theta": shape.rope_theta,
        "rope_scaling": shape.rope_scaling,
        "attention_bias": False,
        "mlp_bias": False,
        "vocab_size": vocab_size,
        **_token_ids(metadata),
        "tie_word_embeddings": tied,
        "torch_dtype": dtype,
        "use_cache": True,
    }


def _generation_config(metadata: dict[str, Any]) -> dict[str, Any]:
    ids = _token_ids(metadata)
    eot = metadata.get(_TOKENIZER.EOT_ID)
    if isinstance(eot, int) and eot != ids.get("eos_token_id"):
        # End of turn stops generation too (llama.cpp treats it as end of generation).
        ids["eos_token_id"] = [i for i in (ids.get("eos_token_id"), eot) if i is not None]
    return ids


def _token_ids(metadata: dict[str, Any]) -> dict[str, Any]:
    keys = {
        "bos_token_id": _TOKENIZER.BOS_ID,
        "eos_token_id": _TOKENIZER.EOS_ID,
        "pad_token_id": _TOKENIZER.PAD_ID,
    }
    return {name: int(metadata[key]) for name, key in keys.items() if key in metadata}


def _float32(value: float) -> float:
    """GGUF stores float32: 1e-05 reads back as 9.999999747378752e-06; keep the number config.json had."""
    return float(str(np.float32(value)))


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inferno.core.convert.export_hf",
        description="Export a llama-family GGUF file to a Hugging Face folder (dequantized weights).",
    )
    parser.add_argument("gguf", type=Path, help="the GGUF file")
    parser.add_argument("out_dir", type=Path, help="the folder to write (created if missing)")
    parser.add_argument("--dtype", choices=DTYPES, default="float16")
    args = parser.parse_args(argv)
    try:
        result = export_gguf_to_hf(args.gguf, args.out_dir, args.dtype)
    except InfernoError as exc:
        parser.exit(1, f"error: {exc}\n")
    print(
        f"{result.architecture} {result.dtype}: {result.tensors} tensors, {result.parameters / 1e6:.1f}M "
        f"parameters, vocabulary {result.vocab_size}, "
        f"{'tied' if result.tied_embeddings else 'separate'} embeddings\n"
        f"{args.gguf} ({result.gguf_bytes / 2**20:.1f} MiB) -> {result.out_dir} "
        f"({result.output_bytes / 2**20:.1f} MiB) in {result.seconds:.1f}s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
