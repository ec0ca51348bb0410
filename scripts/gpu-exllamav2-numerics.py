"""Does ExLlamaV2 compute what transformers computes? A short GPU probe for the ExLlamaV2 engine's numerics.

A Llama with SmolLM2-135M's shape (vocabulary 49152, hidden 576, 9 heads, 3 KV heads, tied embeddings) but two
layers of random weights, saved by transformers in FP16 with config.json in the layout our GGUF exporter
writes (top-level rope_theta). Compares, per position of 64 random tokens: ExLlamaV2's logits (no cache, and
token by token through its cache) against transformers in FP32 and FP16, then 32 greedy tokens. Writes JSON
lines to $OUT/numerics.jsonl. Needs CUDA, torch, transformers and exllamav2 (JIT-built on first import).

Run: python scripts/gpu-exllamav2-numerics.py
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

OUT = Path(os.environ.get("OUT", "gpu-out"))
FOLDER = Path("/tmp/numerics-model")
STARTED = time.monotonic()


def report(name: str, value: object) -> None:
    line = json.dumps({"stage": name, "at_s": round(time.monotonic() - STARTED, 1), "value": value})
    print(line, flush=True)
    with (OUT / "numerics.jsonl").open("a") as file:
        file.write(line + "\n")


def build_model() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_attention_heads=9,
        num_key_value_heads=int(os.environ.get("NUMERICS_KV_HEADS", "3")),
        head_dim=64,
        num_hidden_layers=2,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        tie_word_embeddings=os.environ.get("NUMERICS_TIE", "1") == "1",
        initializer_range=0.05,
        rope_parameters={"rope_type": "default", "rope_theta": 100000.0},
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).to(torch.float16).save_pretrained(FOLDER)
    written = json.loads((FOLDER / "config.json").read_text())
    written["rope_theta"] = 100000.0  # as our exporter writes it, besides transformers 5's rope_parameters
    (FOLDER / "config.json").write_text(json.dumps(written, indent=2))
    report("model", {"files": sorted(p.name for p in FOLDER.iterdir()), "config": written})


def compare(name: str, ours: torch.Tensor, reference: torch.Tensor) -> None:
    ours_lp = torch.log_softmax(ours.float(), -1)
    ref_lp = torch.log_softmax(reference.float(), -1)
    agree = (ours_lp.argmax(-1) == ref_lp.argmax(-1)).float().mean().item()
    diff = (ours_lp - ref_lp).abs().max(-1).values
    report(
        name,
        {
            "argmax_agreement": round(agree, 4),
            "max_abs_logprob_diff": round(diff.max().item(), 4),
            "median_max_abs_logprob_diff": round(diff.median().item(), 4),
        },
    )


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    report(
        "device",
        {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda},
    )
    build_model()
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    ids = torch.randint(0, 49152, (1, 64))
    hf32 = AutoModelForCausalLM.from_pretrained(FOLDER, dtype=torch.float32).cuda().eval()
    hf16 = AutoModelForCausalLM.from_pretrained(FOLDER, dtype=torch.float16).cuda().eval()
    with torch.inference_mode():
        ref32 = hf32(ids.cuda()).logits[0]
        ref16 = hf16(ids.cuda()).logits[0]
        greedy_hf = hf32.generate(ids[:, :16].cuda(), max_new_tokens=32, do_sample=False)[0, 16:].tolist()
    compare("transformers_fp16_vs_fp32", ref16, ref32)
    began = time.monotonic()
    from exllamav2 import ExLlamaV2, ExLlamaV2Cache, ExLlamaV2Config

    report("exllamav2_import", {"seconds": round(time.monotonic() - began, 1)})
    config = ExLlamaV2Config(str(FOLDER))
    report(
        "exllamav2_config",
        {
            "rope_theta": config.rotary_embedding_base,
            "head_dim": config.head_dim,
            "norm_eps": config.norm_eps,
            "tie": getattr(config, "tie_word_embeddings", None),
        },
    )
    model = ExLlamaV2(config)
    cache = ExLlamaV2Cache(model, max_seq_len=2048, lazy=True)
    model.load_autosplit(cache)
    with torch.inference_mode():
        whole = model.forward(ids)[0]
        compare("exllamav2_no_cache_vs_transformers_fp32", whole, ref32)
        cache.current_seq_len = 0
        model.forward(ids[:, :-1], cache, preprocess_only=True)
        last = model.forward(ids[:, -1:], cache)[0, -1]
        compare("exllamav2_cached_last_vs_transformers_fp32", last[None], ref32[-1:])
        cache.current_seq_len = 0
        model.forward(ids[:, :15], cache, preprocess_only=True)
        token = ids[:, 15:16]
        greedy_ex: list[int] = []
        for _ in range(32):
            token = model.forward(token, cache)[:, -1:].argmax(-1).cpu()
            greedy_ex.append(int(token))
    same = next((i for i, (a, b) in enumerate(zip(greedy_ex, greedy_hf, strict=True)) if a != b), 32)
    report("greedy_32", {"equal_prefix": same, "exllamav2": greedy_ex, "transformers": greedy_hf})


if __name__ == "__main__":
    main()
