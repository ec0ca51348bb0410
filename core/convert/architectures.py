"""What differs per architecture: GGUF metadata from config.json, tensor renames and transforms, vocab."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import gguf
import numpy as np

from inferno.core.convert.checkpoint import Checkpoint
from inferno.core.convert.vocab import write_bpe_vocab, write_wordpiece_vocab
from inferno.errors import InfernoError


class Architecture(Protocol):
    @property
    def gguf_arch(self) -> gguf.MODEL_ARCH: ...

    def write_metadata(self, checkpoint: Checkpoint, writer: gguf.GGUFWriter) -> None: ...

    def tensors(self, checkpoint: Checkpoint) -> Iterator[tuple[str, np.ndarray]]:
        """(GGUF name, float32 data) for every tensor the GGUF file holds."""
        ...


def _hparam(config: dict[str, object], *names: str) -> int:
    for name in names:
        value = config.get(name)
        if isinstance(value, int):
            return value
    raise InfernoError("invalid_parameters", f"config.json lacks {' or '.join(names)}")


def _rename(arch: gguf.MODEL_ARCH, blocks: int, name: str) -> str | None:
    return gguf.get_tensor_name_map(arch, blocks).get_name(name, try_suffixes=(".weight", ".bias"))


@dataclass(frozen=True)
class Llama:
    """LlamaForCausalLM (SmolLM2 among others)."""

    gguf_arch: gguf.MODEL_ARCH = gguf.MODEL_ARCH.LLAMA

    def write_metadata(self, checkpoint: Checkpoint, writer: gguf.GGUFWriter) -> None:
        c = checkpoint.config
        heads = _hparam(c, "num_attention_heads")
        hidden = _hparam(c, "hidden_size")
        writer.add_block_count(_hparam(c, "num_hidden_layers"))
        writer.add_context_length(_hparam(c, "max_position_embeddings"))
        writer.add_embedding_length(hidden)
        writer.add_feed_forward_length(_hparam(c, "intermediate_size"))
        writer.add_head_count(heads)
        writer.add_head_count_kv(int(c.get("num_key_value_heads") or heads))
        writer.add_rope_freq_base(float(c.get("rope_theta", 10000.0)))
        writer.add_layer_norm_rms_eps(float(c.get("rms_norm_eps", 1e-6)))
        head_dim = int(c.get("head_dim") or hidden // heads)
        writer.add_rope_dimension_count(head_dim)
        writer.add_vocab_size(write_bpe_vocab(checkpoint, writer))

    def tensors(self, checkpoint: Checkpoint) -> Iterator[tuple[str, np.ndarray]]:
        c = checkpoint.config
        blocks = _hparam(c, "num_hidden_layers")
        heads = _hparam(c, "num_attention_heads")
        kv_heads = int(c.get("num_key_value_heads") or heads)
        for name, data in checkpoint.tensors():
            if name.endswith("rotary_emb.inv_freq"):
                continue
            # HF stores q and k with the two rotary halves split; llama.cpp wants them interleaved.
            if name.endswith("q_proj.weight"):
                data = _interleave_rotary(data, heads)
            elif name.endswith("k_proj.weight"):
                data = _interleave_rotary(data, kv_heads)
            yield _required(_rename(self.gguf_arch, blocks, name), name), data

    def hf_tensor_names(self, blocks: int) -> dict[str, str]:
        """GGUF name to LlamaForCausalLM's name for every tensor a llama GGUF holds: the inverse of
        tensors(), through the same name map (for exporting a GGUF back to a Hugging Face folder)."""
        names = [
            *_LLAMA_HF_TOP_LEVEL,
            *(f"model.layers.{b}.{part}.weight" for b in range(blocks) for part in _LLAMA_HF_BLOCK),
        ]
        return {_required(_rename(self.gguf_arch, blocks, name), name): name for name in names}

    def hf_tensor(self, hf_name: str, data: np.ndarray, heads: int, kv_heads: int) -> np.ndarray:
        """Undoes tensors()' transform of one weight: q and k back to HF's split rotary halves."""
        if hf_name.endswith("q_proj.weight"):
            return _split_rotary(data, heads)
        if hf_name.endswith("k_proj.weight"):
            return _split_rotary(data, kv_heads)
        return data


# LlamaForCausalLM's own tensor names; reading a checkpoint accepts every alias in the gguf package's map,
# writing one needs the names transformers and ExLlamaV2 look for.
_LLAMA_HF_TOP_LEVEL = ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight")
_LLAMA_HF_BLOCK = (
    "input_layernorm",
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "post_attention_layernorm",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
)


@dataclass(frozen=True)
class Bert:
    """BertModel (all-MiniLM-L6-v2 among others): an encoder with mean pooling, for embeddings."""

    gguf_arch: gguf.MODEL_ARCH = gguf.MODEL_ARCH.BERT

    def write_metadata(self, checkpoint: Checkpoint, writer: gguf.GGUFWriter) -> None:
        c = checkpoint.config
        writer.add_block_count(_hparam(c, "num_hidden_layers"))
        writer.add_context_length(_hparam(c, "max_position_embeddings"))
        writer.add_embedding_length(_hparam(c, "hidden_size"))
        writer.add_feed_forward_length(_hparam(c, "intermediate_size"))
        writer.add_head_count(_hparam(c, "num_attention_heads"))
        writer.add_layer_norm_eps(float(c.get("layer_norm_eps", 1e-12)))
        writer.add_causal_attention(False)
        writer.add_pooling_type(_pooling(checkpoint))
        writer.add_token_type_count(int(c.get("type_vocab_size", 2)))
        writer.add_vocab_size(write_wordpiece_vocab(checkpoint, writer))

    def tensors(self, checkpoint: Checkpoint) -> Iterator[tuple[str, np.ndarray]]:
        blocks = _hparam(checkpoint.config, "num_hidden_layers")
        for name, data in checkpoint.tensors():
            bare = name.removeprefix("bert.")
            if bare.startswith("pooler.") or bare.endswith("position_ids"):
                continue  # the classification pooler and a buffer: llama.cpp uses neither
            yield _required(_rename(self.gguf_arch, blocks, bare), name), data


ARCHITECTURES: dict[str, Architecture] = {
    "LlamaForCausalLM": Llama(),
    "BertModel": Bert(),
    "BertForMaskedLM": Bert(),
}


def architecture_of(checkpoint: Checkpoint) -> Architecture:
    found = ARCHITECTURES.get(checkpoint.architecture)
    if found is None:
        raise InfernoError(
            "invalid_parameters",
            f"architecture {checkpoint.architecture!r} is not supported; supported: "
            f"{', '.join(sorted(ARCHITECTURES))}",
            {"param": "source", "architecture": checkpoint.architecture},
        )
    return found


def _interleave_rotary(weights: np.ndarray, heads: int) -> np.ndarray:
    rows = weights.shape[0]
    return (
        weights.reshape(heads, 2, rows // heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _split_rotary(weights: np.ndarray, heads: int) -> np.ndarray:
    """The inverse of _interleave_rotary."""
    rows = weights.shape[0]
    return (
        weights.reshape(heads, rows // heads // 2, 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _pooling(checkpoint: Checkpoint) -> gguf.PoolingType:
    pooling = checkpoint.json_file("1_Pooling/config.json") or {}
    if pooling.get("pooling_mode_cls_token"):
        return gguf.PoolingType.CLS
    return gguf.PoolingType.MEAN


def _required(renamed: str | None, original: str) -> str:
    if renamed is None:
        raise InfernoError("invalid_parameters", f"tensor {original!r} has no GGUF counterpart")
    return renamed
